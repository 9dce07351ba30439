/* The executor end to end: concurrency caps held and reached, fairness, retries,
 * Retry-After, timeouts, connection errors, stop_on_failure, cancellation, rate limits. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "pbtime.h"

static uint64_t max_in_flight(harness *h)
{
    upstream_stats s;
    upstream_get_stats(h->up, &s);
    return s.max_in_flight;
}

static Batch__V1__Batch *run_to_end(harness *h, unsigned n, const char *path, const char *opts)
{
    Batch__V1__SubmitBatchResponse *r = h_submit_async(h, n, path, opts);
    Batch__V1__Batch *b = h_wait_end(h, r->batch->id, 60);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    return b;
}

Test(exec, batch_concurrency_is_held_and_reached)
{
    harness *h = h_start(NULL);
    Batch__V1__Batch *b = run_to_end(h, 42, "/c/%u?delay_ms=60", "\"maxConcurrency\":7");
    cr_assert_eq(b->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    cr_assert_eq(max_in_flight(h), 7, "max in flight %lu, want exactly 7", (unsigned long)max_in_flight(h));
    batch__v1__batch__free_unpacked(b, NULL);
    h_stop(h);
}

Test(exec, global_inflight_cap_holds_across_batches)
{
    const char *args[] = {"--max-inflight", "5", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *a = h_submit_async(h, 20, "/a/%u?delay_ms=50", "\"maxConcurrency\":10");
    Batch__V1__SubmitBatchResponse *c = h_submit_async(h, 20, "/b/%u?delay_ms=50", "\"maxConcurrency\":10");
    Batch__V1__Batch *ba = h_wait_end(h, a->batch->id, 30), *bc = h_wait_end(h, c->batch->id, 30);
    cr_assert_eq(max_in_flight(h), 5);
    batch__v1__batch__free_unpacked(ba, NULL);
    batch__v1__batch__free_unpacked(bc, NULL);
    batch__v1__submit_batch_response__free_unpacked(a, NULL);
    batch__v1__submit_batch_response__free_unpacked(c, NULL);
    h_stop(h);
}

Test(exec, target_concurrency_cap_holds)
{
    harness *h = h_start(NULL);
    /* A second target on the same upstream, capped at 3. */
    h_stop(h);
    upstream *up = upstream_start(NULL);
    char tflag[128];
    snprintf(tflag, sizeof tflag, "capped=http://127.0.0.1:%d,concurrency=3", upstream_port(up));
    const char *args[] = {"--target", tflag, NULL};
    h = h_start_server(args);
    Batch__V1__Batch *b = run_to_end(h, 15, "/t/%u?delay_ms=50", "\"maxConcurrency\":10");
    cr_assert_eq(b->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.max_in_flight, 3);
    batch__v1__batch__free_unpacked(b, NULL);
    h_stop(h);
    upstream_stop(up);
}

static int done_at_least(const Batch__V1__Batch *b, void *arg)
{
    return b->last_sequence >= *(unsigned *)arg;
}

