/* SubmitBatch and CancelBatch, and the call that waits for a batch on their behalf.
 *
 * A submission is answered only once its batch is durable (the store said so); a
 * synchronous one once the batch ended, or shortly before the caller's deadline with the
 * batch as it stands. A request_id makes a submission idempotent: the same request again
 * gets the original batch; an item whose idempotency_key already succeeded is not sent
 * upstream again but ends with that result, marked reused. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>

#include "log.h"
#include "msg.h"
#include "pbgrpc.h"
#include "pbtime.h"
#include "rpcs.h"
#include "validate.h"

typedef enum wait_state {
    WAIT_IDLE,    /* not waiting: answered, or never waited */
    WAIT_STORED,  /* until the batch is durable (it leaves PENDING) */
    WAIT_ENDED,   /* until the batch ends */
} wait_state;

typedef struct wait_call {
    rpc_call base;    /* first: the rpc layer allocates and frees the whole struct */
    wait_state state;
    int submit;       /* the answer is a SubmitBatchResponse (else a Batch) */
    int sync;         /* SubmitBatch: answer with the results when the batch ends */
    batch *b;
    batch_observer obs;
    ev_timer deadline;
    list_node link;   /* app->waiters while waiting */
} wait_call;

/* A batch on its way to the store: first the reads of earlier successes its item keys
 * reuse (when they are only in the store), then put_batch. The submitting call may be
 * gone by the time these complete; the batch is not (this holds a reference). */
typedef struct submit_prep {
    app *a;
    batch *b;
    unsigned reads;   /* key reads in flight */
} submit_prep;

typedef struct key_read {
    submit_prep *p;
    uint32_t index;   /* the item that may reuse */
    uint32_t source;  /* the index of the earlier success in its batch */
} key_read;

static void wait_detach(wait_call *w)
{
    app *a = rpc_call_arg(&w->base);
    if (w->state == WAIT_IDLE)
        return;
    w->state = WAIT_IDLE;
    batch_unobserve(&w->obs);
    ev_timer_stop(a->loop, &w->deadline);
    list_remove(&w->link);
    w->b = NULL;
}

/* Answers with the batch as it stands now. */
static void wait_reply(wait_call *w)
{
    app *a = rpc_call_arg(&w->base);
    batch *b = w->b;
    wait_detach(w);
    if (b->state == BATCH__V1__BATCH_STATE__BATCH_STATE_PENDING) {
        /* Not yet durable, so not accepted: say so rather than acknowledge it. The write
         * goes on; the same request_id finds the batch once it is stored. */
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_UNAVAILABLE, "batch %s could not be stored in time; "
                                      "submit again with the same request_id to get it", b->id);
        if (st) {
            rpcstatus_retry_after(st, PBTIME_NS_PER_SEC);
            rpcstatus_error_info(st, "STORE_SLOW");
            rpcstatus_error_metadata(st, "batch_id", b->id);
        }
        rpc_call_finish(&w->base, st, NULL);
        rpcstatus_free(st);
        return;
    }
    grpc_byte_buffer *bb;
    if (w->submit) {
        /* A synchronous answer carries the results recorded so far (all, once it ended). */
        bb = msg_submit_response(b, w->sync, a->cfg->max_sync_response_bytes);
    } else {
        grpc_slice snap = batch_snapshot(b);
        bb = msg_from_slice(snap);
        grpc_slice_unref(snap);
    }
    if (bb == NULL) {
        /* No RetryInfo: the batch exists and runs, a second submission would duplicate it. */
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_RESOURCE_EXHAUSTED,
                                      "out of memory building the answer for batch %s; see GetBatch", b->id);
        if (st) {
            rpcstatus_error_info(st, "OUT_OF_MEMORY");
            rpcstatus_error_metadata(st, "batch_id", b->id);
        }
        rpc_call_finish(&w->base, st, NULL);
        rpcstatus_free(st);
        return;
    }
    rpc_call_finish(&w->base, NULL, bb);
}

