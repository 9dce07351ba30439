/* batchd: parse flags, start the server, run the loop until SIGTERM/SIGINT. */
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "app.h"
#include "config.h"
#include "log.h"

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    app *a = w->data;
    if (a->state == APP_SERVING) {
        app_stop(a);
    } else {
        log_warn("second signal: stopping at once");
        ev_break(loop, EVBREAK_ALL);
    }
}

int main(int argc, char **argv)
{
    config cfg;
    char err[512];
    config_defaults(&cfg);
    int rc = config_parse(&cfg, argc, argv);
    if (rc != 0) {
        config_free(&cfg);
        return rc > 0 ? 0 : 2;
    }
    if (config_finish(&cfg, err, sizeof err) < 0) {
        fprintf(stderr, "batchd: %s\nTry 'batchd --help'.\n", err);
        config_free(&cfg);
        return 2;
    }
    log_set_level(cfg.log_level);
    /* A peer closing a socket must be an error code, never a signal that kills us. */
    signal(SIGPIPE, SIG_IGN);

    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (loop == NULL) {
        fprintf(stderr, "batchd: cannot create the event loop\n");
        config_free(&cfg);
        return 1;
    }
    /* Signal watchers first: a SIGTERM that comes while the server starts (it already
     * listens) is then a graceful stop once the loop runs, never a kill. */
    ev_signal sigterm, sigint;
    ev_signal_init(&sigterm, on_signal, SIGTERM);
    ev_signal_init(&sigint, on_signal, SIGINT);
    ev_signal_start(loop, &sigterm);
    ev_signal_start(loop, &sigint);
    ev_unref(loop);
    ev_unref(loop); /* signal watchers alone do not keep the loop running */

    app *a = app_new(loop, &cfg, err, sizeof err);
    if (a == NULL) {
        log_error("%s", err);
        ev_ref(loop);
        ev_ref(loop);
        ev_signal_stop(loop, &sigterm);
        ev_signal_stop(loop, &sigint);
        ev_loop_destroy(loop);
        config_free(&cfg);
        return 1;
    }
    sigterm.data = sigint.data = a;
    log_info("batchd %s listening on %s (port %d), %zu target%s, store: %s", BATCHD_VERSION, cfg.listen,
             app_port(a), cfg.n_targets, cfg.n_targets == 1 ? "" : "s",
             cfg.data_dir ? cfg.data_dir : "in memory (batches are lost when batchd stops)");
    for (size_t i = 0; i < cfg.n_targets; i++)
        log_info("target %s%s = %s", cfg.targets[i].name, i == 0 ? " (default)" : "", cfg.targets[i].url);

    ev_run(loop, 0);

    ev_ref(loop);
    ev_ref(loop);
    ev_signal_stop(loop, &sigterm);
    ev_signal_stop(loop, &sigint);
    app_free(a);
    ev_loop_destroy(loop);
    config_free(&cfg);
    return 0;
}
