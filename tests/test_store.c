/* The durable store end to end (--data-dir): what was acknowledged survives a restart,
 * unfinished batches resume without re-running recorded items, watchers resume across it,
 * request_id and item keys keep working, retention deletes, results stream from the store. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

typedef struct store_fixture {
    harness *h;
    char *dir;
} store_fixture;

static store_fixture start_with_store(const char *extra1, const char *extra2)
{
    store_fixture f;
    f.dir = h_tempdir();
    const char *args[] = {"--data-dir", f.dir, "--sync", "normal", extra1, extra2, NULL};
    if (extra1 == NULL)
        args[4] = NULL;
    f.h = h_start(args);
    return f;
}

static void stop(store_fixture *f)
{
    h_stop(f->h);
    h_rmdir(f->dir);
}

static int recorded_at_least(const Batch__V1__Batch *b, void *arg)
{
    return b->last_sequence >= *(unsigned *)arg;
}

Test(store, acknowledged_batches_and_results_survive_a_restart)
{
    store_fixture f = start_with_store(NULL, NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(f.h,
        "{\"operations\":[{\"id\":\"a\",\"method\":\"GET\",\"path\":\"/users/1\"},"
        "{\"id\":\"b\",\"method\":\"GET\",\"path\":\"/x?status=404\"}],\"options\":{\"labels\":{\"team\":\"t1\"}}}");
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_COMPLETED_WITH_FAILURES);
    h_restart(f.h);
    Batch__V1__Batch *b = h_get(f.h, r->batch->id, NULL);
    cr_assert_not_null(b, "the batch is there after a restart");
    cr_assert_eq(b->state, BATCH__V1__BATCH_STATE__BATCH_STATE_COMPLETED_WITH_FAILURES);
    cr_assert_eq(b->counts->succeeded, 1);
    cr_assert_eq(b->counts->failed, 1);
    cr_assert_eq(b->last_sequence, 2);
    cr_assert_eq(b->options->n_labels, 1);
    size_t n = 0;
    Batch__V1__ItemResult **res = h_results(f.h, r->batch->id, 0, &n);
    cr_assert_eq(n, 2, "results are read back from the store");
    cr_assert_str_eq(res[0]->id, "a");
    cr_assert_eq(res[0]->http_status, 200);
    cr_assert_eq(res[0]->body.len, r->results[0]->body.len);
    cr_assert_eq(memcmp(res[0]->body.data, r->results[0]->body.data, res[0]->body.len), 0);
    cr_assert_eq(res[1]->http_status, 404);
    h_free_results(res, n);
    n = 0;
    res = h_results(f.h, r->batch->id, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED, &n);
    cr_assert_eq(n, 1, "the state filter works on stored results");
    cr_assert_str_eq(res[0]->id, "b");
    h_free_results(res, n);
    batch__v1__batch__free_unpacked(b, NULL);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    stop(&f);
}

Test(store, an_unfinished_batch_resumes_without_rerunning_recorded_items)
{
    store_fixture f = start_with_store("--shutdown-grace", "0s");
    Batch__V1__SubmitBatchResponse *r = h_submit_async(f.h, 40, "/r/%u?delay_ms=60", "\"maxConcurrency\":4");
    unsigned some = 12;
    batch__v1__batch__free_unpacked(h_wait_until(f.h, r->batch->id, 20, recorded_at_least, &some), NULL);
    h_restart(f.h); /* no grace: the running items are abandoned unrecorded */
    Batch__V1__Batch *b = h_wait_end(f.h, r->batch->id, 30);
    cr_assert_eq(b->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    cr_assert_eq(b->counts->succeeded, 40);
    cr_assert_eq(b->last_sequence, 40);
    /* Each item reached the upstream at most twice, and only those in flight at the stop
     * (at most the batch's concurrency) twice. Same key both times. */
    unsigned twice = 0;
    for (unsigned i = 0; i < 40; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s/i%u", r->batch->id, i);
        uint64_t c = upstream_key_count(f.h->up, key);
        cr_assert(c == 1 || c == 2, "item %u reached the upstream %lu times", i, (unsigned long)c);
        twice += c == 2;
    }
    cr_assert_leq(twice, 4, "%u items ran twice", twice);
    size_t n = 0;
    Batch__V1__ItemResult **res = h_results(f.h, r->batch->id, 0, &n);
    cr_assert_eq(n, 40, "exactly one result per item");
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(res[i]->index, i);
    h_free_results(res, n);
    batch__v1__batch__free_unpacked(b, NULL);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    stop(&f);
}