static void on_changed(batch_observer *o, batch *b)
{
    wait_call *w = container_of(o, wait_call, obs);
    if (w->state == WAIT_STORED && b->state != BATCH__V1__BATCH_STATE__BATCH_STATE_PENDING)
        wait_reply(w);
}

static void on_ended(batch_observer *o, batch *b) { wait_reply(container_of(o, wait_call, obs)); }

static void on_freed(batch_observer *o, batch *b)
{
    wait_call *w = container_of(o, wait_call, obs);
    wait_detach(w);
    rpc_call_fail(&w->base, GRPC_STATUS_ABORTED, "BATCH_REMOVED", "batch %s was removed", b->id);
}

static void on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    /* An accepted batch never turns into DEADLINE_EXCEEDED: answer with it as it stands. */
    wait_reply(container_of(t, wait_call, deadline));
}

/* Time to answer before the caller's deadline: a tenth of what is left, within 20ms-1s. */
static double answer_margin_s(int64_t left_ns)
{
    double m = (double)left_ns / 1e9 / 10;
    return m < 0.02 ? 0.02 : m > 1.0 ? 1.0 : m;
}

/* Answers now if b is already where the call wants it, else waits. */
static void wait_for(wait_call *w, batch *b, wait_state want)
{
    app *a = rpc_call_arg(&w->base);
    w->b = b;
    if (batch_state_terminal(b->state) ||
        (want == WAIT_STORED && b->state != BATCH__V1__BATCH_STATE__BATCH_STATE_PENDING)) {
        w->state = want;
        list_push_back(&a->waiters, &w->link);
        wait_reply(w);
        return;
    }
    w->state = want;
    w->obs.changed = on_changed;
    w->obs.ended = on_ended;
    w->obs.freed = on_freed;
    batch_observe(b, &w->obs);
    list_push_back(&a->waiters, &w->link);
    if (w->base.deadline_mono_ns != INT64_MAX) {
        int64_t left = w->base.deadline_mono_ns - pbtime_mono_ns();
        double after = (double)left / 1e9 - answer_margin_s(left);
        ev_timer_set(&w->deadline, after > 0 ? after : 0, 0.);
        ev_timer_start(a->loop, &w->deadline);
    }
}

static void wait_init(wait_call *w, int submit)
{
    w->state = WAIT_IDLE;
    w->submit = submit;
    list_init(&w->link);
    list_init(&w->obs.link);
    ev_timer_init(&w->deadline, on_deadline, 0., 0.);
}

static void wait_cancelled(rpc_call *c) { wait_detach((wait_call *)c); }

void rpc_batch_release_waiters(app *a)
{
    while (!list_empty(&a->waiters))
        wait_reply(container_of(a->waiters.next, wait_call, link));
}

/* ---- SubmitBatch ----------------------------------------------------------------- */

static void fail_too_many(rpc_call *c, size_t n, uint32_t max)
{
    rpcstatus *st = rpcstatus_new(GRPC_STATUS_RESOURCE_EXHAUSTED,
                                  "batch of %zu operations exceeds the limit of %u", n, max);
    char limit[16];
    snprintf(limit, sizeof limit, "%u", max);
    if (st) {
        rpcstatus_quota_violation(st, "operations", "at most %u operations per batch (batchd --max-items)",
                                  max);
        rpcstatus_error_info(st, "TOO_MANY_ITEMS");
        rpcstatus_error_metadata(st, "limit", limit);
    }
    rpc_call_finish(c, st, NULL);
    rpcstatus_free(st);
}

static void fail_store_down(rpc_call *c)
{
    rpcstatus *st = rpcstatus_new(GRPC_STATUS_UNAVAILABLE,
                                  "batchd cannot write to its store; no batch is accepted until it can");
    if (st) {
        rpcstatus_retry_after(st, 5 * PBTIME_NS_PER_SEC);
        rpcstatus_error_info(st, "STORE_UNAVAILABLE");
    }
    rpc_call_finish(c, st, NULL);
    rpcstatus_free(st);
}

