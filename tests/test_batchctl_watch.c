/* batchctl end to end, as in test_batchctl.c: watch reconnection through a TCP proxy that
 * breaks connections and across a batchd restart, Ctrl-C, the progress display in a
 * pseudo-terminal and in a pipe, and help. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchctl_run.h"
#include "harness.h"

/* ---- watch reconnection ------------------------------------------------------------- */

Test(batchctl, watch_resumes_after_the_connection_breaks_without_losing_or_repeating_items)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    Batch__V1__SubmitBatchRequest *req = h_request_n(30, "/slow/%u?delay_ms=80", "{\"maxConcurrency\":2,\"mode\":\"MODE_ASYNC\"}");
    Batch__V1__SubmitBatchResponse *resp = h_submit(h, req, NULL);
    cr_assert_not_null(resp);
    br_proxy *p = br_proxy_start(br_port_of(h->addr));
    char server[64];
    snprintf(server, sizeof server, "127.0.0.1:%d", p->port);
    const char *args[] = {"watch", resp->batch->id, "--json", "--server", server, NULL};
    br_child c = br_spawn(&s, args, NULL, 0);
    br_wait_for(c.out_path, "\"item\"", 4, 10);
    br_proxy_break(p, 300, 0);
    br_ran r = br_finish(&c, 30);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "broke") && strstr(r.err, "reconnected"), "%s", r.err);
    cr_assert_geq(br_proxy_accepted(p), 2, "batchctl connected again");
    br_jlines j;
    br_jlines_parse(&j, r.out);
    int seen[30] = {0};
    json_int_t last_seq = 0;
    size_t items = 0;
    for (size_t i = 0; i < j.n; i++) {
        json_t *ev_item = json_object_get(j.v[i], "item");
        if (ev_item == NULL)
            continue;
        items++;
        json_int_t seq = strtoll(br_jstr(ev_item, "sequence"), NULL, 10);
        cr_assert_eq(seq, last_seq + 1, "item events in sequence order, none missing or repeated: %lld after %lld",
                     (long long)seq, (long long)last_seq);
        last_seq = seq;
        int idx = atoi(br_jstr(ev_item, "id") + 1);
        cr_assert_eq(seen[idx]++, 0, "item %d twice", idx);
    }
    cr_assert_eq(items, 30, "%zu item events", items);
    cr_assert_str_eq(br_jstr(json_object_get(j.v[j.n - 1], "batch"), "state"), "BATCH_STATE_SUCCEEDED");
    br_jlines_free(&j);
    br_ran_free(&r);
    br_proxy_stop(p);
    batch__v1__submit_batch_response__free_unpacked(resp, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl, watch_resumes_across_a_batchd_restart_without_losing_or_repeating_items)
{
    /* A real restart on the same --data-dir: the stream ends, batchd comes back (on another
     * port, behind the same proxy address) with the batch, and batchctl resumes after the
     * last sequence it saw. */
    char *dir = h_tempdir();
    const char *flags[] = {"--data-dir", dir, "--shutdown-grace", "0s", NULL};
    harness *h = h_start(flags);
    br_scratch s;
    br_scratch_open(&s);
    Batch__V1__SubmitBatchRequest *req = h_request_n(30, "/slow/%u?delay_ms=80", "{\"maxConcurrency\":2,\"mode\":\"MODE_ASYNC\"}");
    Batch__V1__SubmitBatchResponse *resp = h_submit(h, req, NULL);
    cr_assert_not_null(resp);
    br_proxy *p = br_proxy_start(br_port_of(h->addr));
    char server[64];
    snprintf(server, sizeof server, "127.0.0.1:%d", p->port);
    const char *args[] = {"watch", resp->batch->id, "--json", "--server", server, NULL};
    br_child c = br_spawn(&s, args, NULL, 0);
    br_wait_for(c.out_path, "\"item\"", 4, 10);
    h_restart(h);
    br_proxy_break(p, 100, br_port_of(h->addr));
    br_ran r = br_finish(&c, 60);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    br_jlines j;
    br_jlines_parse(&j, r.out);
    int seen[30] = {0};
    json_int_t last_seq = 0;
    size_t items = 0;
    for (size_t i = 0; i < j.n; i++) {
        json_t *ev_item = json_object_get(j.v[i], "item");
        if (ev_item == NULL)
            continue;
        items++;
        json_int_t seq = strtoll(br_jstr(ev_item, "sequence"), NULL, 10);
        cr_assert_eq(seq, last_seq + 1, "sequence %lld after %lld across the restart", (long long)seq,
                     (long long)last_seq);
        last_seq = seq;
        int idx = atoi(br_jstr(ev_item, "id") + 1);
        cr_assert_eq(seen[idx]++, 0, "item %d twice", idx);
    }
    cr_assert_eq(items, 30, "%zu item events", items);
    cr_assert_str_eq(br_jstr(json_object_get(j.v[j.n - 1], "batch"), "state"), "BATCH_STATE_SUCCEEDED");
    br_jlines_free(&j);
    br_ran_free(&r);
    br_proxy_stop(p);
    batch__v1__submit_batch_response__free_unpacked(resp, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    br_scratch_close(&s);
    h_stop(h);
    h_rmdir(dir);
}

Test(batchctl, watch_ends_with_a_clear_message_when_a_restarted_batchd_lost_the_batch)
{
    /* A restart without a durable store, as the client sees it: the stream breaks, and the
     * server that answers at the same address afterwards has never heard of the batch. */
    const char *fast_stop[] = {"--shutdown-grace", "50ms", NULL};
    harness *h = h_start(fast_stop);
    harness *fresh = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    Batch__V1__SubmitBatchRequest *req = h_request_n(2, "/slow/%u?delay_ms=10000", "{\"mode\":\"MODE_ASYNC\"}");
    Batch__V1__SubmitBatchResponse *resp = h_submit(h, req, NULL);
    cr_assert_not_null(resp);
    br_proxy *p = br_proxy_start(br_port_of(h->addr));
    char server[64];
    snprintf(server, sizeof server, "127.0.0.1:%d", p->port);
    const char *args[] = {"watch", resp->batch->id, "--server", server, NULL};
    br_child c = br_spawn(&s, args, NULL, 0);
    br_wait_for(c.err_path, "0/2 done", 1, 10);
    br_proxy_break(p, 100, br_port_of(fresh->addr));
    br_ran r = br_finish(&c, 30);
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    char want[128];
    snprintf(want, sizeof want, "batch %s is gone: batchd at %s no longer knows it", resp->batch->id, server);
    cr_assert(strstr(r.err, "reconnecting") && strstr(r.err, want), "want %s in:\n%s", want, r.err);
    cr_assert_lt(r.secs, 10);
    br_ran_free(&r);
    br_proxy_stop(p);
    batch__v1__submit_batch_response__free_unpacked(resp, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    br_scratch_close(&s);
    h_stop(fresh);
    h_stop(h);
}

Test(batchctl, watch_keeps_reconnecting_then_gives_up_when_batchd_stays_away)
{
    const char *args[] = {"--shutdown-grace", "50ms", NULL};
    harness *h = h_start(args);
    br_scratch s;
    br_scratch_open(&s);
    Batch__V1__SubmitBatchRequest *req = h_request_n(2, "/slow/%u?delay_ms=10000", "{\"mode\":\"MODE_ASYNC\"}");
    Batch__V1__SubmitBatchResponse *resp = h_submit(h, req, NULL);
    cr_assert_not_null(resp);
    char server[96];
    snprintf(server, sizeof server, "BATCHD_SERVER=%s", h->addr);
    const char *env[] = {server, NULL};
    const char *wargs[] = {"watch", resp->batch->id, "--reconnect-timeout", "1500ms", NULL};
    br_child c = br_spawn(&s, wargs, env, 0);
    br_wait_for(c.err_path, "0/2 done", 1, 10);
    double stopped = br_now_s();
    h_request_stop(h); /* running items are aborted: the batch is not over, the watch breaks */
    br_ran r = br_finish(&c, 30);
    double took = br_now_s() - stopped;
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "broke (UNAVAILABLE"), "%s", r.err);
    cr_assert(strstr(r.err, "gave up reconnecting to batchd at"), "%s", r.err);
    char hint[96];
    snprintf(hint, sizeof hint, "batchctl watch %s", resp->batch->id);
    cr_assert(strstr(r.err, hint), "%s", r.err);
    cr_assert_geq(took, 1.5, "gave up after %.2fs, before --reconnect-timeout", took);
    cr_assert_lt(took, 8);
    br_ran_free(&r);
    batch__v1__submit_batch_response__free_unpacked(resp, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    br_scratch_close(&s);
    h_stop(h);
}

/* ---- Ctrl-C ----------------------------------------------------------------------- */

static void interrupt_a_slow_submit(int cancel)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    for (int i = 0; i < 20; i++)
        fprintf(f, "{\"id\":\"i%d\",\"method\":\"GET\",\"path\":\"/s/%d?delay_ms=300\"}\n", i, i);
    fclose(f);
    char file[256];
    snprintf(file, sizeof file, "%s", br_put(&s, "slow.ndjson", text));
    free(text);
    char server[96];
    snprintf(server, sizeof server, "BATCHD_SERVER=%s", h->addr);
    const char *env[] = {server, NULL};
    const char *args[] = {"submit", file, "--concurrency", "1", cancel ? "--cancel-on-interrupt" : NULL, NULL};
    br_child c = br_spawn(&s, args, env, 0);
    br_wait_for(c.err_path, " accepted: 20 operations", 1, 10);
    kill(c.pid, SIGINT);
    br_ran r = br_finish(&c, 10);
    cr_assert_eq(r.status, 130, "exit %d: %s", r.status, r.err);
    cr_assert_lt(r.secs, 3, "took %.1fs to stop", r.secs);
    Batch__V1__Batch *b = br_newest(h);
    char hint[96];
    snprintf(hint, sizeof hint, "batchctl watch %s --server %s", b->id, h->addr);
    if (cancel) {
        cr_assert(strstr(r.err, "CANCELLED"), "%s", r.err);
        Batch__V1__Batch *end = h_wait_end(h, b->id, 5);
        cr_assert_eq(end->state, BATCH__V1__BATCH_STATE__BATCH_STATE_CANCELLED);
        batch__v1__batch__free_unpacked(end, NULL);
    } else {
        cr_assert(strstr(r.err, "goes on running") && strstr(r.err, hint), "want %s in:\n%s", hint, r.err);
        cr_assert_eq(b->state, BATCH__V1__BATCH_STATE__BATCH_STATE_RUNNING, "detached, not cancelled");
    }
    batch__v1__batch__free_unpacked(b, NULL);
    br_ran_free(&r);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl, ctrl_c_detaches_and_says_how_to_watch_again)
{
    interrupt_a_slow_submit(0);
}

