/* SubmitBatch, GetBatch, ListBatches and CancelBatch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "msg.h"
#include "pbgrpc.h"
#include "pbtime.h"
#include "rpcs.h"
#include "validate.h"

#define LIST_DEFAULT_PAGE 50
#define LIST_MAX_PAGE 1000

/* ---- SubmitBatch ----------------------------------------------------------------- */

typedef enum submit_state {
    SUBMIT_IDLE,     /* answered, or never waited */
    SUBMIT_WAITING,  /* synchronous: waiting for the batch to end or the deadline */
} submit_state;

typedef struct submit_call {
    rpc_call base;   /* first: the rpc layer allocates and frees the whole struct */
    submit_state state;
    batch *b;
    batch_observer obs;
    ev_timer deadline;
    list_node link;  /* app->waiters while WAITING */
} submit_call;

static void submit_detach(submit_call *s)
{
    app *a = rpc_call_arg(&s->base);
    if (s->state != SUBMIT_WAITING)
        return;
    s->state = SUBMIT_IDLE;
    batch_unobserve(&s->obs);
    ev_timer_stop(a->loop, &s->deadline);
    list_remove(&s->link);
    s->b = NULL;
}

static void submit_reply(submit_call *s)
{
    app *a = rpc_call_arg(&s->base);
    batch *b = s->b;
    submit_detach(s);
    grpc_byte_buffer *bb = msg_submit_response(b, 1, a->cfg->max_sync_response_bytes);
    if (bb == NULL) {
        rpc_call_fail(&s->base, GRPC_STATUS_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY",
                      "out of memory building the answer; batch %s is running, see GetBatch", b->id);
        return;
    }
    rpc_call_finish(&s->base, NULL, bb);
}

static void on_batch_ended(batch_observer *o, batch *b)
{
    submit_reply(container_of(o, submit_call, obs));
}

static void on_batch_freed(batch_observer *o, batch *b)
{
    submit_call *s = container_of(o, submit_call, obs);
    submit_detach(s);
    rpc_call_fail(&s->base, GRPC_STATUS_ABORTED, "BATCH_REMOVED", "batch %s was removed", b->id);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    /* An accepted batch never turns into DEADLINE_EXCEEDED: answer with it as it stands. */
    submit_reply(container_of(w, submit_call, deadline));
}

/* Time to answer before the caller's deadline: a tenth of what is left, within 20ms-1s. */
static double answer_margin_s(int64_t left_ns)
{
    double m = (double)left_ns / 1e9 / 10;
    return m < 0.02 ? 0.02 : m > 1.0 ? 1.0 : m;
}

static void submit_wait(submit_call *s, batch *b)
{
    app *a = rpc_call_arg(&s->base);
    s->state = SUBMIT_WAITING;
    s->b = b;
    s->obs.ended = on_batch_ended;
    s->obs.freed = on_batch_freed;
    batch_observe(b, &s->obs);
    list_push_back(&a->waiters, &s->link);
    if (s->base.deadline_mono_ns != INT64_MAX) {
        int64_t left = s->base.deadline_mono_ns - pbtime_mono_ns();
        double after = (double)left / 1e9 - answer_margin_s(left);
        ev_timer_init(&s->deadline, on_deadline, after > 0 ? after : 0, 0.);
        ev_timer_start(a->loop, &s->deadline);
    }
}

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

/* Builds the batch (not yet registered); NULL on ENOMEM. */
static batch *build_batch(app *a, const Batch__V1__SubmitBatchRequest *r, const uint8_t *target_of)
{
    batch *b = batch_new(&a->reg, (uint32_t)r->n_operations);
    if (b == NULL)
        return NULL;
    b->options = validate_effective_options(a->cfg, r->options);
    if (b->options == NULL)
        goto fail;
    if (r->request_id[0] && (b->request_id = strdup(r->request_id)) == NULL)
        goto fail;
    for (size_t i = 0; i < r->n_operations; i++) {
        item *it = &b->items[i];
        size_t len = 0;
        it->op = pbgrpc_pack_bytes(&r->operations[i]->base, &len);
        if (it->op == NULL)
            goto fail;
        it->op_len = (uint32_t)len;
        it->target = target_of[i];
    }
    return b;
fail:
    batch_free(b);
    return NULL;
}