Test(exec, a_small_batch_is_not_starved_by_a_big_one)
{
    const char *args[] = {"--max-inflight", "4", "--max-items", "5000", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *big = h_submit_async(h, 3000, "/big/%u?delay_ms=10", "\"maxConcurrency\":4");
    unsigned some = 20;
    Batch__V1__Batch *first = h_wait_until(h, big->batch->id, 30, done_at_least, &some);
    batch__v1__batch__free_unpacked(first, NULL);
    Batch__V1__SubmitBatchResponse *small = h_submit_async(h, 10, "/small/%u?delay_ms=10", "\"maxConcurrency\":4");
    Batch__V1__Batch *s = h_wait_end(h, small->batch->id, 30);
    cr_assert_eq(s->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    Batch__V1__Batch *b = h_get(h, big->batch->id, NULL);
    /* Round robin: while the 10 small items ran, the big batch got about as many starts. */
    cr_assert_eq(b->state, BATCH__V1__BATCH_STATE__BATCH_STATE_RUNNING);
    cr_assert_lt(b->last_sequence, 400, "the big batch ran %lu items before the small one ended",
                 (unsigned long)b->last_sequence);
    Batch__V1__CancelBatchRequest creq = BATCH__V1__CANCEL_BATCH_REQUEST__INIT;
    creq.batch_id = big->batch->id;
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpcclient_unary(h->client, M_CANCEL, &creq.base, &batch__v1__batch__descriptor, &m, 10, NULL),
                 GRPC_STATUS_OK);
    protobuf_c_message_free_unpacked(m, NULL);
    batch__v1__batch__free_unpacked(s, NULL);
    batch__v1__batch__free_unpacked(b, NULL);
    batch__v1__submit_batch_response__free_unpacked(big, NULL);
    batch__v1__submit_batch_response__free_unpacked(small, NULL);
    h_stop(h);
}

Test(exec, retryable_failures_are_retried_until_success)
{
    const char *args[] = {"--retry-backoff", "10ms", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":["
        "{\"id\":\"s503\",\"method\":\"POST\",\"path\":\"/r?fail_first=2&fail_status=503\"},"
        "{\"id\":\"s429\",\"method\":\"POST\",\"path\":\"/r?fail_first=2&fail_status=429\"},"
        "{\"id\":\"s502\",\"method\":\"POST\",\"path\":\"/r?fail_first=1&fail_status=502\"},"
        "{\"id\":\"s504\",\"method\":\"POST\",\"path\":\"/r?fail_first=1&fail_status=504\"}"
        "],\"options\":{\"maxAttempts\":3}}");
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    cr_assert_eq(r->results[0]->attempts, 3);
    cr_assert_eq(r->results[1]->attempts, 3);
    cr_assert_eq(r->results[2]->attempts, 2);
    cr_assert_eq(r->results[3]->attempts, 2);
    for (size_t i = 0; i < r->n_results; i++)
        cr_assert_eq(r->results[i]->http_status, 200);
    /* Every attempt of one item carries the same Idempotency-Key. */
    char key[128];
    snprintf(key, sizeof key, "%s/s503", r->batch->id);
    cr_assert_eq(upstream_key_count(h->up, key), 3);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(exec, attempts_run_out_and_the_last_answer_is_recorded)
{
    const char *args[] = {"--retry-backoff", "10ms", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"id\":\"x\",\"method\":\"GET\",\"path\":\"/r?fail_first=5&fail_status=503\"}],"
        "\"options\":{\"maxAttempts\":2}}");
    const Batch__V1__ItemResult *it = r->results[0];
    cr_assert_eq(it->state, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED);
    cr_assert_eq(it->attempts, 2);
    cr_assert_eq(it->http_status, 503);
    cr_assert_eq(it->error->code, GRPC_STATUS_UNAVAILABLE);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(exec, non_retryable_statuses_are_not_retried)
{
    const char *args[] = {"--retry-backoff", "10ms", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"method\":\"GET\",\"path\":\"/a?status=500\"},{\"method\":\"GET\",\"path\":\"/b?status=400\"},"
        "{\"method\":\"GET\",\"path\":\"/c?status=409\"}],\"options\":{\"maxAttempts\":5}}");
    for (size_t i = 0; i < r->n_results; i++)
        cr_assert_eq(r->results[i]->attempts, 1, "item %zu", i);
    upstream_stats s;
    upstream_get_stats(h->up, &s);
    cr_assert_eq(s.requests, 3);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(exec, retry_after_is_honoured)
{
    const char *args[] = {"--retry-backoff", "10ms", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"id\":\"x\",\"method\":\"GET\",\"path\":\"/r?fail_first=1&fail_status=429&retry_after=1\"}],"
        "\"options\":{\"maxAttempts\":2}}");
    const Batch__V1__ItemResult *it = r->results[0];
    cr_assert_eq(it->state, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED);
    cr_assert_eq(it->attempts, 2);
    /* The second attempt waited for Retry-After (1 s), not the 10 ms backoff. */
    int64_t ns = it->duration->seconds * PBTIME_NS_PER_SEC + it->duration->nanos;
    cr_assert_geq(ns, 950 * PBTIME_NS_PER_MS, "item took %lld ms", (long long)(ns / PBTIME_NS_PER_MS));
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(exec, a_slow_upstream_times_out_as_deadline_exceeded)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"id\":\"op\",\"method\":\"GET\",\"path\":\"/slow?delay_ms=3000\",\"timeout\":\"0.2s\"},"
        "{\"id\":\"batchwide\",\"method\":\"GET\",\"path\":\"/slow2?delay_ms=3000\"}],"
        "\"options\":{\"itemTimeout\":\"0.3s\"}}");
    for (size_t i = 0; i < 2; i++) {
        const Batch__V1__ItemResult *it = r->results[i];
        cr_assert_eq(it->state, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED);
        cr_assert_eq(it->error->code, GRPC_STATUS_DEADLINE_EXCEEDED, "%s: %d", it->id, it->error->code);
        cr_assert_eq(it->http_status, 0);
    }
    cr_assert(strstr(r->results[0]->error->message, "200 ms"), "%s", r->results[0]->error->message);
    cr_assert(strstr(r->results[1]->error->message, "300 ms"), "%s", r->results[1]->error->message);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(exec, timeouts_are_retried)
{
    const char *args[] = {"--retry-backoff", "10ms", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"id\":\"t\",\"method\":\"GET\",\"path\":\"/slow?delay_ms=2000\",\"timeout\":\"0.1s\"}],"
        "\"options\":{\"maxAttempts\":3}}");
    cr_assert_eq(r->results[0]->attempts, 3);
    cr_assert_eq(r->results[0]->error->code, GRPC_STATUS_DEADLINE_EXCEEDED);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(exec, connection_failures_are_unavailable)
{
    const char *args[] = {"--target", "down=http://127.0.0.1:1", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"id\":\"refused\",\"method\":\"GET\",\"path\":\"/x\",\"target\":\"down\"},"
        "{\"id\":\"dropped\",\"method\":\"GET\",\"path\":\"/d?drop=1\"}]}");
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(r->results[i]->state, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED);
        cr_assert_eq(r->results[i]->error->code, GRPC_STATUS_UNAVAILABLE, "%s", r->results[i]->id);
        cr_assert_eq(r->results[i]->http_status, 0);
        cr_assert(strstr(r->results[i]->error->message, "unreachable"), "%s", r->results[i]->error->message);
    }
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

Test(exec, stop_on_failure_cancels_the_rest)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"id\":\"a\",\"method\":\"GET\",\"path\":\"/ok\"},"
        "{\"id\":\"bad\",\"method\":\"GET\",\"path\":\"/x?status=422\"},"
        "{\"id\":\"c\",\"method\":\"GET\",\"path\":\"/c\"},{\"id\":\"d\",\"method\":\"GET\",\"path\":\"/d\"}],"
        "\"options\":{\"maxConcurrency\":1,\"stopOnFailure\":true}}");
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_FAILED);
    cr_assert_not_null(r->batch->error);
    cr_assert(strstr(r->batch->error->message, "bad"), "%s", r->batch->error->message);
    cr_assert_eq(r->results[0]->state, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED);
    cr_assert_eq(r->results[1]->state, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED);
    cr_assert_eq(r->results[2]->state, BATCH__V1__ITEM_STATE__ITEM_STATE_CANCELLED);
    cr_assert_eq(r->results[3]->state, BATCH__V1__ITEM_STATE__ITEM_STATE_CANCELLED);
    cr_assert_eq(r->results[2]->error->code, GRPC_STATUS_CANCELLED);
    cr_assert_eq(r->results[2]->attempts, 0);
    cr_assert_eq(r->batch->counts->cancelled, 2);
    upstream_stats s;
    upstream_get_stats(h->up, &s);
    cr_assert_eq(s.requests, 2, "nothing after the failure reached the upstream");
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

static int running_at_least(const Batch__V1__Batch *b, void *arg)
{
    return b->counts->running >= *(unsigned *)arg;
}

Test(exec, cancel_aborts_running_items_and_stops_pending_ones)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_async(h, 20, "/slow/%u?delay_ms=10000", "\"maxConcurrency\":5");
    unsigned five = 5;
    batch__v1__batch__free_unpacked(h_wait_until(h, r->batch->id, 10, running_at_least, &five), NULL);
    Batch__V1__CancelBatchRequest creq = BATCH__V1__CANCEL_BATCH_REQUEST__INIT;
    creq.batch_id = r->batch->id;
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpcclient_unary(h->client, M_CANCEL, &creq.base, &batch__v1__batch__descriptor, &m, 10, NULL),
                 GRPC_STATUS_OK);
    Batch__V1__Batch *b = (Batch__V1__Batch *)m;
    cr_assert_eq(b->state, BATCH__V1__BATCH_STATE__BATCH_STATE_CANCELLED, "the cancel answer shows the end");
    cr_assert_eq(b->counts->cancelled, 20);
    cr_assert_eq(b->counts->running, 0);
    cr_assert_eq(b->last_sequence, 20);
    size_t n = 0;
    Batch__V1__ItemResult **res = h_results(h, r->batch->id, 0, &n);
    cr_assert_eq(n, 20);
    unsigned started = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(res[i]->state, BATCH__V1__ITEM_STATE__ITEM_STATE_CANCELLED);
        started += res[i]->attempts;
    }
    cr_assert_eq(started, 5, "the five running items were aborted, the rest never started");
    h_free_results(res, n);
    /* Cancelling an ended batch returns it unchanged. */
    m = NULL;
    cr_assert_eq(rpcclient_unary(h->client, M_CANCEL, &creq.base, &batch__v1__batch__descriptor, &m, 10, NULL),
                 GRPC_STATUS_OK);
    cr_assert_eq(((Batch__V1__Batch *)m)->state, BATCH__V1__BATCH_STATE__BATCH_STATE_CANCELLED);
    cr_assert_eq(((Batch__V1__Batch *)m)->end_time->seconds, b->end_time->seconds);
    protobuf_c_message_free_unpacked(m, NULL);
    batch__v1__batch__free_unpacked(b, NULL);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

static void assert_starts_spaced(Batch__V1__ItemResult **res, size_t n, double rate)
{
    int64_t first = INT64_MAX, last = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t t = pbtime_timestamp_ns(res[i]->start_time);
        first = t < first ? t : first;
        last = t > last ? t : last;
    }
    /* n starts at `rate` per second, with a burst of one, take at least (n-1)/rate. */
    double span = (double)(last - first) / 1e9, want = (double)(n - 1) / rate;
    cr_assert_geq(span, want * 0.9, "%zu starts took %.3fs at %.0f/s (want >= %.3fs)", n, span, rate, want);
}

