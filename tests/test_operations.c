/* ListOperations: a batch's operations as submitted, with each item's state, from memory
 * and (after a restart) from the store. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

typedef struct records {
    Batch__V1__OperationRecord **v;
    size_t n;
    grpc_status_code code;
} records;

static records list_ops(harness *h, const char *id, int state)
{
    Batch__V1__ListOperationsRequest req = BATCH__V1__LIST_OPERATIONS_REQUEST__INIT;
    req.batch_id = (char *)id;
    req.state = state;
    rpcclient_stream *s = rpcclient_stream_open(h->client, "/batch.v1.BatchService/ListOperations", &req.base, 30);
    records r = {calloc(1024, sizeof(Batch__V1__OperationRecord *)), 0, 0};
    ProtobufCMessage *m;
    while (rpcclient_stream_next(s, &batch__v1__operation_record__descriptor, &m, 0) == 1) {
        cr_assert_lt(r.n, 1024);
        r.v[r.n++] = (Batch__V1__OperationRecord *)m;
    }
    r.code = rpcclient_stream_finish(s, NULL);
    return r;
}

static void records_free(records *r)
{
    for (size_t i = 0; i < r->n; i++)
        batch__v1__operation_record__free_unpacked(r->v[i], NULL);
    free(r->v);
}

static const char *BATCH =
    "{\"operations\":["
    "{\"id\":\"a\",\"method\":\"POST\",\"path\":\"/users\",\"json\":{\"name\":\"Ada\"},\"headers\":{\"X-T\":\"1\"},"
    "\"idempotencyKey\":\"k-a\"},"
    "{\"id\":\"b\",\"method\":\"GET\",\"path\":\"/x?status=500\"},"
    "{\"id\":\"c\",\"method\":\"PUT\",\"path\":\"/c\",\"text\":\"hello\",\"timeout\":\"2s\"}]}";

static void check_all(const records *r)
{
    cr_assert_eq(r->code, GRPC_STATUS_OK);
    cr_assert_eq(r->n, 3);
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(r->v[i]->index, i, "input order");
    const Batch__V1__Operation *a = r->v[0]->operation;
    cr_assert_str_eq(a->id, "a");
    cr_assert_str_eq(a->method, "POST");
    cr_assert_str_eq(a->path, "/users");
    cr_assert_eq(a->body_case, BATCH__V1__OPERATION__BODY_JSON);
    cr_assert_eq(a->json->struct_value->n_fields, 1);
    cr_assert_str_eq(a->idempotency_key, "k-a");
    cr_assert_eq(a->n_headers, 1);
    cr_assert_eq(r->v[0]->state, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED);
    cr_assert_eq(r->v[1]->state, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED);
    cr_assert_str_eq(r->v[2]->operation->text, "hello");
    cr_assert_eq(r->v[2]->operation->timeout->seconds, 2);
}

Test(operations, every_operation_comes_back_as_submitted_with_its_state)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *b = h_submit_json(h, BATCH);
    records r = list_ops(h, b->batch->id, 0);
    check_all(&r);
    records_free(&r);
    r = list_ops(h, b->batch->id, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED);
    cr_assert_eq(r.n, 1, "the state filter keeps what a retry needs");
    cr_assert_str_eq(r.v[0]->operation->id, "b");
    cr_assert_eq(r.v[0]->index, 1);
    records_free(&r);
    batch__v1__submit_batch_response__free_unpacked(b, NULL);
    h_stop(h);
}

Test(operations, a_running_batch_shows_its_items_pending_or_running)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *b = h_submit_json(h,
        "{\"operations\":[{\"method\":\"GET\",\"path\":\"/s?delay_ms=2000\"},{\"method\":\"GET\",\"path\":\"/t?delay_ms=2000\"}],"
        "\"options\":{\"mode\":\"MODE_ASYNC\",\"maxConcurrency\":1}}");
    h_sleep_ms(200);
    records r = list_ops(h, b->batch->id, 0);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.v[0]->state, BATCH__V1__ITEM_STATE__ITEM_STATE_RUNNING);
    cr_assert_eq(r.v[1]->state, BATCH__V1__ITEM_STATE__ITEM_STATE_PENDING);
    records_free(&r);
    batch__v1__submit_batch_response__free_unpacked(b, NULL);
    h_stop(h);
}

Test(operations, an_ended_batch_lists_its_operations_from_the_store_after_a_restart)
{
    char *dir = h_tempdir();
    const char *args[] = {"--data-dir", dir, NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *b = h_submit_json(h, BATCH);
    h_restart(h); /* the batch comes back as a summary: its operations are in the store */
    records r = list_ops(h, b->batch->id, 0);
    check_all(&r);
    records_free(&r);
    r = list_ops(h, b->batch->id, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED);
    cr_assert_eq(r.n, 1);
    cr_assert_str_eq(r.v[0]->operation->id, "b");
    records_free(&r);
    batch__v1__submit_batch_response__free_unpacked(b, NULL);
    h_stop(h);
    h_rmdir(dir);
}

Test(operations, an_unknown_batch_is_not_found)
{
    harness *h = h_start(NULL);
    records r = list_ops(h, "01ZZZZZZZZZZZZZZZZZZZZZZZZ", 0);
    cr_assert_eq(r.code, GRPC_STATUS_NOT_FOUND);
    cr_assert_eq(r.n, 0);
    records_free(&r);
    h_stop(h);
}
