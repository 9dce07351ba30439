/* WatchBatch end to end: snapshot, item events, final state, resume with after_sequence,
 * slow watchers, min_interval, hundreds of watchers at once. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

typedef struct events {
    Batch__V1__BatchEvent **v;
    size_t n, cap;
    grpc_status_code code;
    char reason[64];
} events;

static void events_free(events *e)
{
    for (size_t i = 0; i < e->n; i++)
        batch__v1__batch_event__free_unpacked(e->v[i], NULL);
    free(e->v);
}

static rpcclient_stream *watch_open(harness *h, const char *id, int items, uint64_t after, int min_interval_ms)
{
    Batch__V1__WatchBatchRequest req = BATCH__V1__WATCH_BATCH_REQUEST__INIT;
    Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
    req.batch_id = (char *)id;
    req.include_items = items;
    req.after_sequence = after;
    if (min_interval_ms) {
        d.nanos = min_interval_ms * 1000000;
        req.min_interval = &d;
    }
    return rpcclient_stream_open(h->client, M_WATCH, &req.base, 120);
}

/* Reads up to max events (0: all) into e. Returns 1 if the stream ended. */
static int watch_read(rpcclient_stream *s, events *e, size_t max)
{
    for (size_t got = 0; max == 0 || got < max; got++) {
        ProtobufCMessage *m = NULL;
        int r = rpcclient_stream_next(s, &batch__v1__batch_event__descriptor, &m, 0);
        cr_assert_neq(r, -1, "undecodable event");
        if (r == 0)
            return 1;
        if (e->n == e->cap)
            e->v = realloc(e->v, (e->cap = e->cap ? e->cap * 2 : 64) * sizeof *e->v);
        e->v[e->n++] = (Batch__V1__BatchEvent *)m;
    }
    return 0;
}

static void watch_close(rpcclient_stream *s, events *e)
{
    rpcclient_status st = {0};
    e->code = rpcclient_stream_finish(s, &st);
    h_reason(&st, e->reason, sizeof e->reason);
    rpcclient_status_clear(&st);
}

static events watch_all(harness *h, const char *id, int items, uint64_t after, int min_interval_ms)
{
    events e = {0};
    rpcclient_stream *s = watch_open(h, id, items, after, min_interval_ms);
    watch_read(s, &e, 0);
    watch_close(s, &e);
    return e;
}

/* Checks that the item events in e are exactly sequences from..to, once each, in order. */
static void assert_items(const events *e, uint64_t from, uint64_t to)
{
    uint64_t want = from;
    for (size_t i = 0; i < e->n; i++) {
        const Batch__V1__BatchEvent *ev = e->v[i];
        if (ev->item == NULL)
            continue;
        cr_assert_eq(ev->sequence, want, "event %zu: sequence %lu, want %lu", i, (unsigned long)ev->sequence,
                     (unsigned long)want);
        cr_assert_eq(ev->item->sequence, want);
        want++;
    }
    cr_assert_eq(want, to + 1, "items %lu..%lu, got up to %lu", (unsigned long)from, (unsigned long)to,
                 (unsigned long)want - 1);
}