Test(exec, max_rate_spaces_item_starts)
{
    harness *h = h_start(NULL);
    Batch__V1__Batch *b = run_to_end(h, 8, "/r/%u", "\"maxRate\":20,\"maxConcurrency\":8");
    size_t n = 0;
    Batch__V1__ItemResult **res = h_results(h, b->id, 0, &n);
    cr_assert_eq(n, 8);
    assert_starts_spaced(res, n, 20);
    h_free_results(res, n);
    batch__v1__batch__free_unpacked(b, NULL);
    h_stop(h);
}

Test(exec, target_rate_spaces_item_starts)
{
    upstream *up = upstream_start(NULL);
    char tflag[128];
    snprintf(tflag, sizeof tflag, "slowapi=http://127.0.0.1:%d,rate=25", upstream_port(up));
    const char *args[] = {"--target", tflag, NULL};
    harness *h = h_start_server(args);
    Batch__V1__Batch *b = run_to_end(h, 8, "/r/%u", "\"maxConcurrency\":8");
    size_t n = 0;
    Batch__V1__ItemResult **res = h_results(h, b->id, 0, &n);
    assert_starts_spaced(res, n, 25);
    h_free_results(res, n);
    batch__v1__batch__free_unpacked(b, NULL);
    h_stop(h);
    upstream_stop(up);
}