Test(store, a_watcher_resumes_across_a_restart_without_missing_an_item)
{
    store_fixture f = start_with_store("--shutdown-grace", "0s");
    Batch__V1__SubmitBatchResponse *r = h_submit_async(f.h, 30, "/w/%u?delay_ms=50", "\"maxConcurrency\":3");
    Batch__V1__WatchBatchRequest wreq = BATCH__V1__WATCH_BATCH_REQUEST__INIT;
    wreq.batch_id = r->batch->id;
    wreq.include_items = 1;
    rpcclient_stream *s = rpcclient_stream_open(f.h->client, M_WATCH, &wreq.base, 60);
    uint64_t last = 0, seen = 0;
    while (last < 10) {
        ProtobufCMessage *m = NULL;
        cr_assert_eq(rpcclient_stream_next(s, &batch__v1__batch_event__descriptor, &m, 0), 1);
        Batch__V1__BatchEvent *ev = (Batch__V1__BatchEvent *)m;
        if (ev->item) {
            cr_assert_eq(ev->sequence, last + 1);
            last = ev->sequence;
            seen++;
        }
        batch__v1__batch_event__free_unpacked(ev, NULL);
    }
    rpcclient_stream_cancel(s);
    rpcclient_stream_finish(s, NULL);
    h_restart(f.h);
    wreq.after_sequence = last;
    s = rpcclient_stream_open(f.h->client, M_WATCH, &wreq.base, 60);
    ProtobufCMessage *m = NULL;
    int final_state = 0;
    while (rpcclient_stream_next(s, &batch__v1__batch_event__descriptor, &m, 0) == 1) {
        Batch__V1__BatchEvent *ev = (Batch__V1__BatchEvent *)m;
        if (ev->item) {
            cr_assert_eq(ev->sequence, last + 1, "sequence %lu after %lu", (unsigned long)ev->sequence,
                         (unsigned long)last);
            last = ev->sequence;
            seen++;
        } else {
            final_state = ev->batch->state;
        }
        batch__v1__batch_event__free_unpacked(ev, NULL);
    }
    cr_assert_eq(rpcclient_stream_finish(s, NULL), GRPC_STATUS_OK);
    cr_assert_eq(seen, 30, "every item exactly once across the restart");
    cr_assert_eq(final_state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    stop(&f);
}

Test(store, request_id_replays_across_a_restart)
{
    store_fixture f = start_with_store(NULL, NULL);
    const char *json = "{\"operations\":[{\"method\":\"POST\",\"path\":\"/pay\"}],\"requestId\":\"pay-1\"}";
    Batch__V1__SubmitBatchResponse *first = h_submit_json(f.h, json);
    h_restart(f.h);
    Batch__V1__SubmitBatchResponse *again = h_submit_json(f.h, json);
    cr_assert_str_eq(again->batch->id, first->batch->id, "the same batch after a restart");
    upstream_stats us;
    upstream_get_stats(f.h->up, &us);
    cr_assert_eq(us.requests, 1, "nothing ran twice");
    Batch__V1__SubmitBatchRequest *other = h_request(
        "{\"operations\":[{\"method\":\"POST\",\"path\":\"/pay?x=2\"}],\"requestId\":\"pay-1\"}");
    rpcclient_status st = {0};
    cr_assert_null(h_submit(f.h, other, &st));
    cr_assert_eq(st.code, GRPC_STATUS_ALREADY_EXISTS);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_request__free_unpacked(other, NULL);
    batch__v1__submit_batch_response__free_unpacked(first, NULL);
    batch__v1__submit_batch_response__free_unpacked(again, NULL);
    stop(&f);
}

Test(store, an_item_key_is_reused_across_a_restart)
{
    store_fixture f = start_with_store(NULL, NULL);
    Batch__V1__SubmitBatchResponse *first = h_submit_json(f.h,
        "{\"operations\":[{\"id\":\"u\",\"method\":\"POST\",\"path\":\"/users\",\"idempotencyKey\":\"user-7\"}]}");
    h_restart(f.h);
    Batch__V1__SubmitBatchResponse *again = h_submit_json(f.h,
        "{\"operations\":[{\"id\":\"v\",\"method\":\"POST\",\"path\":\"/users\",\"idempotencyKey\":\"user-7\"}]}");
    cr_assert(again->results[0]->reused, "the stored success is reused");
    cr_assert_str_eq(again->results[0]->id, "v");
    cr_assert_eq(again->results[0]->http_status, first->results[0]->http_status);
    cr_assert_eq(upstream_key_count(f.h->up, "user-7"), 1);
    batch__v1__submit_batch_response__free_unpacked(first, NULL);
    batch__v1__submit_batch_response__free_unpacked(again, NULL);
    stop(&f);
}

Test(store, retention_deletes_ended_batches_from_memory_and_store)
{
    store_fixture f = start_with_store("--retention", "300ms");
    Batch__V1__SubmitBatchResponse *r = h_submit_json(f.h, "{\"operations\":[{\"method\":\"GET\",\"path\":\"/a\"}]}");
    h_sleep_ms(1200);
    rpcclient_status st = {0};
    cr_assert_null(h_get(f.h, r->batch->id, &st));
    cr_assert_eq(st.code, GRPC_STATUS_NOT_FOUND);
    rpcclient_status_clear(&st);
    h_restart(f.h);
    cr_assert_null(h_get(f.h, r->batch->id, &st), "deleted from the store too");
    cr_assert_eq(st.code, GRPC_STATUS_NOT_FOUND);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    stop(&f);
}

static Batch__V1__ListBatchesResponse *list(harness *h, unsigned page, const char *token, int state,
                                            const char *label_key, const char *label_value)
{
    Batch__V1__ListBatchesRequest req = BATCH__V1__LIST_BATCHES_REQUEST__INIT;
    Batch__V1__ListBatchesRequest__LabelsEntry e = BATCH__V1__LIST_BATCHES_REQUEST__LABELS_ENTRY__INIT;
    Batch__V1__ListBatchesRequest__LabelsEntry *ep = &e;
    req.page_size = page;
    req.page_token = (char *)(token ? token : "");
    req.state = state;
    if (label_key) {
        e.key = (char *)label_key;
        e.value = (char *)label_value;
        req.n_labels = 1;
        req.labels = &ep;
    }
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpcclient_unary(h->client, M_LIST, &req.base, &batch__v1__list_batches_response__descriptor, &m,
                                 10, NULL), GRPC_STATUS_OK);
    return (Batch__V1__ListBatchesResponse *)m;
}

