/* Idempotent submission (request_id) and item idempotency keys, end to end. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

static upstream_stats stats(harness *h)
{
    upstream_stats s;
    upstream_get_stats(h->up, &s);
    return s;
}

Test(idempotency, the_same_request_id_and_request_returns_the_original_batch)
{
    harness *h = h_start(NULL);
    const char *json = "{\"operations\":[{\"id\":\"p1\",\"method\":\"POST\",\"path\":\"/pay\"}],\"requestId\":\"order-42\"}";
    Batch__V1__SubmitBatchResponse *first = h_submit_json(h, json);
    Batch__V1__SubmitBatchResponse *again = h_submit_json(h, json);
    cr_assert_str_eq(again->batch->id, first->batch->id, "no second batch");
    cr_assert_str_eq(again->batch->request_id, "order-42");
    cr_assert_eq(again->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    cr_assert_eq(again->n_results, 1, "a synchronous replay answers with the results too");
    cr_assert_eq(stats(h).requests, 1, "the item ran once");
    batch__v1__submit_batch_response__free_unpacked(first, NULL);
    batch__v1__submit_batch_response__free_unpacked(again, NULL);
    h_stop(h);
}

Test(idempotency, a_replay_while_the_batch_runs_waits_for_the_same_batch)
{
    harness *h = h_start(NULL);
    const char *json = "{\"operations\":[{\"method\":\"POST\",\"path\":\"/slow?delay_ms=300\"}],"
                       "\"requestId\":\"r-slow\",\"options\":{\"mode\":\"MODE_ASYNC\"}}";
    Batch__V1__SubmitBatchResponse *first = h_submit_json(h, json);
    cr_assert_eq(first->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_RUNNING);
    Batch__V1__SubmitBatchResponse *again = h_submit_json(h, json);
    cr_assert_str_eq(again->batch->id, first->batch->id);
    Batch__V1__Batch *b = h_wait_end(h, first->batch->id, 10);
    cr_assert_eq(stats(h).requests, 1);
    batch__v1__batch__free_unpacked(b, NULL);
    batch__v1__submit_batch_response__free_unpacked(first, NULL);
    batch__v1__submit_batch_response__free_unpacked(again, NULL);
    h_stop(h);
}

Test(idempotency, a_request_id_reused_for_other_content_is_already_exists)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *first = h_submit_json(h,
        "{\"operations\":[{\"method\":\"POST\",\"path\":\"/pay?amount=10\"}],\"requestId\":\"order-7\"}");
    Batch__V1__SubmitBatchRequest *other = h_request(
        "{\"operations\":[{\"method\":\"POST\",\"path\":\"/pay?amount=99\"}],\"requestId\":\"order-7\"}");
    rpcclient_status st = {0};
    cr_assert_null(h_submit(h, other, &st));
    cr_assert_eq(st.code, GRPC_STATUS_ALREADY_EXISTS);
    Google__Rpc__ErrorInfo *ei = h_detail(&st, &google__rpc__error_info__descriptor);
    cr_assert_not_null(ei);
    cr_assert_str_eq(ei->reason, "REQUEST_ID_REUSED");
    int saw_batch = 0;
    for (size_t i = 0; i < ei->n_metadata; i++)
        saw_batch |= strcmp(ei->metadata[i]->key, "batch_id") == 0 &&
                     strcmp(ei->metadata[i]->value, first->batch->id) == 0;
    cr_assert(saw_batch, "the error names the original batch");
    cr_assert_eq(stats(h).requests, 1);
    google__rpc__error_info__free_unpacked(ei, NULL);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_request__free_unpacked(other, NULL);
    batch__v1__submit_batch_response__free_unpacked(first, NULL);
    h_stop(h);
}

Test(idempotency, request_ids_expire_after_the_ttl)
{
    const char *args[] = {"--idempotency-ttl", "200ms", NULL};
    harness *h = h_start(args);
    const char *json = "{\"operations\":[{\"method\":\"POST\",\"path\":\"/pay\"}],\"requestId\":\"short\"}";
    Batch__V1__SubmitBatchResponse *first = h_submit_json(h, json);
    h_sleep_ms(300);
    Batch__V1__SubmitBatchResponse *later = h_submit_json(h, json);
    cr_assert_str_neq(later->batch->id, first->batch->id, "after the TTL the id names a new batch");
    cr_assert_eq(stats(h).requests, 2);
    batch__v1__submit_batch_response__free_unpacked(first, NULL);
    batch__v1__submit_batch_response__free_unpacked(later, NULL);
    h_stop(h);
}

Test(idempotency, an_item_key_that_already_succeeded_is_not_sent_again)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *first = h_submit_json(h,
        "{\"operations\":[{\"id\":\"a\",\"method\":\"POST\",\"path\":\"/users\",\"idempotencyKey\":\"user-ada\"}]}");
    cr_assert_eq(first->results[0]->state, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED);
    cr_assert_not(first->results[0]->reused);
    Batch__V1__SubmitBatchResponse *second = h_submit_json(h,
        "{\"operations\":[{\"id\":\"x\",\"method\":\"POST\",\"path\":\"/users\",\"idempotencyKey\":\"user-ada\"},"
        "{\"id\":\"y\",\"method\":\"POST\",\"path\":\"/users\",\"idempotencyKey\":\"user-bob\"}]}");
    const Batch__V1__ItemResult *x = second->results[0], *y = second->results[1];
    cr_assert_eq(x->state, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED);
    cr_assert(x->reused, "marked as reused");
    cr_assert_str_eq(x->id, "x", "under the new item's id");
    cr_assert_eq(x->index, 0);
    cr_assert_eq(x->attempts, 0, "no attempt was made");
    cr_assert_eq(x->http_status, first->results[0]->http_status);
    cr_assert_eq(x->body.len, first->results[0]->body.len);
    cr_assert_not(y->reused);
    cr_assert_eq(upstream_key_count(h->up, "user-ada"), 1, "sent upstream once");
    cr_assert_eq(upstream_key_count(h->up, "user-bob"), 1);
    cr_assert_eq(second->batch->counts->succeeded, 2);
    batch__v1__submit_batch_response__free_unpacked(first, NULL);
    batch__v1__submit_batch_response__free_unpacked(second, NULL);
    h_stop(h);
}

Test(idempotency, a_failed_item_key_is_tried_again)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *first = h_submit_json(h,
        "{\"operations\":[{\"method\":\"POST\",\"path\":\"/k?status=500\",\"idempotencyKey\":\"k-1\"}]}");
    cr_assert_eq(first->results[0]->state, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED);
    Batch__V1__SubmitBatchResponse *second = h_submit_json(h,
        "{\"operations\":[{\"method\":\"POST\",\"path\":\"/k\",\"idempotencyKey\":\"k-1\"}]}");
    cr_assert_eq(second->results[0]->state, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED);
    cr_assert_not(second->results[0]->reused, "only successes are reused");
    cr_assert_eq(upstream_key_count(h->up, "k-1"), 2);
    batch__v1__submit_batch_response__free_unpacked(first, NULL);
    batch__v1__submit_batch_response__free_unpacked(second, NULL);
    h_stop(h);
}

Test(idempotency, one_key_twice_in_a_batch_is_a_violation)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchRequest *req = h_request(
        "{\"operations\":[{\"method\":\"POST\",\"path\":\"/a\",\"idempotencyKey\":\"same\"},"
        "{\"method\":\"POST\",\"path\":\"/b\",\"idempotencyKey\":\"same\"}]}");
    rpcclient_status st = {0};
    cr_assert_null(h_submit(h, req, &st));
    cr_assert_eq(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    Google__Rpc__BadRequest *br = h_detail(&st, &google__rpc__bad_request__descriptor);
    cr_assert_not_null(br);
    cr_assert_eq(br->n_field_violations, 1);
    cr_assert_str_eq(br->field_violations[0]->field, "operations[1].idempotency_key");
    google__rpc__bad_request__free_unpacked(br, NULL);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    h_stop(h);
}
