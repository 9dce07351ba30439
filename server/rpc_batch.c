/* GetBatch and ListBatches, and what every handler shares: request decoding, batch lookup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "msg.h"
#include "pbgrpc.h"
#include "pbtime.h"
#include "rpcs.h"

#define LIST_DEFAULT_PAGE 50
#define LIST_MAX_PAGE 1000

/* ---- GetBatch ------------------------------------------------------------------- */

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
        app_fail_no_memory(c, "listing batches");
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
    app *a = rpc_call_arg(c);
    size_t len = req ? grpc_byte_buffer_length(req) : 0;
    if (len > a->cfg->max_request_bytes) {
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_RESOURCE_EXHAUSTED, "request of %zu bytes is larger than the "
                                      "limit of %zu", len, a->cfg->max_request_bytes);
        char limit[32];
        snprintf(limit, sizeof limit, "%zu", a->cfg->max_request_bytes);
        if (st) {
            rpcstatus_quota_violation(st, "request", "at most %zu bytes (follows from batchd --max-items and "
                                      "--max-body-bytes)", a->cfg->max_request_bytes);
            rpcstatus_error_info(st, "REQUEST_TOO_LARGE");
            rpcstatus_error_metadata(st, "limit", limit);
        }
        rpc_call_finish(c, st, NULL);
        rpcstatus_free(st);
        return NULL;
    }
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
            rpcstatus_error_info(st, "BATCH_ID_REQUIRED");
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
    a->methods[APP_GET_BATCH] = (rpc_method){
        .path = "/batch.v1.BatchService/GetBatch", .call_size = sizeof(rpc_call), .start = get_start};
    a->methods[APP_LIST_BATCHES] = (rpc_method){
        .path = "/batch.v1.BatchService/ListBatches", .call_size = sizeof(rpc_call), .start = list_start};
}
