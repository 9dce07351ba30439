/* WatchBatch: a server stream fed from the batch's stored results.
 *
 * A watcher never queues events. It keeps a cursor (the next item sequence to send) and a
 * "progress changed" mark, has at most one message in flight, and when that message has
 * left picks the next thing to send from the batch itself. A slow reader therefore costs
 * one cursor, whatever the batch does: item results are read from the batch when their
 * turn comes, and progress is coalesced into the latest snapshot. */
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "msg.h"
#include "pager.h"
#include "pbtime.h"
#include "rpcs.h"

/* Floor between two progress events of one watcher, so that hundreds of watchers of a
 * fast batch cost a bounded number of sends; a client asks for more with min_interval. */
#define WATCH_PROGRESS_FLOOR_NS (10 * PBTIME_NS_PER_MS)

typedef enum watch_state {
    WATCH_LIVE,      /* sending as things change */
    WATCH_FINAL,     /* the final event is in flight; OK follows */
    WATCH_DONE,      /* finished or abandoned */
} watch_state;

typedef struct watch_call {
    rpc_call base;
    watch_state state;
    batch *b;
    batch_observer obs;
    int include_items;
    uint64_t next_seq;          /* next item event to send */
    int64_t min_interval_ns;
    int64_t last_progress_ns;   /* monotonic, of the last progress event sent */
    int progress_dirty;         /* the batch changed since the last progress event */
    ev_timer interval;          /* wakes a watcher held back by min_interval */
    int paging;                 /* replaying items from the store (they left memory) */
    pager pg;
    list_node link;             /* app->watchers */
    list_node dirty;            /* app->dirty_watchers */
} watch_call;

static void mark_dirty(watch_call *w)
{
    app *a = rpc_call_arg(&w->base);
    if (!list_linked(&w->dirty))
        list_push_back(&a->dirty_watchers, &w->dirty);
}

static void detach(watch_call *w)
{
    app *a = rpc_call_arg(&w->base);
    if (w->state == WATCH_DONE)
        return;
    w->state = WATCH_DONE;
    batch_unobserve(&w->obs);
    ev_timer_stop(a->loop, &w->interval);
    list_remove(&w->link);
    if (list_linked(&w->dirty))
        list_remove(&w->dirty);
    a->n_watchers--;
    w->b = NULL;
}

static void on_page_ready(pager *p);

/* Sends the next message, if any is due and none is in flight. */
static void pump(watch_call *w)
{
    app *a = rpc_call_arg(&w->base);
    batch *b = w->b;
    if (w->state != WATCH_LIVE || rpc_call_sending(&w->base))
        return;
    if (w->include_items && w->next_seq <= b->last_sequence) {
        if (b->items) {
            uint32_t idx = b->by_seq[w->next_seq - 1];
            w->next_seq++;
            rpc_call_send(&w->base, msg_event_item(b, idx));
            return;
        }
        /* The items left memory (the batch ended): replay them from the store. */
        if (!w->paging) {
            w->paging = 1;
            pager_init(&w->pg, a->store, &w->base, b->id, PAGER_RESULTS_BY_SEQ, 0, (uint32_t)(w->next_seq - 1),
                       on_page_ready);
        }
        store_result r;
        int got = pager_next(&w->pg, &r);
        if (got == 0)
            return; /* on_page_ready follows */
        if (got == 1) {
            w->next_seq = r.seq + 1;
            rpc_call_send(&w->base, msg_event_result(r.seq, r.result));
            grpc_slice_unref(r.result);
            return;
        }
        if (w->pg.err) {
            detach(w);
            rpc_call_fail(&w->base, GRPC_STATUS_INTERNAL, "STORE_READ_FAILED",
                          "reading results from the store failed: %s", store_strerror(w->pg.err));
            return;
        }
        w->next_seq = b->last_sequence + 1; /* the store has nothing more to replay */
    }
    int ended = batch_state_terminal(b->state);
    if (!w->progress_dirty && !ended)
        return;
    int64_t now = pbtime_mono_ns();
    int64_t gap = w->min_interval_ns > WATCH_PROGRESS_FLOOR_NS ? w->min_interval_ns : WATCH_PROGRESS_FLOOR_NS;
    if (!ended && now - w->last_progress_ns < gap) {
        if (!ev_is_active(&w->interval)) {
            ev_timer_set(&w->interval, (double)(w->last_progress_ns + gap - now) / 1e9, 0.);
            ev_timer_start(a->loop, &w->interval);
        }
        return;
    }
    w->progress_dirty = 0;
    w->last_progress_ns = now;
    if (ended)
        w->state = WATCH_FINAL; /* the terminal snapshot is the last event */
    rpc_call_send(&w->base, msg_event_batch(b));
}

static void on_page_ready(pager *p)
{
    watch_call *w = (watch_call *)((char *)p - offsetof(watch_call, pg));
    if (w->state == WATCH_LIVE && !rpc_call_sending(&w->base))
        pump(w);
}

static void on_item_ended(batch_observer *o, batch *b, uint32_t index)
{
    watch_call *w = container_of(o, watch_call, obs);
    if (w->include_items)
        mark_dirty(w);
}

static void on_changed(batch_observer *o, batch *b)
{
    watch_call *w = container_of(o, watch_call, obs);
    w->progress_dirty = 1;
    mark_dirty(w);
}

static void on_freed(batch_observer *o, batch *b)
{
    watch_call *w = container_of(o, watch_call, obs);
    detach(w);
    rpc_call_fail(&w->base, GRPC_STATUS_ABORTED, "BATCH_REMOVED", "batch %s was removed", b->id);
}