Test(store, list_batches_pages_newest_first_with_stable_tokens_across_a_restart)
{
    store_fixture f = start_with_store(NULL, NULL);
    char ids[5][32];
    for (int i = 0; i < 5; i++) {
        char json[256];
        snprintf(json, sizeof json,
                 "{\"operations\":[{\"method\":\"GET\",\"path\":\"/x%s\"}],\"options\":{\"labels\":{\"n\":\"%s\"}}}",
                 i == 2 ? "?status=500" : "", i % 2 ? "odd" : "even");
        Batch__V1__SubmitBatchResponse *r = h_submit_json(f.h, json);
        snprintf(ids[i], sizeof ids[i], "%s", r->batch->id);
        batch__v1__submit_batch_response__free_unpacked(r, NULL);
    }
    Batch__V1__ListBatchesResponse *p1 = list(f.h, 2, NULL, 0, NULL, NULL);
    cr_assert_eq(p1->n_batches, 2);
    cr_assert_str_eq(p1->batches[0]->id, ids[4], "newest first");
    cr_assert_str_eq(p1->batches[1]->id, ids[3]);
    h_restart(f.h);
    Batch__V1__ListBatchesResponse *p2 = list(f.h, 2, p1->next_page_token, 0, NULL, NULL);
    cr_assert_eq(p2->n_batches, 2, "the token still works after a restart");
    cr_assert_str_eq(p2->batches[0]->id, ids[2]);
    cr_assert_str_eq(p2->batches[1]->id, ids[1]);
    Batch__V1__ListBatchesResponse *p3 = list(f.h, 2, p2->next_page_token, 0, NULL, NULL);
    cr_assert_eq(p3->n_batches, 1);
    cr_assert_str_eq(p3->batches[0]->id, ids[0]);
    cr_assert_str_eq(p3->next_page_token, "", "the last page has no token");
    Batch__V1__ListBatchesResponse *failed =
        list(f.h, 10, NULL, BATCH__V1__BATCH_STATE__BATCH_STATE_COMPLETED_WITH_FAILURES, NULL, NULL);
    cr_assert_eq(failed->n_batches, 1);
    cr_assert_str_eq(failed->batches[0]->id, ids[2]);
    Batch__V1__ListBatchesResponse *odd = list(f.h, 10, NULL, 0, "n", "odd");
    cr_assert_eq(odd->n_batches, 2);
    cr_assert_str_eq(odd->batches[0]->id, ids[3]);
    cr_assert_str_eq(odd->batches[1]->id, ids[1]);
    batch__v1__list_batches_response__free_unpacked(p1, NULL);
    batch__v1__list_batches_response__free_unpacked(p2, NULL);
    batch__v1__list_batches_response__free_unpacked(p3, NULL);
    batch__v1__list_batches_response__free_unpacked(failed, NULL);
    batch__v1__list_batches_response__free_unpacked(odd, NULL);
    stop(&f);
}