static void submit_start(rpc_call *c, grpc_byte_buffer *req)
{
    submit_call *s = (submit_call *)c;
    app *a = rpc_call_arg(c);
    const config *cfg = a->cfg;
    list_init(&s->link);
    list_init(&s->obs.link);
    ev_timer_init(&s->deadline, on_deadline, 0., 0.);
    if (a->state != APP_SERVING) {
        app_fail_draining(c);
        return;
    }
    Batch__V1__SubmitBatchRequest *r =
        (Batch__V1__SubmitBatchRequest *)rpc_unpack_request(c, &batch__v1__submit_batch_request__descriptor, req);
    if (r == NULL)
        return;
    uint8_t *target_of = NULL;
    rpcstatus *st = NULL;
    if (r->n_operations > cfg->max_items) {
        fail_too_many(c, r->n_operations, cfg->max_items);
        goto done;
    }
    target_of = malloc(r->n_operations ? r->n_operations : 1);
    st = rpcstatus_new(GRPC_STATUS_INVALID_ARGUMENT, "invalid batch");
    if (target_of == NULL || st == NULL) {
        rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "out of memory validating the batch");
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
    batch *b = build_batch(a, r, target_of);
    if (b == NULL) {
        rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "out of memory creating the batch");
        goto done;
    }
    batch_register(&a->reg, b);
    log_debug("batch %s accepted: %u items", b->id, b->total);
    exec_run(a->exec, b);

    Batch__V1__Mode mode = b->options->mode;
    int sync = mode == BATCH__V1__MODE__MODE_SYNC ||
               (mode == BATCH__V1__MODE__MODE_UNSPECIFIED && b->total <= cfg->sync_threshold);
    if (sync && !batch_state_terminal(b->state))
        submit_wait(s, b);
    else
        rpc_call_finish(c, NULL, msg_submit_response(b, sync, cfg->max_sync_response_bytes));
done:
    rpcstatus_free(st);
    free(target_of);
    batch__v1__submit_batch_request__free_unpacked(r, NULL);
}

static void submit_cancelled(rpc_call *c) { submit_detach((submit_call *)c); }

void rpc_batch_release_waiters(app *a)
{
    while (!list_empty(&a->waiters))
        submit_reply(container_of(a->waiters.next, submit_call, link));
}

/* ---- GetBatch / CancelBatch ------------------------------------------------------ */

static void reply_batch(rpc_call *c, batch *b)
{
    grpc_slice snap = batch_snapshot(b);
    rpc_call_finish(c, NULL, msg_from_slice(snap));
    grpc_slice_unref(snap);
}

static void get_start(rpc_call *c, grpc_byte_buffer *req)
{
    Batch__V1__GetBatchRequest *r =
        (Batch__V1__GetBatchRequest *)rpc_unpack_request(c, &batch__v1__get_batch_request__descriptor, req);
    if (r == NULL)
        return;
    batch *b = rpc_find_batch(c, r->batch_id);
    if (b)
        reply_batch(c, b);
    batch__v1__get_batch_request__free_unpacked(r, NULL);
}

static void cancel_start(rpc_call *c, grpc_byte_buffer *req)
{
    app *a = rpc_call_arg(c);
    Batch__V1__CancelBatchRequest *r =
        (Batch__V1__CancelBatchRequest *)rpc_unpack_request(c, &batch__v1__cancel_batch_request__descriptor, req);
    if (r == NULL)
        return;
    batch *b = rpc_find_batch(c, r->batch_id);
    if (b) {
        if (!batch_state_terminal(b->state)) {
            log_info("batch %s cancelled by a client", b->id);
            exec_cancel(a->exec, b, BATCH__V1__BATCH_STATE__BATCH_STATE_CANCELLED, GRPC_STATUS_CANCELLED,
                        "cancelled by CancelBatch");
        }
        reply_batch(c, b);
    }
    batch__v1__cancel_batch_request__free_unpacked(r, NULL);
}

/* ---- ListBatches ------------------------------------------------------------------ */

static int labels_match(const batch *b, const Batch__V1__ListBatchesRequest *r)
{
    for (size_t i = 0; i < r->n_labels; i++) {
        size_t k = 0;
        for (; k < b->options->n_labels; k++)
            if (strcmp(b->options->labels[k]->key, r->labels[i]->key) == 0 &&
                strcmp(b->options->labels[k]->value, r->labels[i]->value) == 0)
                break;
        if (k == b->options->n_labels)
            return 0;
    }
    return 1;
}

static int valid_token(const char *t)
{
    if (strlen(t) != BATCH_ID_LEN)
        return 0;
    for (; *t; t++)
        if (!strchr("0123456789ABCDEFGHJKMNPQRSTVWXYZ", *t))
            return 0;
    return 1;
}