static void on_interval(struct ev_loop *loop, ev_timer *t, int revents)
{
    pump(container_of(t, watch_call, interval));
}

static void watch_sent(rpc_call *c, int ok)
{
    watch_call *w = (watch_call *)c;
    if (!ok)
        return; /* the call is dying: cancelled follows */
    if (w->state == WATCH_FINAL) {
        detach(w);
        rpc_call_finish(c, NULL, NULL);
        return;
    }
    pump(w);
}

static void watch_cancelled(rpc_call *c) { detach((watch_call *)c); }

static void watch_destroy(rpc_call *c)
{
    watch_call *w = (watch_call *)c;
    if (w->paging)
        pager_clear(&w->pg);
}

static void watch_start(rpc_call *c, grpc_byte_buffer *req)
{
    watch_call *w = (watch_call *)c;
    app *a = rpc_call_arg(c);
    w->state = WATCH_DONE; /* until attached */
    list_init(&w->link);
    list_init(&w->dirty);
    list_init(&w->obs.link);
    ev_timer_init(&w->interval, on_interval, 0., 0.);
    Batch__V1__WatchBatchRequest *r =
        (Batch__V1__WatchBatchRequest *)rpc_unpack_request(c, &batch__v1__watch_batch_request__descriptor, req);
    if (r == NULL)
        return;
    batch *b = rpc_find_batch(c, r->batch_id);
    if (b == NULL)
        goto done;
    int64_t interval = 0;
    if (r->min_interval && (pbtime_duration_ns(r->min_interval, &interval) < 0 || interval < 0)) {
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_INVALID_ARGUMENT, "invalid min_interval");
        if (st) {
            rpcstatus_field_violation(st, "min_interval", "must be a valid, non-negative duration");
            rpcstatus_error_info(st, "INVALID_MIN_INTERVAL");
        }
        rpc_call_finish(c, st, NULL);
        rpcstatus_free(st);
        goto done;
    }
    if (r->after_sequence > b->last_sequence) {
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_OUT_OF_RANGE,
                                      "after_sequence %llu is beyond the batch's last sequence %llu",
                                      (unsigned long long)r->after_sequence,
                                      (unsigned long long)b->last_sequence);
        if (st) {
            rpcstatus_field_violation(st, "after_sequence", "at most the batch's last_sequence");
            rpcstatus_error_info(st, "SEQUENCE_OUT_OF_RANGE");
        }
        rpc_call_finish(c, st, NULL);
        rpcstatus_free(st);
        goto done;
    }
    if (a->n_watchers >= a->cfg->max_watchers) {
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_RESOURCE_EXHAUSTED, "too many watchers (limit %u)",
                                      a->cfg->max_watchers);
        if (st) {
            rpcstatus_quota_violation(st, "watchers", "at most %u WatchBatch streams at once (batchd --max-watchers)",
                                      a->cfg->max_watchers);
            rpcstatus_retry_after(st, PBTIME_NS_PER_SEC);
            rpcstatus_error_info(st, "TOO_MANY_WATCHERS");
        }
        rpc_call_finish(c, st, NULL);
        rpcstatus_free(st);
        goto done;
    }
    w->state = WATCH_LIVE;
    w->b = b;
    w->include_items = r->include_items;
    w->next_seq = r->after_sequence + 1;
    w->min_interval_ns = interval;
    w->obs.item_ended = on_item_ended;
    w->obs.changed = on_changed;
    w->obs.freed = on_freed;
    batch_observe(b, &w->obs);
    list_push_back(&a->watchers, &w->link);
    a->n_watchers++;
    /* The snapshot goes first, then replayed items, then live events. */
    w->progress_dirty = 0;
    w->last_progress_ns = pbtime_mono_ns();
    if (batch_state_terminal(b->state) && !(w->include_items && w->next_seq <= b->last_sequence))
        w->state = WATCH_FINAL; /* nothing more will happen: the snapshot is also the final event */
    rpc_call_send(c, msg_event_batch(b));
done:
    batch__v1__watch_batch_request__free_unpacked(r, NULL);
}

void rpc_watch_flush(app *a)
{
    while (!list_empty(&a->dirty_watchers)) {
        watch_call *w = container_of(a->dirty_watchers.next, watch_call, dirty);
        list_remove(&w->dirty);
        pump(w);
    }
}

void rpc_watch_release_all(app *a)
{
    list_node *pos, *tmp;
    list_foreach_safe(pos, tmp, &a->watchers) {
        watch_call *w = container_of(pos, watch_call, link);
        batch *b = w->b;
        if (batch_state_terminal(b->state) && !rpc_call_sending(&w->base)) {
            /* Its final event can still go out before the server stops. */
            w->progress_dirty = 1;
            w->last_progress_ns = 0;
            pump(w);
            if (w->state == WATCH_FINAL)
                continue;
        }
        detach(w);
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_UNAVAILABLE, "batchd is shutting down; watch again "
                                      "with after_sequence to resume");
        if (st) {
            rpcstatus_retry_after(st, PBTIME_NS_PER_SEC);
            rpcstatus_error_info(st, "SHUTTING_DOWN");
        }
        rpc_call_finish(&w->base, st, NULL);
        rpcstatus_free(st);
    }
}

void rpc_watch_register(app *a)
{
    a->methods[APP_WATCH_BATCH] = (rpc_method){
        .path = "/batch.v1.BatchService/WatchBatch",
        .call_size = sizeof(watch_call),
        .start = watch_start,
        .sent = watch_sent,
        .cancelled = watch_cancelled,
        .destroy = watch_destroy,
    };
}
