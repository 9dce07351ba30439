/* grpc.health.v1.Health end to end: Check and Watch through the C client, the status change
 * on a graceful stop and how Watch streams end, unknown services, the watcher cap. */
#include <criterion/criterion.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "harness.h"

#define M_CHECK "/grpc.health.v1.Health/Check"
#define M_HWATCH "/grpc.health.v1.Health/Watch"
#define SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define SERVICE_UNKNOWN GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

/* Check's answer for service; -1 on a failed call (st filled when given). */
static int check(harness *h, const char *service, rpcclient_status *st)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    ProtobufCMessage *resp = NULL;
    rpcclient_status local = {0};
    rpcclient_unary(h->client, M_CHECK, &req.base, &grpc__health__v1__health_check_response__descriptor, &resp,
                    10, st ? st : &local);
    rpcclient_status_clear(&local);
    if (resp == NULL)
        return -1;
    int s = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
    protobuf_c_message_free_unpacked(resp, NULL);
    return s;
}

static rpcclient_stream *watch(harness *h, const char *service)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    return rpcclient_stream_open(h->client, M_HWATCH, &req.base, 30);
}

/* The next status on a Watch stream; -1 at the end of the stream, -2 when nothing came
 * within wait_s. */
static int next_status(rpcclient_stream *s, double wait_s)
{
    ProtobufCMessage *m = NULL;
    int r = rpcclient_stream_next(s, &grpc__health__v1__health_check_response__descriptor, &m, wait_s);
    if (r == -2)
        return -2;
    cr_assert_neq(r, -1, "undecodable HealthCheckResponse");
    if (r == 0)
        return -1;
    int st = ((Grpc__Health__V1__HealthCheckResponse *)m)->status;
    protobuf_c_message_free_unpacked(m, NULL);
    return st;
}

/* Asserts the detail set of a SHUTTING_DOWN refusal: ErrorInfo and a RetryInfo. */
static void assert_shutting_down(const rpcclient_status *st)
{
    char reason[64];
    cr_assert_eq(st->code, GRPC_STATUS_UNAVAILABLE, "code %d: %s", st->code, st->message);
    cr_assert_str_eq(h_reason(st, reason, sizeof reason), "SHUTTING_DOWN");
    Google__Rpc__RetryInfo *ri = h_detail(st, &google__rpc__retry_info__descriptor);
    cr_assert_not_null(ri, "UNAVAILABLE at shutdown carries RetryInfo");
    cr_assert_not_null(ri->retry_delay);
    cr_assert_gt(ri->retry_delay->seconds * 1000000000LL + ri->retry_delay->nanos, 0);
    google__rpc__retry_info__free_unpacked(ri, NULL);
}

Test(health, check_reports_serving_for_the_server_and_the_batch_service)
{
    harness *h = h_start(NULL);
    cr_assert_eq(check(h, "", NULL), SERVING);
    cr_assert_eq(check(h, "batch.v1.BatchService", NULL), SERVING);
    h_stop(h);
}

Test(health, check_of_an_unknown_service_is_not_found_with_error_info)
{
    harness *h = h_start(NULL);
    rpcclient_status st = {0};
    cr_assert_eq(check(h, "no.such.Service", &st), -1);
    cr_assert_eq(st.code, GRPC_STATUS_NOT_FOUND);
    cr_assert(strstr(st.message, "no.such.Service"), "%s", st.message);
    Google__Rpc__ErrorInfo *ei = h_detail(&st, &google__rpc__error_info__descriptor);
    cr_assert_not_null(ei);
    cr_assert_str_eq(ei->reason, "UNKNOWN_SERVICE");
    cr_assert_str_eq(ei->domain, "batchd");
    cr_assert_eq(ei->n_metadata, 1);
    cr_assert_str_eq(ei->metadata[0]->key, "service");
    cr_assert_str_eq(ei->metadata[0]->value, "no.such.Service");
    google__rpc__error_info__free_unpacked(ei, NULL);
    rpcclient_status_clear(&st);
    /* The status inside the details repeats the call's own. */
    cr_assert_eq(check(h, "grpc.health.v1.Health", &st), -1, "only \"\" and the batch service are reported on");
    cr_assert_not_null(st.details);
    cr_assert_eq(st.details->code, GRPC_STATUS_NOT_FOUND);
    cr_assert_str_eq(st.details->message, st.message);
    rpcclient_status_clear(&st);
    h_stop(h);
}