Test(watch, snapshot_then_every_item_then_the_final_state)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_async(h, 30, "/w/%u?delay_ms=20", "\"maxConcurrency\":3");
    events e = watch_all(h, r->batch->id, 1, 0, 0);
    cr_assert_eq(e.code, GRPC_STATUS_OK);
    cr_assert_gt(e.n, 31);
    cr_assert_not_null(e.v[0]->batch, "the first event is a snapshot");
    cr_assert_str_eq(e.v[0]->batch->id, r->batch->id);
    const Batch__V1__BatchEvent *last = e.v[e.n - 1];
    cr_assert_not_null(last->batch, "the last event is the final state");
    cr_assert_eq(last->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    cr_assert_eq(last->batch->counts->succeeded, 30);
    cr_assert_eq(last->sequence, 30);
    assert_items(&e, 1, 30);
    /* Progress events in between report growing counts. */
    uint64_t prev = 0;
    for (size_t i = 0; i < e.n; i++) {
        if (e.v[i]->batch == NULL)
            continue;
        cr_assert_geq(e.v[i]->batch->last_sequence, prev);
        prev = e.v[i]->batch->last_sequence;
    }
    events_free(&e);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(watch, an_ended_batch_replays_items_after_the_given_sequence)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_async(h, 10, "/w/%u", NULL);
    batch__v1__batch__free_unpacked(h_wait_end(h, r->batch->id, 10), NULL);
    events e = watch_all(h, r->batch->id, 1, 6, 0);
    cr_assert_eq(e.code, GRPC_STATUS_OK);
    assert_items(&e, 7, 10);
    cr_assert_eq(e.n, 1 + 4 + 1, "snapshot, items 7-10, final");
    events_free(&e);
    /* Without items, the snapshot of an ended batch is the only and final event. */
    e = watch_all(h, r->batch->id, 0, 0, 0);
    cr_assert_eq(e.code, GRPC_STATUS_OK);
    cr_assert_eq(e.n, 1);
    cr_assert_eq(e.v[0]->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    events_free(&e);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(watch, a_reconnecting_watcher_misses_nothing)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_async(h, 60, "/w/%u?delay_ms=15", "\"maxConcurrency\":4");
    events first = {0};
    rpcclient_stream *s = watch_open(h, r->batch->id, 1, 0, 0);
    uint64_t last = 0;
    while (last < 12) {
        cr_assert_eq(watch_read(s, &first, 1), 0);
        if (first.v[first.n - 1]->item)
            last = first.v[first.n - 1]->sequence;
    }
    rpcclient_stream_cancel(s);
    watch_close(s, &first);
    cr_assert_eq(first.code, GRPC_STATUS_CANCELLED);
    events rest = watch_all(h, r->batch->id, 1, last, 0);
    cr_assert_eq(rest.code, GRPC_STATUS_OK);
    assert_items(&first, 1, last);
    assert_items(&rest, last + 1, 60);
    events_free(&first);
    events_free(&rest);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(watch, a_slow_watcher_gets_every_item_exactly_once)
{
    const char *args[] = {"--max-items", "5000", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *r = h_submit_async(h, 3000, "/w/%u", "\"maxConcurrency\":64");
    events e = {0};
    rpcclient_stream *s = watch_open(h, r->batch->id, 1, 0, 0);
    cr_assert_eq(watch_read(s, &e, 1), 0);
    /* Do not read while the batch runs to its end. */
    batch__v1__batch__free_unpacked(h_wait_end(h, r->batch->id, 60), NULL);
    cr_assert_eq(watch_read(s, &e, 0), 1);
    watch_close(s, &e);
    cr_assert_eq(e.code, GRPC_STATUS_OK);
    assert_items(&e, 1, 3000);
    cr_assert_eq(e.v[e.n - 1]->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    events_free(&e);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(watch, a_slow_progress_watcher_gets_coalesced_progress)
{
    const char *args[] = {"--max-items", "5000", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *r = h_submit_async(h, 3000, "/w/%u?delay_ms=10", "\"maxConcurrency\":64");
    events e = {0};
    rpcclient_stream *s = watch_open(h, r->batch->id, 0, 0, 0);
    cr_assert_eq(watch_read(s, &e, 1), 0);
    batch__v1__batch__free_unpacked(h_wait_end(h, r->batch->id, 60), NULL);
    cr_assert_eq(watch_read(s, &e, 0), 1);
    watch_close(s, &e);
    cr_assert_eq(e.code, GRPC_STATUS_OK);
    /* 3000 items ended while it did not read: it got snapshots of the latest progress (at
     * most one per 10 ms of the ~0.5 s run), never one event per item. */
    cr_assert_lt(e.n, 150, "%zu events for 3000 items", e.n);
    const Batch__V1__Batch *fin = e.v[e.n - 1]->batch;
    cr_assert_eq(fin->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    cr_assert_eq(fin->counts->succeeded, 3000);
    for (size_t i = 1; i < e.n; i++)
        cr_assert_geq(e.v[i]->batch->last_sequence, e.v[i - 1]->batch->last_sequence);
    events_free(&e);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(watch, min_interval_coalesces_progress)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_async(h, 40, "/w/%u?delay_ms=25", "\"maxConcurrency\":1");
    events e = watch_all(h, r->batch->id, 0, 0, 300);
    cr_assert_eq(e.code, GRPC_STATUS_OK);
    /* About 1 s of work at one progress event per 300 ms: snapshot + ~4 + final. */
    cr_assert_leq(e.n, 7, "%zu events", e.n);
    cr_assert_geq(e.n, 2);
    for (size_t i = 0; i < e.n; i++)
        cr_assert_null(e.v[i]->item, "no items unless asked");
    cr_assert_eq(e.v[e.n - 1]->batch->counts->succeeded, 40);
    events_free(&e);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(watch, two_hundred_watchers_at_once)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_async(h, 100, "/w/%u?delay_ms=10", "\"maxConcurrency\":10");
    enum { N = 200 };
    rpcclient_stream *s[N];
    for (int i = 0; i < N; i++)
        s[i] = watch_open(h, r->batch->id, 1, 0, 0);
    for (int i = 0; i < N; i++) {
        events e = {0};
        cr_assert_eq(watch_read(s[i], &e, 0), 1);
        watch_close(s[i], &e);
        cr_assert_eq(e.code, GRPC_STATUS_OK, "watcher %d: %d", i, e.code);
        assert_items(&e, 1, 100); /* after_sequence 0 replays from 1 */
        cr_assert_eq(e.v[e.n - 1]->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
        events_free(&e);
    }
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(watch, after_sequence_beyond_the_batch_is_out_of_range)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_async(h, 3, "/w/%u", NULL);
    batch__v1__batch__free_unpacked(h_wait_end(h, r->batch->id, 10), NULL);
    events e = watch_all(h, r->batch->id, 1, 4, 0);
    cr_assert_eq(e.code, GRPC_STATUS_OUT_OF_RANGE);
    cr_assert_str_eq(e.reason, "SEQUENCE_OUT_OF_RANGE");
    cr_assert_eq(e.n, 0);
    events_free(&e);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(watch, the_watcher_limit_is_resource_exhausted)
{
    const char *args[] = {"--max-watchers", "2", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *r = h_submit_async(h, 2, "/w/%u?delay_ms=3000", NULL);
    events a = {0}, b = {0};
    rpcclient_stream *s1 = watch_open(h, r->batch->id, 0, 0, 0), *s2 = watch_open(h, r->batch->id, 0, 0, 0);
    cr_assert_eq(watch_read(s1, &a, 1), 0);
    cr_assert_eq(watch_read(s2, &b, 1), 0);
    events c = watch_all(h, r->batch->id, 0, 0, 0);
    cr_assert_eq(c.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    cr_assert_str_eq(c.reason, "TOO_MANY_WATCHERS");
    rpcclient_stream_cancel(s1);
    watch_close(s1, &a);
    rpcclient_stream_cancel(s2);
    watch_close(s2, &b);
    events_free(&a);
    events_free(&b);
    events_free(&c);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(watch, cancelled_items_are_watched_too)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_async(h, 10, "/w/%u?delay_ms=5000", "\"maxConcurrency\":2");
    events e = {0};
    rpcclient_stream *s = watch_open(h, r->batch->id, 1, 0, 0);
    cr_assert_eq(watch_read(s, &e, 1), 0);
    Batch__V1__CancelBatchRequest creq = BATCH__V1__CANCEL_BATCH_REQUEST__INIT;
    creq.batch_id = r->batch->id;
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpcclient_unary(h->client, M_CANCEL, &creq.base, &batch__v1__batch__descriptor, &m, 10, NULL),
                 GRPC_STATUS_OK);
    protobuf_c_message_free_unpacked(m, NULL);
    cr_assert_eq(watch_read(s, &e, 0), 1);
    watch_close(s, &e);
    cr_assert_eq(e.code, GRPC_STATUS_OK);
    assert_items(&e, 1, 10);
    cr_assert_eq(e.v[e.n - 1]->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_CANCELLED);
    events_free(&e);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}