Test(store, list_results_streams_a_big_batch_from_the_store_in_input_order)
{
    store_fixture f = start_with_store("--max-items", "20000");
    Batch__V1__SubmitBatchResponse *r = h_submit_async(f.h, 20000, "/b/%u", "\"maxConcurrency\":64");
    Batch__V1__Batch *b = h_wait_end(f.h, r->batch->id, 120);
    cr_assert_eq(b->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    h_restart(f.h); /* the ended batch comes back as a summary: results only in the store */
    Batch__V1__ListResultsRequest req = BATCH__V1__LIST_RESULTS_REQUEST__INIT;
    req.batch_id = r->batch->id;
    rpcclient_stream *s = rpcclient_stream_open(f.h->client, M_RESULTS, &req.base, 120);
    ProtobufCMessage *m;
    uint32_t n = 0;
    while (rpcclient_stream_next(s, &batch__v1__item_result__descriptor, &m, 0) == 1) {
        Batch__V1__ItemResult *it = (Batch__V1__ItemResult *)m;
        cr_assert_eq(it->index, n, "input order: %u at %u", it->index, n);
        n++;
        batch__v1__item_result__free_unpacked(it, NULL);
    }
    cr_assert_eq(rpcclient_stream_finish(s, NULL), GRPC_STATUS_OK);
    cr_assert_eq(n, 20000);
    batch__v1__batch__free_unpacked(b, NULL);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    stop(&f);
}

Test(store, a_watcher_replays_an_ended_batch_from_the_store_across_pages)
{
    store_fixture f = start_with_store(NULL, NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_async(f.h, 700, "/p/%u", "\"maxConcurrency\":16");
    batch__v1__batch__free_unpacked(h_wait_end(f.h, r->batch->id, 30), NULL);
    h_restart(f.h); /* the ended batch comes back as a summary: items only in the store */
    Batch__V1__WatchBatchRequest wreq = BATCH__V1__WATCH_BATCH_REQUEST__INIT;
    wreq.batch_id = r->batch->id;
    wreq.include_items = 1;
    wreq.after_sequence = 100;
    rpcclient_stream *s = rpcclient_stream_open(f.h->client, M_WATCH, &wreq.base, 60);
    ProtobufCMessage *m = NULL;
    uint64_t next = 101;
    int final_state = 0;
    while (rpcclient_stream_next(s, &batch__v1__batch_event__descriptor, &m, 0) == 1) {
        Batch__V1__BatchEvent *ev = (Batch__V1__BatchEvent *)m;
        if (ev->item) {
            cr_assert_eq(ev->sequence, next, "got %lu, want %lu", (unsigned long)ev->sequence, (unsigned long)next);
            cr_assert_eq(ev->item->sequence, next);
            next++;
        } else {
            final_state = ev->batch->state;
        }
        batch__v1__batch_event__free_unpacked(ev, NULL);
    }
    cr_assert_eq(rpcclient_stream_finish(s, NULL), GRPC_STATUS_OK);
    cr_assert_eq(next, 701, "items 101..700 replayed from the store, over several pages");
    cr_assert_eq(final_state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    stop(&f);
}

static int private_mounts(void)
{
    /* A mount namespace of this test process only (Criterion runs each test in its own). */
    return unshare(CLONE_NEWNS) == 0 && mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 ? 0 : -1;
}

/* Fills the file system of dir, leaving about `leave` bytes; returns the ballast's path. */
static void fill(const char *dir, size_t leave, char *path, size_t len)
{
    snprintf(path, len, "%s/ballast", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    static char block[4096];
    while (write(fd, block, sizeof block) == (ssize_t)sizeof block)
        ; /* until ENOSPC */
    /* Give back `leave` bytes so that batchd starts and accepts one batch. */
    off_t size = lseek(fd, 0, SEEK_END);
    cr_assert_eq(ftruncate(fd, size > (off_t)leave ? size - (off_t)leave : 0), 0);
    close(fd);
}

Test(store, a_full_disk_refuses_new_batches_until_space_returns_and_loses_nothing, .timeout = 120)
{
    char *dir = h_tempdir();
    /* 16 MiB: room, once the ballast is gone, for the WAL the held writes grow. */
    if (private_mounts() != 0 || mount("tmpfs", dir, "tmpfs", 0, "size=16m") != 0)
        cr_skip_test("needs CAP_SYS_ADMIN to mount a small tmpfs (%s)", strerror(errno));
    const char *args[] = {"--data-dir", dir, NULL};
    harness *h = h_start(args);
    char ballast[400];
    fill(dir, 96 * 1024, ballast, sizeof ballast);
    /* 300 results of ~4 KB cannot fit in what is left. */
    Batch__V1__SubmitBatchRequest *req = h_request_n(300, "/big/%u?size=4000", "{\"mode\":\"MODE_ASYNC\"}");
    rpcclient_status st = {0};
    Batch__V1__SubmitBatchResponse *r = h_submit(h, req, &st);
    cr_assert_not_null(r, "the batch itself still fits: %s", st.message);
    rpcclient_status_clear(&st);
    /* Once a write fails, new batches are refused, with a time to retry after. */
    Batch__V1__SubmitBatchRequest *next = h_request_n(1, "/n/%u", NULL);
    int refused = 0;
    for (int i = 0; i < 500 && !refused; i++) {
        /* A submission racing the first failed write may be taken and then not stored in
         * time (STORE_SLOW, never acknowledged); once the failure is known, none is taken. */
        ProtobufCMessage *x = NULL;
        grpc_status_code code = rpcclient_unary(h->client, M_SUBMIT, &next->base,
                                                &batch__v1__submit_batch_response__descriptor, &x, 2, &st);
        char reason[64];
        h_reason(&st, reason, sizeof reason);
        if (code == GRPC_STATUS_UNAVAILABLE && strcmp(reason, "STORE_UNAVAILABLE") == 0) {
            Google__Rpc__RetryInfo *ri = h_detail(&st, &google__rpc__retry_info__descriptor);
            cr_assert_not_null(ri, "the refusal says when to retry");
            google__rpc__retry_info__free_unpacked(ri, NULL);
            refused = 1;
        } else {
            cr_assert(code == GRPC_STATUS_OK || strcmp(reason, "STORE_SLOW") == 0, "%d %s", code, st.message);
        }
        if (x)
            protobuf_c_message_free_unpacked(x, NULL);
        rpcclient_status_clear(&st);
        h_sleep_ms(20);
    }
    cr_assert(refused, "a store that cannot write must not accept batches");
    cr_assert_eq(unlink(ballast), 0);
    /* The held writes complete; the batch ends with every result; batches are accepted again. */
    Batch__V1__Batch *end = h_wait_end(h, r->batch->id, 60);
    cr_assert_eq(end->counts->succeeded, 300);
    Batch__V1__SubmitBatchResponse *again = h_submit(h, next, &st);
    cr_assert_not_null(again, "accepted again: %s", st.message);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_response__free_unpacked(again, NULL);
    h_restart(h);
    size_t n = 0;
    Batch__V1__ItemResult **res = h_results(h, r->batch->id, 0, &n);
    cr_assert_eq(n, 300, "nothing recorded was lost");
    h_free_results(res, n);
    batch__v1__batch__free_unpacked(end, NULL);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    batch__v1__submit_batch_request__free_unpacked(next, NULL);
    h_stop(h);
    umount2(dir, MNT_DETACH);
    h_rmdir(dir);
}