static void reply_validated(rpc_call *c, const config *cfg, const Batch__V1__SubmitBatchRequest *r)
{
    Batch__V1__Batch bm = BATCH__V1__BATCH__INIT;
    Batch__V1__Counts counts = BATCH__V1__COUNTS__INIT;
    Batch__V1__SubmitBatchResponse resp = BATCH__V1__SUBMIT_BATCH_RESPONSE__INIT;
    counts.total = counts.pending = (uint32_t)r->n_operations;
    bm.counts = &counts;
    bm.options = validate_effective_options(cfg, r->options);
    bm.request_id = r->request_id;
    resp.batch = &bm;
    rpc_call_finish(c, NULL, pbgrpc_pack(&resp.base));
    if (bm.options)
        batch__v1__batch_options__free_unpacked(bm.options, NULL);
}

/* SHA-256 of the request exactly as sent: a retry of the same request has the same bytes. */
static int fingerprint(grpc_byte_buffer *req, uint8_t out[32])
{
    memset(out, 0, 32);
    grpc_byte_buffer_reader reader;
    if (req == NULL || !grpc_byte_buffer_reader_init(&reader, req))
        return req == NULL ? 0 : -1;
    grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
    unsigned len = 0;
    int ok = EVP_Digest(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), out, &len, EVP_sha256(), NULL);
    grpc_slice_unref(s);
    grpc_byte_buffer_reader_destroy(&reader);
    return ok && len == 32 ? 0 : -1;
}

/* The packed ItemResult of a reused success: the earlier answer under this item's id,
 * index and sequence, marked reused. An empty slice if it cannot be built. */
static grpc_slice reuse_result(grpc_slice earlier, const char *id, uint32_t index, uint64_t seq)
{
    Batch__V1__ItemResult *r = batch__v1__item_result__unpack(NULL, GRPC_SLICE_LENGTH(earlier),
                                                              GRPC_SLICE_START_PTR(earlier));
    if (r == NULL)
        return grpc_empty_slice();
    char *old_id = r->id;
    r->id = (char *)id;
    r->index = index;
    r->sequence = seq;
    r->reused = 1;
    r->attempts = 0;
    size_t len = protobuf_c_message_get_packed_size(&r->base);
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(&r->base, GRPC_SLICE_START_PTR(s));
    r->id = old_id;
    batch__v1__item_result__free_unpacked(r, NULL);
    return s;
}

/* Item index ends now with the earlier success `earlier` (a packed ItemResult). */
static void reuse(batch *b, uint32_t index, grpc_slice earlier)
{
    if (b->items[index].outcome)
        return;
    Batch__V1__Operation *op = batch_item_op(b, index);
    char idbuf[129];
    grpc_slice s = op ? reuse_result(earlier, batch_item_id(op, index, idbuf), index, b->next_seq + 1)
                      : grpc_empty_slice();
    if (op)
        batch__v1__operation__free_unpacked(op, NULL);
    if (GRPC_SLICE_LENGTH(s) == 0)
        return; /* cannot be reused: the item runs */
    b->items[index].reused = 1;
    batch_item_finish(b, index, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, s);
}

static void on_stored(void *arg, store_err err);

static void prep_store(submit_prep *p)
{
    store_put_batch(p->a->store, p->b, on_stored, p);
}

static void on_key_read(void *arg, store_err err, store_result *v, size_t n)
{
    key_read *kr = arg;
    submit_prep *p = kr->p;
    if (err == STORE_OK && n == 1 && v[0].index == kr->source &&
        v[0].state == BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED)
        reuse(p->b, kr->index, v[0].result);
    for (size_t i = 0; i < n; i++)
        grpc_slice_unref(v[i].result);
    free(kr);
    if (--p->reads == 0)
        prep_store(p);
}

/* Items whose key already succeeded end with that result: at once when it is in memory,
 * else after reading it from the store. The batch is stored when all of this is done. */
