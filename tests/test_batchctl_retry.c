/* batchctl retry end to end: the built binary as a child process against a real batchd (in
 * this process, on an ephemeral port) and a real loopback upstream. `retry ID` reads the
 * failed and cancelled operations back from batchd and submits exactly those again, each
 * under the Idempotency-Key of its first attempt, which the upstream's per-key counts show. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchctl_run.h"
#include "harness.h"

#define EXAMPLES BATCHD_SOURCE_DIR "/examples"

static void assert_key_count(harness *h, const char *orig_id, const char *item_id, uint64_t want, const char *why)
{
    char key[160];
    snprintf(key, sizeof key, "%s/%s", orig_id, item_id);
    uint64_t got = upstream_key_count(h->up, key);
    cr_assert_eq(got, want, "key %s reached the upstream %llu times, not %llu: %s", key, (unsigned long long)got,
                 (unsigned long long)want, why);
}

static int two_ok_three_failed(const Batch__V1__Batch *b, void *arg)
{
    (void)arg;
    return b->counts && b->counts->succeeded == 2 && b->counts->failed == 3;
}

Test(batchctl_retry, retry_by_id_resubmits_exactly_the_failed_and_cancelled_items)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    /* a and g succeed; c, the id-less #3 and f fail once (503) and succeed when retried; the
     * id-less #1 and e are still waiting for the upstream when the batch is cancelled. The
     * failed and the cancelled interleave, so the two streams must be merged by index. */
    char file[256];
    snprintf(file, sizeof file, "%s",
             br_put(&s, "mixed.ndjson",
                    "{\"id\":\"a\",\"method\":\"GET\",\"path\":\"/a\"}\n"
                    "{\"method\":\"GET\",\"path\":\"/b?delay_ms=2000\"}\n"
                    "{\"id\":\"c\",\"method\":\"POST\",\"path\":\"/c?fail_first=1\",\"json\":{\"n\":3}}\n"
                    "{\"method\":\"PUT\",\"path\":\"/d?fail_first=1\"}\n"
                    "{\"id\":\"e\",\"method\":\"GET\",\"path\":\"/e?delay_ms=2000\"}\n"
                    "{\"id\":\"f\",\"idempotencyKey\":\"own-key-f\",\"method\":\"GET\",\"path\":\"/f?fail_first=1\"}\n"
                    "{\"id\":\"g\",\"method\":\"GET\",\"path\":\"/g\"}\n"));
    br_ran r = br_ctl(h, &s, "submit", file, "--async", "--concurrency", "7", "-l", "team=x", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char orig[32];
    snprintf(orig, sizeof orig, "%.26s", r.out);
    br_ran_free(&r);
    Batch__V1__Batch *b = h_wait_until(h, orig, 10, two_ok_three_failed, NULL);
    batch__v1__batch__free_unpacked(b, NULL);
    for (double start = br_now_s();;) { /* both slow requests are at the upstream */
        upstream_stats us;
        upstream_get_stats(h->up, &us);
        if (us.in_flight == 2)
            break;
        cr_assert_lt(br_now_s() - start, 10, "in flight: %llu", (unsigned long long)us.in_flight);
        h_sleep_ms(5);
    }
    r = br_ctl(h, &s, "cancel", orig, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    br_ran_free(&r);
    b = h_wait_end(h, orig, 10);
    cr_assert_eq(b->counts->cancelled, 2, "the two slow items were cancelled");
    batch__v1__batch__free_unpacked(b, NULL);

    r = br_ctl(h, &s, "retry", orig, "--format-out", "csv", NULL);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert_str_eq(r.out, "id,state,http_status,error\n"
                            "1,SUCCEEDED,200,\nc,SUCCEEDED,200,\n3,SUCCEEDED,200,\ne,SUCCEEDED,200,\n"
                            "f,SUCCEEDED,200,\n");
    char want[128];
    snprintf(want, sizeof want, "retrying 5 items of batch %s: 3 failed, 2 cancelled", orig);
    cr_assert(strstr(r.err, want), "%s", r.err);
    br_ran_free(&r);

    Batch__V1__Batch *again = br_newest(h);
    cr_assert_str_neq(again->id, orig);
    cr_assert_eq(again->counts->total, 5);
    cr_assert_str_eq(br_label(again, "retry-of"), orig);
    cr_assert_str_eq(br_label(again, "team"), "x", "the original's labels are kept");
    cr_assert_eq(again->options->max_concurrency, 7, "and its options");
    br_ops *ops = br_operations(h, again->id, 0);
    cr_assert_eq(ops->n, 5);
    const char *ids[] = {"1", "c", "3", "e", "f"};
    const char *paths[] = {"/b?delay_ms=2000", "/c?fail_first=1", "/d?fail_first=1", "/e?delay_ms=2000",
                           "/f?fail_first=1"};
    for (size_t i = 0; i < 5; i++) {
        const Batch__V1__Operation *op = ops->v[i]->operation;
        cr_assert_str_eq(op->id, ids[i], "operation %zu: the original order; an id-less one named by its index", i);
        cr_assert_str_eq(op->path, paths[i], "operation %zu", i);
        char key[160];
        snprintf(key, sizeof key, "%s/%s", orig, ids[i]);
        cr_assert_str_eq(op->idempotency_key, i == 4 ? "own-key-f" : key, "operation %zu", i);
    }
    cr_assert_str_eq(ops->v[1]->operation->method, "POST");
    cr_assert_not_null(ops->v[1]->operation->json, "the body is sent again");
    br_ops_free(ops);

    const char *retried[] = {"1", "c", "3", "e"};
    for (size_t i = 0; i < 4; i++)
        assert_key_count(h, orig, retried[i], 2, "a retried item is sent again under its first key");
    cr_assert_eq(upstream_key_count(h->up, "own-key-f"), 2, "an operation's own key is kept");
    assert_key_count(h, orig, "a", 1, "a succeeded item is not sent again");
    assert_key_count(h, orig, "g", 1, "a succeeded item is not sent again");
    upstream_stats us;
    upstream_get_stats(h->up, &us);
    cr_assert_eq(us.requests, 12, "7 first attempts and 5 retries");
    batch__v1__batch__free_unpacked(again, NULL);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl_retry, an_id_less_operation_keeps_its_index_as_id_and_key)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    /* #1 has no id: batchd named it "1" and sent it as ORIG/1. Renumbered in the retry it
     * would be "0", the id of the next one: it keeps "1". */
    char file[256];
    snprintf(file, sizeof file, "%s",
             br_put(&s, "ids.ndjson",
                    "{\"id\":\"a\",\"method\":\"GET\",\"path\":\"/x\"}\n"
                    "{\"method\":\"GET\",\"path\":\"/y?fail_first=1\"}\n"
                    "{\"id\":\"0\",\"method\":\"GET\",\"path\":\"/z?fail_first=1\"}\n"));
    br_ran r = br_ctl(h, &s, "submit", file, "-q", NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    br_ran_free(&r);
    Batch__V1__Batch *orig = br_newest(h);
    r = br_ctl(h, &s, "retry", orig->id, "--format-out", "csv", "-q", NULL);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert_str_eq(r.out, "id,state,http_status,error\n1,SUCCEEDED,200,\n0,SUCCEEDED,200,\n");
    br_ran_free(&r);
    Batch__V1__Batch *again = br_newest(h);
    br_ops *ops = br_operations(h, again->id, 0);
    cr_assert_eq(ops->n, 2);
    char key[160];
    snprintf(key, sizeof key, "%s/1", orig->id);
    cr_assert_str_eq(ops->v[0]->operation->id, "1");
    cr_assert_str_eq(ops->v[0]->operation->idempotency_key, key);
    assert_key_count(h, orig->id, "1", 2, "the id-less item's retry carried <batch id>/<index>");
    assert_key_count(h, orig->id, "0", 2, "");
    br_ops_free(ops);
    batch__v1__batch__free_unpacked(again, NULL);
    batch__v1__batch__free_unpacked(orig, NULL);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl_retry, a_csv_import_is_retried_by_its_id_alone)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    char *csv = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&csv, &len);
    fprintf(f, "id,name,fail_first\n");
    for (int i = 1; i <= 30; i++) /* rows 3, 10, 17, 24: a 503 on their first attempt */
        fprintf(f, "u%02d,user %d,%d\n", i, i, i % 7 == 3 ? 1 : 0);
    fclose(f);
    char file[256];
    snprintf(file, sizeof file, "%s", br_put(&s, "users.csv", csv));
    free(csv);
    br_ran r = br_ctl(h, &s, "submit", file, "--path", "/users?fail_first={fail_first}", "--id-column", "id", NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    Batch__V1__Batch *orig = br_newest(h);
    char hint[128];
    snprintf(hint, sizeof hint, "retry them:    batchctl retry %s --server %s\n", orig->id, h->addr);
    cr_assert(strstr(r.err, hint), "the hint needs no input file: %s", r.err);
    br_ran_free(&r);
    cr_assert_eq(orig->counts->failed, 4);

    r = br_ctl(h, &s, "retry", orig->id, "--validate-only", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.err, "4 operations are valid; nothing was created"), "%s", r.err);
    br_ran_free(&r);
    cr_assert_eq(br_n_batches(h), 1);

    r = br_ctl(h, &s, "retry", orig->id, "--format-out", "csv", "--attempts", "2", NULL);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert_str_eq(r.out, "id,state,http_status,error\n"
                            "u03,SUCCEEDED,200,\nu10,SUCCEEDED,200,\nu17,SUCCEEDED,200,\nu24,SUCCEEDED,200,\n");
    br_ran_free(&r);
    Batch__V1__Batch *again = br_newest(h);
    cr_assert_eq(again->counts->total, 4);
    cr_assert_eq(again->options->max_attempts, 2, "flags override the original's options");
    assert_key_count(h, orig->id, "u10", 2, "the retry carried the first attempt's key");
    assert_key_count(h, orig->id, "u11", 1, "a succeeded row is not sent again");

    /* Every item of the retry succeeded: nothing to do, and nothing is created. */
    r = br_ctl(h, &s, "retry", again->id, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char want[128];
    snprintf(want, sizeof want, "every item of batch %s succeeded: nothing to retry", again->id);
    cr_assert(strstr(r.err, want), "%s", r.err);
    cr_assert_str_eq(r.out, "");
    br_ran_free(&r);
    cr_assert_eq(br_n_batches(h), 2);
    batch__v1__batch__free_unpacked(again, NULL);
    batch__v1__batch__free_unpacked(orig, NULL);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl_retry, an_unknown_or_running_batch_is_refused)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    br_ran r = br_ctl(h, &s, "retry", "01ZZZZZZZZZZZZZZZZZZZZZZZZ", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "NOT_FOUND: batch 01ZZZZZZZZZZZZZZZZZZZZZZZZ not found"), "%s", r.err);
    br_ran_free(&r);

    char file[256];
    snprintf(file, sizeof file, "%s",
             br_put(&s, "slow.ndjson", "{\"id\":\"s\",\"method\":\"GET\",\"path\":\"/s?delay_ms=5000&status=500\"}\n"));
    r = br_ctl(h, &s, "submit", file, "--async", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char id[32];
    snprintf(id, sizeof id, "%.26s", r.out);
    br_ran_free(&r);
    r = br_ctl(h, &s, "retry", id, NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "is still RUNNING: wait for it to end"), "%s", r.err);
    br_ran_free(&r);

    /* The input file of earlier versions is no longer taken, nor are the input flags. */
    r = br_ctl(h, &s, "retry", id, file, NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "retry takes ID"), "%s", r.err);
    br_ran_free(&r);
    r = br_ctl(h, &s, "retry", id, "--path", "/x", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "--path does not apply to retry"), "%s", r.err);
    br_ran_free(&r);
    cr_assert_eq(br_n_batches(h), 1);
    r = br_ctl(h, &s, "cancel", id, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    br_ran_free(&r);
    br_scratch_close(&s);
    h_stop(h);
}