Test(exec, operations_reach_only_their_target)
{
    upstream *other = upstream_start(NULL);
    char tflag[128];
    snprintf(tflag, sizeof tflag, "other=http://127.0.0.1:%d", upstream_port(other));
    const char *args[] = {"--target", tflag, NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"method\":\"GET\",\"path\":\"/a\"},{\"method\":\"GET\",\"path\":\"/b\",\"target\":\"other\"},"
        "{\"method\":\"GET\",\"path\":\"/c\",\"target\":\"api\"}]}");
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    upstream_stats s1, s2;
    upstream_get_stats(h->up, &s1);
    upstream_get_stats(other, &s2);
    cr_assert_eq(s1.requests, 2, "the default target is the first");
    cr_assert_eq(s2.requests, 1);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
    upstream_stop(other);
}

Test(exec, head_and_bodiless_methods_work)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_json(h,
        "{\"operations\":[{\"id\":\"head\",\"method\":\"HEAD\",\"path\":\"/h\"},"
        "{\"id\":\"del\",\"method\":\"DELETE\",\"path\":\"/echo\"},"
        "{\"id\":\"post\",\"method\":\"POST\",\"path\":\"/echo\"},"
        "{\"id\":\"opt\",\"method\":\"OPTIONS\",\"path\":\"/echo\"}]}");
    cr_assert_eq(r->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    cr_assert_eq(r->results[0]->body.len, 0, "HEAD has no body");
    char *del = strndup((const char *)r->results[1]->body.data, r->results[1]->body.len);
    cr_assert(strstr(del, "\"method\":\"DELETE\""), "%s", del);
    char *post = strndup((const char *)r->results[2]->body.data, r->results[2]->body.len);
    cr_assert(strstr(post, "\"method\":\"POST\""), "%s", post);
    cr_assert(strstr(post, "\"content-length\":\"0\""), "an empty POST says so: %s", post);
    free(del);
    free(post);
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}