static void reuse_keys(submit_prep *p, const Batch__V1__SubmitBatchRequest *r)
{
    app *a = p->a;
    batch *b = p->b;
    p->reads = 1; /* held until every read is issued */
    for (size_t i = 0; i < r->n_operations; i++) {
        const char *key = r->operations[i]->idempotency_key;
        char id[BATCH_ID_LEN + 1];
        uint32_t source;
        if (key[0] == '\0' || app_key_lookup(a, key, id, &source) < 0)
            continue;
        batch *earlier = batch_find(&a->reg, id);
        if (earlier && earlier->items) {
            if (source < earlier->total &&
                earlier->items[source].state == BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED)
                reuse(b, (uint32_t)i, earlier->items[source].result);
            continue;
        }
        key_read *kr = malloc(sizeof *kr);
        if (kr == NULL)
            continue; /* the item runs: an upstream that honours its key deduplicates it */
        *kr = (key_read){p, (uint32_t)i, source};
        p->reads++;
        store_read_results(a->store, id, source, 0, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 1, on_key_read, kr);
    }
    if (--p->reads == 0)
        prep_store(p);
}

/* Builds the batch (not yet registered); NULL on ENOMEM. */
static batch *build_batch(app *a, const Batch__V1__SubmitBatchRequest *r, const uint8_t *target_of,
                          const uint8_t fp[32])
{
    batch *b = batch_new(&a->reg, (uint32_t)r->n_operations);
    if (b == NULL)
        return NULL;
    b->options = validate_effective_options(a->cfg, r->options);
    if (b->options == NULL)
        goto fail;
    if (r->request_id[0] && (b->request_id = strdup(r->request_id)) == NULL)
        goto fail;
    memcpy(b->fingerprint, fp, 32);
    for (size_t i = 0; i < r->n_operations; i++) {
        item *it = &b->items[i];
        size_t len = 0;
        it->op = pbgrpc_pack_bytes(&r->operations[i]->base, &len);
        if (it->op == NULL)
            goto fail;
        it->op_len = (uint32_t)len;
        it->target = target_of[i];
        it->has_key = r->operations[i]->idempotency_key[0] != '\0';
    }
    return b;
fail:
    batch_free(b);
    return NULL;
}

/* The batch is durable: reused results count as recorded, and it runs. */
static void on_stored(void *arg, store_err err)
{
    submit_prep *p = arg;
    batch *b = p->b;
    if (err == STORE_OK) {
        while (b->last_sequence < b->next_seq)
            batch_item_record_next(b);
        exec_run(p->a->exec, b);
    }
    batch_unref(b);
    free(p);
}

static int attach_to_earlier(wait_call *w, app *a, const Batch__V1__SubmitBatchRequest *r, const uint8_t fp[32],
                             int sync)
{
    batch *prev = app_find_request(a, r->request_id);
    if (prev == NULL)
        return 0;
    if (memcmp(prev->fingerprint, fp, 32) != 0) {
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_ALREADY_EXISTS,
                                      "request_id %s was used for another request (batch %s)", r->request_id, prev->id);
        if (st) {
            rpcstatus_error_info(st, "REQUEST_ID_REUSED");
            rpcstatus_error_metadata(st, "batch_id", prev->id);
            rpcstatus_error_metadata(st, "request_id", r->request_id);
        }
        rpc_call_finish(&w->base, st, NULL);
        rpcstatus_free(st);
        return 1;
    }
    log_debug("request_id %s: answering with batch %s", r->request_id, prev->id);
    w->sync = sync;
    wait_for(w, prev, sync ? WAIT_ENDED : WAIT_STORED);
    return 1;
}