static void list_start(rpc_call *c, grpc_byte_buffer *req)
{
    app *a = rpc_call_arg(c);
    Batch__V1__ListBatchesRequest *r =
        (Batch__V1__ListBatchesRequest *)rpc_unpack_request(c, &batch__v1__list_batches_request__descriptor, req);
    if (r == NULL)
        return;
    if (r->page_token[0] && !valid_token(r->page_token)) {
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_INVALID_ARGUMENT, "invalid page_token");
        if (st) {
            rpcstatus_field_violation(st, "page_token", "not a token returned by ListBatches");
            rpcstatus_error_info(st, "INVALID_PAGE_TOKEN");
        }
        rpc_call_finish(c, st, NULL);
        rpcstatus_free(st);
        batch__v1__list_batches_request__free_unpacked(r, NULL);
        return;
    }
    size_t page = r->page_size ? r->page_size : LIST_DEFAULT_PAGE;
    if (page > LIST_MAX_PAGE)
        page = LIST_MAX_PAGE;
    batch_pb *pbs = calloc(page, sizeof *pbs);
    Batch__V1__Batch **ptrs = calloc(page, sizeof *ptrs);
    Batch__V1__ListBatchesResponse resp = BATCH__V1__LIST_BATCHES_RESPONSE__INIT;
    char next[BATCH_ID_LEN + 1] = "";
    if (pbs == NULL || ptrs == NULL) {
        rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "out of memory listing batches");
        goto done;
    }
    /* Ids sort by creation time, so the token (the last id returned) marks the place even
     * if that batch has since been removed. */
    for (list_node *pos = a->reg.all.next; pos != &a->reg.all; pos = pos->next) {
        batch *b = container_of(pos, batch, all_link);
        if (r->page_token[0] && strcmp(b->id, r->page_token) >= 0)
            continue;
        if (r->state && b->state != r->state)
            continue;
        if (!labels_match(b, r))
            continue;
        if (resp.n_batches == page) {
            snprintf(next, sizeof next, "%s", ptrs[page - 1]->id);
            break;
        }
        batch_to_pb(b, &pbs[resp.n_batches]);
        ptrs[resp.n_batches] = &pbs[resp.n_batches].msg;
        resp.n_batches++;
    }
    resp.batches = ptrs;
    resp.next_page_token = next;
    rpc_call_finish(c, NULL, pbgrpc_pack(&resp.base));
done:
    free(pbs);
    free(ptrs);
    batch__v1__list_batches_request__free_unpacked(r, NULL);
}

/* ---- shared ----------------------------------------------------------------------- */

ProtobufCMessage *rpc_unpack_request(rpc_call *c, const ProtobufCMessageDescriptor *desc,
                                     grpc_byte_buffer *req)
{
    ProtobufCMessage *m = pbgrpc_unpack(desc, req);
    if (m == NULL)
        rpc_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "MALFORMED_REQUEST",
                      "the request is not a valid %s message (malformed, or nested deeper than %d levels)",
                      desc->name, PBGRPC_MAX_DEPTH);
    return m;
}

batch *rpc_find_batch(rpc_call *c, const char *id)
{
    app *a = rpc_call_arg(c);
    if (id[0] == '\0') {
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_INVALID_ARGUMENT, "batch_id is required");
        if (st) {
            rpcstatus_field_violation(st, "batch_id", "required");
            rpcstatus_error_info(st, "INVALID_ARGUMENT");
        }
        rpc_call_finish(c, st, NULL);
        rpcstatus_free(st);
        return NULL;
    }
    batch *b = batch_find(&a->reg, id);
    if (b == NULL)
        app_fail_not_found(c, id);
    return b;
}

void rpc_batch_register(app *a)
{
    a->methods[APP_SUBMIT_BATCH] = (rpc_method){
        .path = "/batch.v1.BatchService/SubmitBatch",
        .call_size = sizeof(submit_call),
        .start = submit_start,
        .cancelled = submit_cancelled,
    };
    a->methods[APP_GET_BATCH] = (rpc_method){
        .path = "/batch.v1.BatchService/GetBatch", .call_size = sizeof(rpc_call), .start = get_start};
    a->methods[APP_CANCEL_BATCH] = (rpc_method){
        .path = "/batch.v1.BatchService/CancelBatch", .call_size = sizeof(rpc_call), .start = cancel_start};
    a->methods[APP_LIST_BATCHES] = (rpc_method){
        .path = "/batch.v1.BatchService/ListBatches", .call_size = sizeof(rpc_call), .start = list_start};
}
