/* batchctl, the command-line client of batchd: parses the command line, runs one command,
 * and returns its exit status (see batchctl.h). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "commands.h"

/* The only global: a signal handler can reach nothing else. Commands see it through
 * bctl.interrupted. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

int main(int argc, char **argv)
{
    bctl_opts o;
    opt_result parsed = opt_parse(&o, argc, argv, getenv("BATCHD_SERVER"), stdout, stderr);
    if (parsed != OPT_RUN) {
        opt_free(&o);
        return parsed == OPT_DONE ? BCTL_EXIT_OK : BCTL_EXIT_ERROR;
    }
    /* batchctl waits in its own sleeps between reconnection attempts, when no gRPC call is
     * polling: without this, a new connection's HTTP/2 handshake only progresses on gRPC's
     * backup poller, every 5 s by default, and a restarted batchd is found that much later.
     * Read once by grpc_init; a value the user set is kept. */
    setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "100", 0);
    /* The first Ctrl-C lets the command detach or cancel cleanly; a second one kills. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);

    bctl ctl = {.o = &o, .out = stdout, .err = stderr, .interrupted = &interrupted};
    struct winsize ws;
    int width = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 ? ws.ws_col : 0;
    progress_choose(&ctl.progress, isatty(STDERR_FILENO), getenv("TERM"), getenv("NO_COLOR"), o.quiet, width,
                    o.progress_interval_ns);

    static int (*const run[BCTL_N_CMDS])(bctl *) = {
        [BCTL_CMD_SUBMIT] = cmd_submit, [BCTL_CMD_WATCH] = cmd_watch,   [BCTL_CMD_GET] = cmd_get,
        [BCTL_CMD_LIST] = cmd_list,     [BCTL_CMD_CANCEL] = cmd_cancel, [BCTL_CMD_RESULTS] = cmd_results,
        [BCTL_CMD_RETRY] = cmd_retry,
    };
    int rc = run[o.cmd](&ctl);
    bctl_close(&ctl);
    opt_free(&o);
    if (fflush(stdout) != 0 && rc == BCTL_EXIT_OK) {
        perror("batchctl: writing stdout");
        rc = BCTL_EXIT_ERROR;
    }
    return rc;
}
