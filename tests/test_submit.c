/* SubmitBatch end to end: results and their codes, validation, limits, sync vs async,
 * unknown ids. A real batchd on an ephemeral port, a real loopback upstream. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "pbgrpc.h"

static const Batch__V1__ItemResult *find(const Batch__V1__SubmitBatchResponse *r, const char *id)
{
    for (size_t i = 0; i < r->n_results; i++)
        if (strcmp(r->results[i]->id, id) == 0)
            return r->results[i];
    cr_assert_fail("no result for %s", id);
    return NULL;
}

Test(submit, mixed_statuses_get_their_states_and_codes)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":["
        "{\"id\":\"ok\",\"method\":\"GET\",\"path\":\"/users/1\"},"
        "{\"id\":\"created\",\"method\":\"POST\",\"path\":\"/users?status=201\",\"json\":{\"name\":\"Ada\"}},"
        "{\"id\":\"bad\",\"method\":\"GET\",\"path\":\"/x?status=400\"},"
        "{\"id\":\"unauth\",\"method\":\"GET\",\"path\":\"/x?status=401\"},"
        "{\"id\":\"forbidden\",\"method\":\"GET\",\"path\":\"/x?status=403\"},"
        "{\"id\":\"missing\",\"method\":\"DELETE\",\"path\":\"/x?status=404\"},"
        "{\"id\":\"conflict\",\"method\":\"PUT\",\"path\":\"/x?status=409\"},"
        "{\"id\":\"limited\",\"method\":\"GET\",\"path\":\"/x?status=429\"},"
        "{\"id\":\"unimpl\",\"method\":\"GET\",\"path\":\"/x?status=501\"},"
        "{\"id\":\"unavail\",\"method\":\"GET\",\"path\":\"/x?status=503\"},"
        "{\"id\":\"gw_timeout\",\"method\":\"GET\",\"path\":\"/x?status=504\"},"
        "{\"id\":\"boom\",\"method\":\"GET\",\"path\":\"/x?status=500\"},"
        "{\"id\":\"badgw\",\"method\":\"GET\",\"path\":\"/x?status=502\"}"
        "]}");
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_COMPLETED_WITH_FAILURES);
    cr_assert_eq(r->batch->counts->total, 13);
    cr_assert_eq(r->batch->counts->succeeded, 2);
    cr_assert_eq(r->batch->counts->failed, 11);
    cr_assert_eq(r->n_results, 13);
    struct { const char *id; int http; int code; } want[] = {
        {"ok", 200, 0}, {"created", 201, 0}, {"bad", 400, GRPC_STATUS_INVALID_ARGUMENT},
        {"unauth", 401, GRPC_STATUS_UNAUTHENTICATED}, {"forbidden", 403, GRPC_STATUS_PERMISSION_DENIED},
        {"missing", 404, GRPC_STATUS_NOT_FOUND}, {"conflict", 409, GRPC_STATUS_ABORTED},
        {"limited", 429, GRPC_STATUS_RESOURCE_EXHAUSTED}, {"unimpl", 501, GRPC_STATUS_UNIMPLEMENTED},
        {"unavail", 503, GRPC_STATUS_UNAVAILABLE}, {"gw_timeout", 504, GRPC_STATUS_DEADLINE_EXCEEDED},
        {"boom", 500, GRPC_STATUS_INTERNAL}, {"badgw", 502, GRPC_STATUS_INTERNAL},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const Batch__V1__ItemResult *it = find(r, want[i].id);
        cr_assert_eq(it->http_status, want[i].http, "%s: http %d", want[i].id, it->http_status);
        cr_assert_eq(it->attempts, 1);
        if (want[i].code == 0) {
            cr_assert_eq(it->state, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, "%s", want[i].id);
            cr_assert_null(it->error);
        } else {
            cr_assert_eq(it->state, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED, "%s", want[i].id);
            cr_assert_not_null(it->error);
            cr_assert_eq(it->error->code, want[i].code, "%s: code %d", want[i].id, it->error->code);
        }
    }
    /* Results come in input order, each with its index. */
    for (size_t i = 0; i < r->n_results; i++)
        cr_assert_eq(r->results[i]->index, i);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(submit, json_response_fills_json_and_body)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"id\":\"a\",\"method\":\"GET\",\"path\":\"/users/7\"},"
        "{\"id\":\"t\",\"method\":\"GET\",\"path\":\"/t?body=plain+text\"}]}");
    const Batch__V1__ItemResult *a = find(r, "a");
    cr_assert_gt(a->body.len, 0);
    cr_assert_not_null(a->json, "a JSON response fills ItemResult.json");
    cr_assert_eq(a->json->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE);
    int saw_path = 0;
    for (size_t i = 0; i < a->json->struct_value->n_fields; i++) {
        Google__Protobuf__Struct__FieldsEntry *f = a->json->struct_value->fields[i];
        if (strcmp(f->key, "path") == 0) {
            cr_assert_str_eq(f->value->string_value, "/users/7");
            saw_path = 1;
        }
    }
    cr_assert(saw_path);
    int saw_ct = 0;
    for (size_t i = 0; i < a->n_headers; i++)
        if (strcasecmp(a->headers[i]->key, "Content-Type") == 0)
            saw_ct = strstr(a->headers[i]->value, "json") != NULL;
    cr_assert(saw_ct, "response headers are kept");
    const Batch__V1__ItemResult *t = find(r, "t");
    cr_assert_null(t->json, "a text response has no json");
    cr_assert_eq(t->body.len, strlen("plain text"));
    cr_assert_eq(memcmp(t->body.data, "plain text", t->body.len), 0);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(submit, request_method_headers_and_json_body_reach_the_upstream)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"id\":\"e\",\"method\":\"patch\",\"path\":\"/echo?q=1\","
        "\"headers\":{\"X-Trace\":\"abc\",\"Empty\":\"\"},\"json\":{\"n\":42,\"ok\":true,\"l\":[1.5,null]},"
        "\"idempotency_key\":\"key-1\"}]}");
    const Batch__V1__ItemResult *e = find(r, "e");
    cr_assert_eq(e->state, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED);
    cr_assert_not_null(e->json);
    char *echo = strndup((const char *)e->body.data, e->body.len);
    cr_assert(strstr(echo, "\"method\":\"PATCH\""), "%s", echo);
    cr_assert(strstr(echo, "\"x-trace\":\"abc\""), "%s", echo);
    cr_assert(strstr(echo, "\"empty\":\"\""), "an empty header value is sent: %s", echo);
    cr_assert(strstr(echo, "\"idempotency-key\":\"key-1\""), "%s", echo);
    cr_assert(strstr(echo, "\"content-type\":\"application/json\""), "%s", echo);
    cr_assert(strstr(echo, "{\\\"n\\\":42,\\\"ok\\\":true,\\\"l\\\":[1.5,null]}"), "%s", echo);
    cr_assert(strstr(echo, "\"query\":\"q=1\""), "%s", echo);
    free(echo);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(submit, derived_idempotency_key_is_batch_and_item_id)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"id\":\"u1\",\"method\":\"POST\",\"path\":\"/echo\",\"text\":\"hi\"}]}");
    const Batch__V1__ItemResult *e = find(r, "u1");
    char want[128];
    snprintf(want, sizeof want, "\"idempotency-key\":\"%s/u1\"", r->batch->id);
    char *echo = strndup((const char *)e->body.data, e->body.len);
    cr_assert(strstr(echo, want), "want %s in %s", want, echo);
    cr_assert(strstr(echo, "\"content-type\":\"text/plain; charset=utf-8\""), "%s", echo);
    free(echo);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(submit, every_violation_is_reported_at_once_and_nothing_runs)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchRequest *req = h_request(
        "{\"operations\":["
        "{\"id\":\"fine\",\"method\":\"GET\",\"path\":\"/ok\"},"
        "{\"id\":\"a\",\"method\":\"FETCH\",\"path\":\"/ok\"},"
        "{\"id\":\"b\",\"method\":\"GET\",\"path\":\"http://evil.example/x\"},"
        "{\"id\":\"c\",\"method\":\"GET\",\"path\":\"/a b\"},"
        "{\"id\":\"d\",\"method\":\"GET\",\"path\":\"/ok\",\"target\":\"nope\"},"
        "{\"id\":\"a\",\"method\":\"GET\",\"path\":\"/ok\"},"
        "{\"id\":\"e\",\"method\":\"GET\",\"path\":\"/ok\",\"headers\":{\"Host\":\"evil\"}},"
        "{\"id\":\"f\",\"method\":\"GET\",\"path\":\"/ok\",\"headers\":{\"X-A\":\"1\\r\\nX-B: 2\"}},"
        "{\"id\":\"g\",\"method\":\"GET\",\"path\":\"/ok\",\"headers\":{\"Content-Length\":\"5\"}},"
        "{\"id\":\"h\",\"method\":\"GET\",\"path\":\"/ok\",\"timeout\":\"-1s\"},"
        "{\"id\":\"i\",\"method\":\"GET\",\"path\":\"/ok\",\"timeout\":\"100000s\"},"
        "{\"id\":\"j\",\"method\":\"GET\",\"path\":\"//evil.example/x\"},"
        "{\"id\":\"k\",\"method\":\"GET\",\"path\":\"/api/../admin\"},"
        "{\"id\":\"l\",\"method\":\"GET\",\"path\":\"/ok\",\"headers\":{\"Transfer-Encoding\":\"chunked\",\"Connection\":\"close\"}}"
        "],\"options\":{\"maxRate\":-1}}");
    rpcclient_status st = {0};
    Batch__V1__SubmitBatchResponse *r = h_submit(h, req, &st);
    cr_assert_null(r);
    cr_assert_eq(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    Google__Rpc__BadRequest *br = h_detail(&st, &google__rpc__bad_request__descriptor);
    cr_assert_not_null(br, "INVALID_ARGUMENT carries BadRequest");
    const char *want[] = {
        "operations[1].method", "operations[2].path", "operations[3].path", "operations[4].target",
        "operations[5].id", "operations[6].headers[\"Host\"]", "operations[7].headers[\"X-A\"]",
        "operations[8].headers[\"Content-Length\"]", "operations[9].timeout", "operations[10].timeout",
        "operations[11].path", "operations[12].path", "operations[13].headers[\"Transfer-Encoding\"]",
        "operations[13].headers[\"Connection\"]", "options.max_rate",
    };
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        int found = 0;
        for (size_t i = 0; i < br->n_field_violations; i++)
            found |= strcmp(br->field_violations[i]->field, want[w]) == 0 &&
                     br->field_violations[i]->description[0] != '\0';
        cr_assert(found, "no violation for %s", want[w]);
    }
    cr_assert_eq(br->n_field_violations, sizeof want / sizeof want[0], "%zu violations", br->n_field_violations);
    char reason[64];
    cr_assert_str_eq(h_reason(&st, reason, sizeof reason), "INVALID_BATCH");
    upstream_stats us;
    upstream_get_stats(h->up, &us);
    cr_assert_eq(us.requests, 0, "nothing from an invalid batch runs");
    google__rpc__bad_request__free_unpacked(br, NULL);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    h_stop(h);
}