Test(batchctl, ctrl_c_with_cancel_on_interrupt_cancels_the_batch)
{
    interrupt_a_slow_submit(1);
}

/* ---- the progress display ----------------------------------------------------------- */

static br_ran run_40_items(harness *h, br_scratch *s, int tty, const char *no_color, const char *extra)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    for (int i = 0; i < 40; i++)
        fprintf(f, "{\"id\":\"i%d\",\"method\":\"GET\",\"path\":\"/p/%d?delay_ms=%d\"}\n", i, i, i % 5 == 0 ? 40 : 20);
    fclose(f);
    char file[256], out[256], server[96];
    snprintf(file, sizeof file, "%s", br_put(s, "p.ndjson", text));
    snprintf(out, sizeof out, "%s/results.ndjson", s->dir);
    snprintf(server, sizeof server, "BATCHD_SERVER=%s", h->addr);
    free(text);
    const char *env[] = {server, "TERM=xterm", no_color, NULL};
    const char *args[] = {"submit", file, "--concurrency", "2", "-o", out, extra, NULL};
    br_child c = br_spawn(s, args, env, tty);
    return br_finish(&c, 30);
}

Test(batchctl, a_terminal_gets_a_bar_redrawn_in_place_and_a_summary)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    br_ran r = run_40_items(h, &s, 1, NULL, NULL);
    cr_assert_eq(r.status, 0, "%s", r.out);
    int redraws = 0;
    for (const char *p = r.out; (p = strchr(p, '\r')) != NULL; p++)
        redraws += p[1] == '[';
    cr_assert_geq(redraws, 3, "the bar is redrawn with \\r: %s", r.out);
    cr_assert(strstr(r.out, "100%") && strstr(r.out, "40/40"), "%s", r.out);
    cr_assert(strstr(r.out, "/s  ETA "), "items per second and ETA: %s", r.out);
    cr_assert(strstr(r.out, "\033[32mok "), "colours on a terminal: %s", r.out);
    cr_assert(strstr(r.out, "SUCCEEDED\033[0m: 40 succeeded, 0 failed, 0 cancelled of 40"), "%s", r.out);
    br_ran_free(&r);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl, no_color_keeps_the_bar_and_drops_the_colours)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    br_ran r = run_40_items(h, &s, 1, "NO_COLOR=1", NULL);
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert(strstr(r.out, "\r["), "%s", r.out);
    cr_assert_null(strstr(r.out, "\033[3"), "%s", r.out);
    cr_assert_null(strstr(r.out, "\033[0m"), "%s", r.out);
    cr_assert(strstr(r.out, "SUCCEEDED: 40 succeeded"), "%s", r.out);
    br_ran_free(&r);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl, a_pipe_gets_plain_progress_lines)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    br_ran r = run_40_items(h, &s, 0, NULL, "--progress-interval=150ms");
    cr_assert_eq(r.status, 0, "%s", r.err);
    int lines = 0;
    for (const char *p = r.err; (p = strstr(p, " done (")) != NULL; p++)
        lines++;
    cr_assert_geq(lines, 3, "a line every 150 ms over ~0.5 s: %s", r.err);
    cr_assert_null(strchr(r.err, '\r'), "%s", r.err);
    cr_assert_null(strchr(r.err, '\033'), "%s", r.err);
    cr_assert(strstr(r.err, "SUCCEEDED: 40 succeeded"), "%s", r.err);
    br_ran_free(&r);
    br_scratch_close(&s);
    h_stop(h);
}

/* ---- help ----------------------------------------------------------------------- */

Test(batchctl, every_command_has_help_and_the_version_is_printed)
{
    br_scratch s;
    br_scratch_open(&s);
    const char *cmds[] = {"submit", "watch", "get", "list", "cancel", "results", "retry"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        br_ran r = br_ctl(NULL, &s, cmds[i], "--help", NULL);
        char want[64];
        snprintf(want, sizeof want, "usage: batchctl %s [flags]", cmds[i]);
        cr_assert_eq(r.status, 0);
        cr_assert(strstr(r.out, want) && strstr(r.out, "--server ADDR"), "%s", r.out);
        br_ran_free(&r);
    }
    br_ran r = br_ctl(NULL, &s, "--help", NULL);
    cr_assert_eq(r.status, 0);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        cr_assert(strstr(r.out, cmds[i]), "%s", r.out);
    br_ran_free(&r);
    r = br_ctl(NULL, &s, "--version", NULL);
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.out, "batchctl " BATCHCTL_VERSION "\n");
    br_ran_free(&r);
    r = br_ctl(NULL, &s, NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "no command given"), "%s", r.err);
    br_ran_free(&r);
    br_scratch_close(&s);
}