Test(health, an_undecodable_request_is_invalid_argument)
{
    harness *h = h_start(NULL);
    /* Field 1 as a varint where HealthCheckRequest has a string. */
    Batch__V1__ListBatchesRequest bad = BATCH__V1__LIST_BATCHES_REQUEST__INIT;
    bad.page_size = 7;
    ProtobufCMessage *resp = NULL;
    rpcclient_status st = {0};
    cr_assert_eq(rpcclient_unary(h->client, M_CHECK, &bad.base, &grpc__health__v1__health_check_response__descriptor,
                                 &resp, 10, &st),
                 GRPC_STATUS_INVALID_ARGUMENT, "%s", st.message);
    char reason[64];
    cr_assert_str_eq(h_reason(&st, reason, sizeof reason), "MALFORMED_REQUEST");
    rpcclient_status_clear(&st);
    rpcclient_stream *s = rpcclient_stream_open(h->client, M_HWATCH, &bad.base, 10);
    cr_assert_eq(next_status(s, 5), -1);
    cr_assert_eq(rpcclient_stream_finish(s, &st), GRPC_STATUS_INVALID_ARGUMENT);
    cr_assert_str_eq(h_reason(&st, reason, sizeof reason), "MALFORMED_REQUEST");
    rpcclient_status_clear(&st);
    h_stop(h);
}

Test(health, watch_of_an_unknown_service_says_service_unknown_and_stays_open)
{
    harness *h = h_start(NULL);
    rpcclient_stream *s = watch(h, "no.such.Service");
    cr_assert_eq(next_status(s, 5), SERVICE_UNKNOWN);
    cr_assert_eq(next_status(s, 0.3), -2, "the stream stays open, silent");
    rpcclient_stream_cancel(s);
    rpcclient_status st = {0};
    cr_assert_eq(rpcclient_stream_finish(s, &st), GRPC_STATUS_CANCELLED);
    rpcclient_status_clear(&st);
    h_stop(h);
}

Test(health, every_watch_sees_not_serving_on_graceful_stop_then_unavailable)
{
    /* A slow item keeps batchd draining for a while after the stop request, so what is
     * answered while draining can be asked. */
    const char *args[] = {"--shutdown-grace", "10s", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"id\":\"slow\",\"method\":\"GET\",\"path\":\"/s?delay_ms=1500\"}],"
        "\"options\":{\"mode\":\"MODE_ASYNC\"}}");
    batch__v1__submit_batch_response__free_unpacked(r, NULL);

    const char *services[] = {"", "batch.v1.BatchService", "", "no.such.Service"};
    rpcclient_stream *w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = watch(h, services[i]);
        cr_assert_eq(next_status(w[i], 5), i == 3 ? SERVICE_UNKNOWN : SERVING, "watcher %d", i);
    }
    h_request_stop(h);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(next_status(w[i], 5), NOT_SERVING, "watcher %d sees the change", i);

    /* Draining: health says so, new batches are refused with a reason to retry elsewhere. */
    cr_assert_eq(check(h, "", NULL), NOT_SERVING);
    cr_assert_eq(check(h, "batch.v1.BatchService", NULL), NOT_SERVING);
    rpcclient_status st = {0};
    Batch__V1__SubmitBatchRequest *req = h_request("{\"operations\":[{\"method\":\"GET\",\"path\":\"/ok\"}]}");
    cr_assert_null(h_submit(h, req, &st));
    assert_shutting_down(&st);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);

    /* Once the item is done, every stream ends: nothing more after NOT_SERVING (nor after
     * SERVICE_UNKNOWN), then UNAVAILABLE with the shutdown details. */
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(next_status(w[i], 10), -1, "watcher %d: no message after the last status", i);
        rpcclient_stream_finish(w[i], &st);
        assert_shutting_down(&st);
        rpcclient_status_clear(&st);
    }
    h_stop(h);
}