Test(submit, violations_beyond_the_trailer_budget_are_summarised)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchRequest *req = h_request_n(900, "no-slash-%u", NULL);
    rpcclient_status st = {0};
    cr_assert_null(h_submit(h, req, &st));
    cr_assert_eq(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    cr_assert(strstr(st.message, "900 violations"), "%s", st.message);
    Google__Rpc__BadRequest *br = h_detail(&st, &google__rpc__bad_request__descriptor);
    cr_assert_not_null(br);
    cr_assert_lt(br->n_field_violations, 900);
    cr_assert_gt(br->n_field_violations, 10);
    const char *last = br->field_violations[br->n_field_violations - 1]->description;
    cr_assert(strstr(last, "more violations not listed"), "%s", last);
    google__rpc__bad_request__free_unpacked(br, NULL);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    h_stop(h);
}

Test(submit, too_many_items_is_resource_exhausted_with_quota_failure)
{
    const char *args[] = {"--max-items", "5", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchRequest *req = h_request_n(6, "/ok/%u", NULL);
    rpcclient_status st = {0};
    cr_assert_null(h_submit(h, req, &st));
    cr_assert_eq(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    Google__Rpc__QuotaFailure *qf = h_detail(&st, &google__rpc__quota_failure__descriptor);
    cr_assert_not_null(qf);
    cr_assert_eq(qf->n_violations, 1);
    cr_assert_str_eq(qf->violations[0]->subject, "operations");
    cr_assert(strstr(qf->violations[0]->description, "5"), "%s", qf->violations[0]->description);
    char reason[64];
    cr_assert_str_eq(h_reason(&st, reason, sizeof reason), "TOO_MANY_ITEMS");
    google__rpc__quota_failure__free_unpacked(qf, NULL);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    /* Exactly the limit is fine. */
    req = h_request_n(5, "/ok/%u", NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit(h, req, NULL);
    cr_assert_not_null(r);
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    h_stop(h);
}

Test(submit, request_above_four_mib_is_accepted)
{
    /* The gRPC receive limit follows the batch limits, not gRPC's default of 4 MiB. */
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchRequest *req = h_request_n(10, "/ok/%u", "{\"mode\":\"MODE_ASYNC\"}");
    static char big[600 * 1024];
    memset(big, 'x', sizeof big - 1);
    for (size_t i = 0; i < req->n_operations; i++) {
        req->operations[i]->body_case = BATCH__V1__OPERATION__BODY_TEXT;
        req->operations[i]->text = big;
    }
    rpcclient_status st = {0};
    Batch__V1__SubmitBatchResponse *r = h_submit(h, req, &st);
    cr_assert_not_null(r, "a 6 MB request was refused: %s", st.message);
    for (size_t i = 0; i < req->n_operations; i++)
        req->operations[i]->text = NULL, req->operations[i]->body_case = 0;
    Batch__V1__Batch *b = h_wait_end(h, r->batch->id, 30);
    cr_assert_eq(b->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    batch__v1__batch__free_unpacked(b, NULL);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    rpcclient_status_clear(&st);
    h_stop(h);
}

Test(submit, options_above_caps_are_lowered_and_shown)
{
    const char *args[] = {"--max-concurrency", "8", "--max-attempts", "3", "--max-item-timeout", "5s",
                          "--max-rate", "1000", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"method\":\"GET\",\"path\":\"/ok\"}],"
        "\"options\":{\"maxConcurrency\":500,\"maxAttempts\":99,\"itemTimeout\":\"60s\",\"maxRate\":5000,"
        "\"labels\":{\"team\":\"growth\"}}}");
    const Batch__V1__BatchOptions *o = r->batch->options;
    cr_assert_eq(o->max_concurrency, 8);
    cr_assert_eq(o->max_attempts, 3);
    cr_assert_eq(o->item_timeout->seconds, 5);
    cr_assert_float_eq(o->max_rate, 1000, 1e-9);
    cr_assert_eq(o->n_labels, 1);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(submit, defaults_are_filled_in_options)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h, "{\"operations\":[{\"method\":\"GET\",\"path\":\"/ok\"}]}");
    cr_assert_eq(r->batch->options->max_concurrency, 10);
    cr_assert_eq(r->batch->options->max_attempts, 1);
    cr_assert_eq(r->batch->options->item_timeout->seconds, 30);
    cr_assert_str_eq(r->results[0]->id, "0", "an item without id is named by its index");
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(submit, validate_only_creates_nothing)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"method\":\"GET\",\"path\":\"/ok\"},{\"method\":\"GET\",\"path\":\"/ok2\"}],"
        "\"validate_only\":true}");
    cr_assert_str_eq(r->batch->id, "");
    cr_assert_eq(r->batch->counts->total, 2);
    cr_assert_eq(r->batch->options->max_concurrency, 10);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    Batch__V1__ListBatchesRequest lreq = BATCH__V1__LIST_BATCHES_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpcclient_unary(h->client, M_LIST, &lreq.base, &batch__v1__list_batches_response__descriptor, &m,
                                 10, NULL), GRPC_STATUS_OK);
    cr_assert_eq(((Batch__V1__ListBatchesResponse *)m)->n_batches, 0);
    protobuf_c_message_free_unpacked(m, NULL);
    upstream_stats us;
    upstream_get_stats(h->up, &us);
    cr_assert_eq(us.requests, 0);
    h_stop(h);
}

Test(submit, small_batch_in_auto_mode_is_answered_when_it_ends)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"id\":\"slow\",\"method\":\"GET\",\"path\":\"/s?delay_ms=200\"},"
        "{\"id\":\"fast\",\"method\":\"GET\",\"path\":\"/f\"}]}");
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    cr_assert_eq(r->n_results, 2);
    cr_assert_str_eq(r->results[0]->id, "slow", "results are in input order");
    cr_assert_str_eq(r->results[1]->id, "fast");
    cr_assert_eq(r->results[1]->sequence, 1, "the fast item ended first");
    cr_assert_eq(r->results[0]->sequence, 2);
    cr_assert_not_null(r->batch->end_time);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(submit, batch_above_sync_threshold_returns_at_once_running)
{
    const char *args[] = {"--sync-threshold", "2", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchRequest *req = h_request_n(3, "/slow/%u?delay_ms=300", NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit(h, req, NULL);
    cr_assert_not_null(r);
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_RUNNING);
    cr_assert_neq(r->batch->id[0], '\0');
    cr_assert_eq(r->n_results, 0);
    Batch__V1__Batch *b = h_wait_end(h, r->batch->id, 10);
    cr_assert_eq(b->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    batch__v1__batch__free_unpacked(b, NULL);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    h_stop(h);
}

Test(submit, mode_async_returns_at_once_even_when_small)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"method\":\"GET\",\"path\":\"/s?delay_ms=300\"}],\"options\":{\"mode\":\"MODE_ASYNC\"}}");
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_RUNNING);
    cr_assert_eq(r->n_results, 0);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(submit, mode_sync_answers_before_the_deadline_with_the_batch_as_it_stands)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchRequest *req = h_request(
        "{\"operations\":[{\"id\":\"quick\",\"method\":\"GET\",\"path\":\"/q\"},"
        "{\"id\":\"long\",\"method\":\"GET\",\"path\":\"/l?delay_ms=5000\"}],\"options\":{\"mode\":\"MODE_SYNC\"}}");
    ProtobufCMessage *m = NULL;
    rpcclient_status st = {0};
    grpc_status_code code = rpcclient_unary(h->client, M_SUBMIT, &req->base,
                                            &batch__v1__submit_batch_response__descriptor, &m, 1.0, &st);
    cr_assert_eq(code, GRPC_STATUS_OK, "an accepted batch never turns into %d (%s)", code, st.message);
    Batch__V1__SubmitBatchResponse *r = (Batch__V1__SubmitBatchResponse *)m;
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_RUNNING);
    cr_assert_eq(r->n_results, 1, "the result that ended is included");
    cr_assert_str_eq(r->results[0]->id, "quick");
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    h_stop(h);
}