static void submit_start(rpc_call *c, grpc_byte_buffer *req)
{
    wait_call *w = (wait_call *)c;
    app *a = rpc_call_arg(c);
    const config *cfg = a->cfg;
    wait_init(w, 1);
    if (a->state != APP_SERVING) {
        app_fail_draining(c);
        return;
    }
    Batch__V1__SubmitBatchRequest *r =
        (Batch__V1__SubmitBatchRequest *)rpc_unpack_request(c, &batch__v1__submit_batch_request__descriptor, req);
    if (r == NULL)
        return;
    uint8_t *target_of = NULL, fp[32];
    rpcstatus *st = NULL;
    if (r->n_operations > cfg->max_items) {
        fail_too_many(c, r->n_operations, cfg->max_items);
        goto done;
    }
    target_of = malloc(r->n_operations ? r->n_operations : 1);
    st = rpcstatus_new(GRPC_STATUS_INVALID_ARGUMENT, "invalid batch");
    if (target_of == NULL || st == NULL || fingerprint(req, fp) < 0) {
        app_fail_no_memory(c, "validating the batch");
        goto done;
    }
    size_t violations = validate_request(cfg, r, st, target_of);
    if (violations) {
        rpcstatus_set_message(st, "invalid batch: %zu violation%s, nothing was run (see BadRequest details)",
                              violations, violations == 1 ? "" : "s");
        rpcstatus_error_info(st, "INVALID_BATCH");
        rpc_call_finish(c, st, NULL);
        goto done;
    }
    if (r->validate_only) {
        reply_validated(c, cfg, r);
        goto done;
    }
    Batch__V1__Mode mode = r->options ? r->options->mode : BATCH__V1__MODE__MODE_UNSPECIFIED;
    int sync = mode == BATCH__V1__MODE__MODE_SYNC ||
               (mode == BATCH__V1__MODE__MODE_UNSPECIFIED && r->n_operations <= cfg->sync_threshold);
    if (r->request_id[0] && attach_to_earlier(w, a, r, fp, sync))
        goto done;
    if (!store_healthy(a->store)) {
        fail_store_down(c);
        goto done;
    }
    batch *b = build_batch(a, r, target_of, fp);
    submit_prep *p = b ? malloc(sizeof *p) : NULL;
    if (p == NULL) {
        batch_free(b);
        app_fail_no_memory(c, "creating the batch");
        goto done;
    }
    app_register_batch(a, b);
    log_debug("batch %s accepted: %u items", b->id, b->total);
    *p = (submit_prep){a, b, 0};
    b->refs++; /* until on_stored */
    w->sync = sync;
    wait_for(w, b, sync ? WAIT_ENDED : WAIT_STORED);
    reuse_keys(p, r); /* then the batch is stored */
done:
    rpcstatus_free(st);
    free(target_of);
    batch__v1__submit_batch_request__free_unpacked(r, NULL);
}

/* ---- CancelBatch ------------------------------------------------------------------ */

static void cancel_start(rpc_call *c, grpc_byte_buffer *req)
{
    wait_call *w = (wait_call *)c;
    app *a = rpc_call_arg(c);
    wait_init(w, 0);
    Batch__V1__CancelBatchRequest *r =
        (Batch__V1__CancelBatchRequest *)rpc_unpack_request(c, &batch__v1__cancel_batch_request__descriptor, req);
    if (r == NULL)
        return;
    batch *b = rpc_find_batch(c, r->batch_id);
    if (b) {
        if (!batch_state_terminal(b->state) && !b->end_state) {
            log_info("batch %s cancelled by a client", b->id);
            exec_cancel(a->exec, b, BATCH__V1__BATCH_STATE__BATCH_STATE_CANCELLED, GRPC_STATUS_CANCELLED,
                        "cancelled by CancelBatch");
        }
        /* The answer shows the batch ended, once the cancelled results are recorded. */
        wait_for(w, b, WAIT_ENDED);
    }
    batch__v1__cancel_batch_request__free_unpacked(r, NULL);
}

void rpc_submit_register(app *a)
{
    a->methods[APP_SUBMIT_BATCH] = (rpc_method){
        .path = "/batch.v1.BatchService/SubmitBatch",
        .call_size = sizeof(wait_call),
        .start = submit_start,
        .cancelled = wait_cancelled,
    };
    a->methods[APP_CANCEL_BATCH] = (rpc_method){
        .path = "/batch.v1.BatchService/CancelBatch",
        .call_size = sizeof(wait_call),
        .start = cancel_start,
        .cancelled = wait_cancelled,
    };
}