Test(health, a_watch_started_while_draining_gets_not_serving_at_once)
{
    const char *args[] = {"--shutdown-grace", "10s", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"method\":\"GET\",\"path\":\"/s?delay_ms=800\"}],\"options\":{\"mode\":\"MODE_ASYNC\"}}");
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_request_stop(h);
    int st = SERVING;
    for (int i = 0; i < 100 && st == SERVING; i++) { /* the stop request crosses threads */
        h_sleep_ms(5);
        st = check(h, "", NULL);
    }
    cr_assert_eq(st, NOT_SERVING);
    rpcclient_stream *w = watch(h, "batch.v1.BatchService");
    cr_assert_eq(next_status(w, 5), NOT_SERVING);
    cr_assert_eq(next_status(w, 10), -1);
    rpcclient_status rs = {0};
    rpcclient_stream_finish(w, &rs);
    assert_shutting_down(&rs);
    rpcclient_status_clear(&rs);
    h_stop(h);
}

Test(health, watchers_beyond_the_cap_are_refused_and_a_cancelled_one_frees_its_slot)
{
    const char *args[] = {"--max-watchers", "1", NULL};
    harness *h = h_start(args);
    rpcclient_stream *first = watch(h, "");
    cr_assert_eq(next_status(first, 5), SERVING);

    rpcclient_stream *second = watch(h, "");
    cr_assert_eq(next_status(second, 5), -1);
    rpcclient_status st = {0};
    cr_assert_eq(rpcclient_stream_finish(second, &st), GRPC_STATUS_RESOURCE_EXHAUSTED, "%s", st.message);
    char reason[64];
    cr_assert_str_eq(h_reason(&st, reason, sizeof reason), "TOO_MANY_WATCHERS");
    Google__Rpc__QuotaFailure *qf = h_detail(&st, &google__rpc__quota_failure__descriptor);
    cr_assert_not_null(qf);
    cr_assert_eq(qf->n_violations, 1);
    cr_assert_str_eq(qf->violations[0]->subject, "health_watchers");
    google__rpc__quota_failure__free_unpacked(qf, NULL);
    Google__Rpc__RetryInfo *ri = h_detail(&st, &google__rpc__retry_info__descriptor);
    cr_assert_not_null(ri, "a full watcher table is worth retrying later");
    google__rpc__retry_info__free_unpacked(ri, NULL);
    rpcclient_status_clear(&st);

    /* Health watchers are counted apart from WatchBatch ones. */
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"method\":\"GET\",\"path\":\"/s?delay_ms=300\"}],\"options\":{\"mode\":\"MODE_ASYNC\"}}");
    Batch__V1__WatchBatchRequest wr = BATCH__V1__WATCH_BATCH_REQUEST__INIT;
    wr.batch_id = r->batch->id;
    rpcclient_stream *bw = rpcclient_stream_open(h->client, M_WATCH, &wr.base, 10);
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpcclient_stream_next(bw, &batch__v1__batch_event__descriptor, &m, 5), 1,
                 "a batch watcher is not refused because of a health watcher");
    protobuf_c_message_free_unpacked(m, NULL);
    rpcclient_stream_cancel(bw);
    rpcclient_stream_finish(bw, &st);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);

    /* The server learns of the cancel asynchronously: retry briefly. */
    rpcclient_stream_cancel(first);
    rpcclient_stream_finish(first, &st);
    rpcclient_status_clear(&st);
    int got = -1;
    for (int i = 0; i < 200 && got != SERVING; i++) {
        rpcclient_stream *again = watch(h, "");
        got = next_status(again, 5);
        if (got != SERVING)
            h_sleep_ms(5);
        rpcclient_stream_cancel(again);
        rpcclient_stream_finish(again, &st);
        rpcclient_status_clear(&st);
    }
    cr_assert_eq(got, SERVING, "the cancelled watcher's slot is free again");
    h_stop(h);
}

Test(health, health_is_served_without_reflection)
{
    const char *args[] = {"--no-reflection", NULL};
    harness *h = h_start(args);
    cr_assert_eq(check(h, "", NULL), SERVING);
    rpcclient_stream *w = watch(h, "batch.v1.BatchService");
    cr_assert_eq(next_status(w, 5), SERVING);
    rpcclient_stream_cancel(w);
    rpcclient_status st = {0};
    rpcclient_stream_finish(w, &st);
    rpcclient_status_clear(&st);
    h_stop(h);
}