Test(submit, mode_sync_waits_beyond_the_threshold)
{
    const char *args[] = {"--sync-threshold", "1", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchRequest *req = h_request_n(5, "/s/%u?delay_ms=50", "{\"mode\":\"MODE_SYNC\"}");
    Batch__V1__SubmitBatchResponse *r = h_submit(h, req, NULL);
    cr_assert_not_null(r);
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    cr_assert_eq(r->n_results, 5);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    h_stop(h);
}

Test(submit, sync_answer_over_the_size_limit_is_marked_truncated)
{
    const char *args[] = {"--max-sync-response-bytes", "20000", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchRequest *req = h_request_n(10, "/big/%u?size=5000", NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit(h, req, NULL);
    cr_assert_not_null(r);
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    cr_assert(r->results_truncated);
    cr_assert_lt(r->n_results, 10);
    cr_assert_gt(r->n_results, 0);
    size_t n = 0;
    Batch__V1__ItemResult **all = h_results(h, r->batch->id, 0, &n);
    cr_assert_eq(n, 10, "ListResults has them all");
    h_free_results(all, n);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    h_stop(h);
}

Test(submit, response_body_is_kept_up_to_the_cap)
{
    const char *args[] = {"--max-response-bytes", "1000", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"id\":\"big\",\"method\":\"GET\",\"path\":\"/b?size=5000\"},"
        "{\"id\":\"chunked\",\"method\":\"GET\",\"path\":\"/c?size=5000&chunked=1\"},"
        "{\"id\":\"small\",\"method\":\"GET\",\"path\":\"/s?size=10\"}]}");
    cr_assert_eq(find(r, "big")->body.len, 1000);
    cr_assert(find(r, "big")->body_truncated);
    cr_assert_eq(find(r, "big")->state, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED);
    cr_assert_eq(find(r, "chunked")->body.len, 1000);
    cr_assert(find(r, "chunked")->body_truncated);
    cr_assert_eq(find(r, "small")->body.len, 10);
    cr_assert_not(find(r, "small")->body_truncated);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(submit, unknown_batch_ids_are_not_found_everywhere)
{
    harness *h = h_start(NULL);
    const char *id = "01ZZZZZZZZZZZZZZZZZZZZZZZZ";
    rpcclient_status st = {0};
    char reason[64];
    cr_assert_null(h_get(h, id, &st));
    cr_assert_eq(st.code, GRPC_STATUS_NOT_FOUND);
    cr_assert_str_eq(h_reason(&st, reason, sizeof reason), "BATCH_NOT_FOUND");
    rpcclient_status_clear(&st);

    Batch__V1__CancelBatchRequest creq = BATCH__V1__CANCEL_BATCH_REQUEST__INIT;
    creq.batch_id = (char *)id;
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpcclient_unary(h->client, M_CANCEL, &creq.base, &batch__v1__batch__descriptor, &m, 5, &st),
                 GRPC_STATUS_NOT_FOUND);
    rpcclient_status_clear(&st);

    Batch__V1__WatchBatchRequest wreq = BATCH__V1__WATCH_BATCH_REQUEST__INIT;
    wreq.batch_id = (char *)id;
    rpcclient_stream *s = rpcclient_stream_open(h->client, M_WATCH, &wreq.base, 5);
    cr_assert_eq(rpcclient_stream_next(s, &batch__v1__batch_event__descriptor, &m, 0), 0);
    cr_assert_eq(rpcclient_stream_finish(s, &st), GRPC_STATUS_NOT_FOUND);
    cr_assert_str_eq(h_reason(&st, reason, sizeof reason), "BATCH_NOT_FOUND");
    rpcclient_status_clear(&st);

    Batch__V1__ListResultsRequest rreq = BATCH__V1__LIST_RESULTS_REQUEST__INIT;
    rreq.batch_id = (char *)id;
    s = rpcclient_stream_open(h->client, M_RESULTS, &rreq.base, 5);
    cr_assert_eq(rpcclient_stream_next(s, &batch__v1__item_result__descriptor, &m, 0), 0);
    cr_assert_eq(rpcclient_stream_finish(s, &st), GRPC_STATUS_NOT_FOUND);
    rpcclient_status_clear(&st);

    cr_assert_null(h_get(h, "", &st));
    cr_assert_eq(st.code, GRPC_STATUS_INVALID_ARGUMENT, "an empty id is a bad request");
    rpcclient_status_clear(&st);
    h_stop(h);
}

Test(submit, malformed_request_bytes_are_invalid_argument)
{
    harness *h = h_start(NULL);
    /* Any{value = 0a 7f 01} packs as 12 03 0a 7f 01. Read as a SubmitBatchRequest, that is
     * field 2 (options) holding 0a 7f 01: a length of 127 with one byte left. */
    static uint8_t bad[] = {0x0a, 0x7f, 0x01};
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.value.data = bad;
    any.value.len = sizeof bad;
    rpcclient_status st = {0};
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpcclient_unary(h->client, M_SUBMIT, &any.base, &batch__v1__submit_batch_response__descriptor, &m,
                                 5, &st), GRPC_STATUS_INVALID_ARGUMENT);
    char reason[64];
    cr_assert_str_eq(h_reason(&st, reason, sizeof reason), "MALFORMED_REQUEST");
    rpcclient_status_clear(&st);
    /* The server goes on serving. */
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h, "{\"operations\":[{\"method\":\"GET\",\"path\":\"/ok\"}]}");
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

/* Prepends v as a varint before *pos in buf. */
static void prepend_varint(uint8_t *buf, size_t *pos, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    *pos -= n;
    memcpy(buf + *pos, tmp, n);
}

/* Regression: protobuf-c's unpack has no depth limit; 200,000 nested Values (1.6 MB)
 * overflowed batchd's stack. */
Test(submit, deeply_nested_values_are_refused_not_a_crash)
{
    harness *h = h_start(NULL);
    size_t depth = 200000, cap = depth * 10 + 64, pos = cap;
    uint8_t *buf = malloc(cap);
    buf[--pos] = 0x00; /* Value{null_value = 0} */
    buf[--pos] = 0x08;
    for (size_t i = 0; i < depth; i++) { /* Value{list_value = ListValue{values = [inner]}} */
        prepend_varint(buf, &pos, cap - pos);
        buf[--pos] = 0x0a; /* ListValue.values, field 1 */
        prepend_varint(buf, &pos, cap - pos);
        buf[--pos] = 0x32; /* Value.list_value, field 6 */
    }
    /* SubmitBatchRequest{operations: [Operation{method "GET", path "/x", json = value}]} */
    pbwire op = {0}, req = {0};
    pbwire_bytes_field(&op, 3, "GET", 3);
    pbwire_bytes_field(&op, 4, "/x", 2);
    pbwire_bytes_field(&op, 6, buf + pos, cap - pos);
    pbwire_bytes_field(&req, 1, op.data, op.len);
    rpcclient_status st = {0};
    ProtobufCMessage *m = NULL;
    grpc_status_code code = rpcclient_unary_raw(h->client, M_SUBMIT, req.data, req.len,
                                                &batch__v1__submit_batch_response__descriptor, &m, 30, &st);
    cr_assert_eq(code, GRPC_STATUS_INVALID_ARGUMENT, "%d %s", code, st.message);
    cr_assert(strstr(st.message, "nested deeper"), "%s", st.message);
    rpcclient_status_clear(&st);
    pbwire_free(&op);
    pbwire_free(&req);
    free(buf);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h, "{\"operations\":[{\"method\":\"GET\",\"path\":\"/ok\"}]}");
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED, "the server goes on");
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(submit, a_request_over_the_size_limit_gets_quota_failure_details)
{
    /* 3 items of at most 1000 bytes: the request limit is 1 MiB + 3 * (1000 + 96 KiB). */
    const char *args[] = {"--max-items", "3", "--max-body-bytes", "1000", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchRequest *req = h_request_n(1, "/ok/%u", NULL);
    static char big[1500 * 1024];
    memset(big, 'x', sizeof big - 1);
    req->operations[0]->body_case = BATCH__V1__OPERATION__BODY_TEXT;
    req->operations[0]->text = big;
    rpcclient_status st = {0};
    cr_assert_null(h_submit(h, req, &st));
    req->operations[0]->text = NULL;
    req->operations[0]->body_case = 0;
    cr_assert_eq(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    char reason[64];
    cr_assert_str_eq(h_reason(&st, reason, sizeof reason), "REQUEST_TOO_LARGE");
    Google__Rpc__QuotaFailure *qf = h_detail(&st, &google__rpc__quota_failure__descriptor);
    cr_assert_not_null(qf, "the refusal names the limit, not gRPC's bare message");
    cr_assert_str_eq(qf->violations[0]->subject, "request");
    google__rpc__quota_failure__free_unpacked(qf, NULL);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    h_stop(h);
}
