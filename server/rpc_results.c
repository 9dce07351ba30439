/* ListResults and ListOperations: a batch's recorded results, or its operations as
 * submitted, in input order, from memory while the batch's items are there, else from the
 * store a page at a time (a 100,000-item batch is never loaded whole). One message in
 * flight: a slow reader costs one cursor. */
#include <stdlib.h>

#include "msg.h"
#include "pager.h"
#include "rpcs.h"

typedef struct results_call {
    rpc_call base;
    int operations;       /* ListOperations: OperationRecords rather than ItemResults */
    batch *b;
    batch_observer obs;   /* only to learn that the batch goes away */
    uint32_t next;        /* memory: next index to look at */
    int state_filter;     /* 0: all */
    int paging;           /* reading from the store */
    pager pg;
} results_call;

static void results_done(results_call *rc)
{
    batch_unobserve(&rc->obs);
    rc->b = NULL;
}

static void results_pump(results_call *rc)
{
    if (rc->paging) {
        store_result r;
        int got = pager_next(&rc->pg, &r);
        if (got == 0)
            return; /* a page is being read: results_page_ready follows */
        if (got == 1) {
            grpc_byte_buffer *bb = rc->operations ? msg_operation_record(r.index, r.state, GRPC_SLICE_START_PTR(r.result),
                                                                         GRPC_SLICE_LENGTH(r.result))
                                                  : msg_from_slice(r.result);
            grpc_slice_unref(r.result);
            if (bb == NULL) {
                results_done(rc);
                app_fail_no_memory(&rc->base, "sending a record");
                return;
            }
            rpc_call_send(&rc->base, bb);
            return;
        }
        results_done(rc);
        if (rc->pg.err)
            rpc_call_fail(&rc->base, GRPC_STATUS_INTERNAL, "STORE_READ_FAILED",
                          "reading results from the store failed: %s", store_strerror(rc->pg.err));
        else
            rpc_call_finish(&rc->base, NULL, NULL);
        return;
    }
    batch *b = rc->b;
    while (rc->next < b->total) {
        uint32_t idx = rc->next++;
        const item *it = &b->items[idx];
        if (rc->state_filter && it->state != rc->state_filter)
            continue;
        if (rc->operations) {
            grpc_byte_buffer *bb = msg_operation_record(idx, it->state, it->op, it->op_len);
            if (bb == NULL) {
                results_done(rc);
                app_fail_no_memory(&rc->base, "sending a record");
                return;
            }
            rpc_call_send(&rc->base, bb);
            return;
        }
        if (!batch_item_state_ended(it->state))
            continue; /* not recorded (yet) */
        rpc_call_send(&rc->base, msg_from_slice(it->result));
        return;
    }
    results_done(rc);
    rpc_call_finish(&rc->base, NULL, NULL);
}

static void results_page_ready(pager *p)
{
    results_call *rc = (results_call *)((char *)p - offsetof(results_call, pg));
    if (!rpc_call_sending(&rc->base))
        results_pump(rc);
}

static void results_sent(rpc_call *c, int ok)
{
    results_call *rc = (results_call *)c;
    if (ok && rc->b)
        results_pump(rc);
}

static void results_freed(batch_observer *o, batch *b)
{
    results_call *rc = container_of(o, results_call, obs);
    rc->b = NULL;
    rpc_call_fail(&rc->base, GRPC_STATUS_ABORTED, "BATCH_REMOVED", "batch %s was removed", b->id);
}

static void results_cancelled(rpc_call *c)
{
    results_done((results_call *)c);
}

static void results_destroy(rpc_call *c)
{
    results_call *rc = (results_call *)c;
    if (rc->paging)
        pager_clear(&rc->pg);
}

/* Both requests are {string batch_id = 1; ItemState state = 2;}. */
static void start(rpc_call *c, const char *batch_id, int state, int operations)
{
    results_call *rc = (results_call *)c;
    app *a = rpc_call_arg(c);
    list_init(&rc->obs.link);
    rc->operations = operations;
    batch *b = rpc_find_batch(c, batch_id);
    if (b == NULL)
        return;
    rc->b = b;
    rc->state_filter = state;
    rc->obs.freed = results_freed;
    batch_observe(b, &rc->obs);
    if (b->items == NULL) {
        rc->paging = 1;
        pager_init(&rc->pg, a->store, c, b->id, operations ? PAGER_OPS : PAGER_RESULTS, state, 0,
                   results_page_ready);
    }
    results_pump(rc);
}

static void results_start(rpc_call *c, grpc_byte_buffer *req)
{
    Batch__V1__ListResultsRequest *r =
        (Batch__V1__ListResultsRequest *)rpc_unpack_request(c, &batch__v1__list_results_request__descriptor, req);
    if (r) {
        start(c, r->batch_id, r->state, 0);
        batch__v1__list_results_request__free_unpacked(r, NULL);
    }
}

static void operations_start(rpc_call *c, grpc_byte_buffer *req)
{
    Batch__V1__ListOperationsRequest *r = (Batch__V1__ListOperationsRequest *)rpc_unpack_request(
        c, &batch__v1__list_operations_request__descriptor, req);
    if (r) {
        start(c, r->batch_id, r->state, 1);
        batch__v1__list_operations_request__free_unpacked(r, NULL);
    }
}

void rpc_results_register(app *a)
{
    a->methods[APP_LIST_RESULTS] = (rpc_method){
        .path = "/batch.v1.BatchService/ListResults",
        .call_size = sizeof(results_call),
        .start = results_start,
        .sent = results_sent,
        .cancelled = results_cancelled,
        .destroy = results_destroy,
    };
    a->methods[APP_LIST_OPERATIONS] = (rpc_method){
        .path = "/batch.v1.BatchService/ListOperations",
        .call_size = sizeof(results_call),
        .start = operations_start,
        .sent = results_sent,
        .cancelled = results_cancelled,
        .destroy = results_destroy,
    };
}
