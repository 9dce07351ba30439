/* The test upstream (tools/upstream) driven over raw TCP: the answers chosen by the query
 * string, echo, methods and statuses, counters and lifecycle. Keep-alive, pipelining,
 * limits and malformed input are in test_upstream_protocol.c; the client and fixture in
 * support/upstream_client.c. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "upstream.h"
#include "upstream_client.h"

TestSuite(upstream, .init = uc_start_upstream, .fini = uc_stop_upstream, .timeout = 60);

/* ---- answers chosen by the query string ---- */

Test(upstream, default_answer_is_json_naming_method_and_path)
{
    struct uc_response r = uc_fetch(uc_port, "POST /users/7 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}");
    cr_assert_eq(r.status, 200);
    char v[64];
    cr_assert_str_eq(uc_resp_header(&r, "Content-Type", v, sizeof v), "application/json");
    json_t *j = uc_body_json(&r);
    cr_assert(json_is_true(json_object_get(j, "ok")));
    cr_assert_str_eq(json_string_value(json_object_get(j, "path")), "/users/7");
    cr_assert_str_eq(json_string_value(json_object_get(j, "method")), "POST");
    json_decref(j);
    uc_response_free(&r);
}

Test(upstream, status_param_sets_the_status)
{
    struct uc_response r = uc_get(uc_port, "/items?status=404");
    cr_assert_eq(r.status, 404);
    json_t *j = uc_body_json(&r);
    cr_assert(json_is_false(json_object_get(j, "ok")));
    cr_assert_eq(json_integer_value(json_object_get(j, "status")), 404);
    json_decref(j);
    uc_response_free(&r);
}

Test(upstream, body_param_is_sent_url_decoded_as_text)
{
    struct uc_response r = uc_get(uc_port, "/x?body=hello%2C+world%21&status=201");
    cr_assert_eq(r.status, 201);
    char v[64];
    cr_assert_str_eq(uc_resp_header(&r, "Content-Type", v, sizeof v), "text/plain");
    cr_assert_str_eq(r.body, "hello, world!");
    uc_response_free(&r);
}

Test(upstream, size_param_sends_that_many_pattern_bytes)
{
    struct uc_response r = uc_get(uc_port, "/blob?size=100000");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 100000);
    for (size_t i = 0; i < r.body_len; i++)
        cr_assert_eq(r.body[i], 'a' + (char)(i % 26), "byte %zu", i);
    uc_response_free(&r);
}

Test(upstream, chunked_param_sends_a_chunked_body)
{
    struct uc_response r = uc_get(uc_port, "/blob?size=40000&chunked=1");
    char v[64];
    cr_assert_str_eq(uc_resp_header(&r, "Transfer-Encoding", v, sizeof v), "chunked");
    cr_assert_null(uc_resp_header(&r, "Content-Length", v, sizeof v));
    cr_assert_eq(r.body_len, 40000);
    cr_assert_eq(r.body[39999], 'a' + (char)(39999 % 26));
    uc_response_free(&r);
}

Test(upstream, retry_after_param_sets_the_header)
{
    struct uc_response r = uc_get(uc_port, "/busy?status=429&retry_after=3");
    cr_assert_eq(r.status, 429);
    char v[64];
    cr_assert_str_eq(uc_resp_header(&r, "Retry-After", v, sizeof v), "3");
    uc_response_free(&r);
}

Test(upstream, bad_param_value_gets_400_and_keeps_the_connection)
{
    struct uc_client *c = uc_client_open(uc_port);
    struct uc_response r;
    uc_client_sends(c, "GET /x?status=abc HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert(uc_client_read_response(c, &r, false));
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(r.body, "status") != NULL, "body names the parameter: %s", r.body);
    uc_response_free(&r);
    uc_client_sends(c, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert(uc_client_read_response(c, &r, false));
    cr_assert_eq(r.status, 200);
    uc_response_free(&r);
    uc_client_close(c);
}

Test(upstream, delay_ms_holds_the_answer_without_blocking_other_connections)
{
    struct uc_client *slow = uc_client_open(uc_port);
    double t0 = uc_now_s();
    uc_client_sends(slow, "GET /slow?delay_ms=700 HTTP/1.1\r\nHost: t\r\n\r\n");
    uc_wait_in_flight(1);

    struct uc_response fast = uc_get(uc_port, "/fast");
    cr_assert_eq(fast.status, 200);
    uc_response_free(&fast);
    cr_assert_not(uc_client_readable(slow, 0), "the delayed answer came before the undelayed one");
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.in_flight, 1);

    struct uc_response r;
    cr_assert(uc_client_read_response(slow, &r, false));
    cr_assert_eq(r.status, 200);
    /* A lower bound only: the answer must not come early; how late is not this test's business.
     * 50 ms of slack for libev's cached loop time. */
    cr_assert_geq(uc_now_s() - t0, 0.65);
    uc_response_free(&r);
    uc_client_close(slow);
}

Test(upstream, fail_first_fails_per_idempotency_key)
{
    const char *fmt = "GET /pay?fail_first=2 HTTP/1.1\r\nHost: t\r\nIdempotency-Key: %s\r\n\r\n";
    char raw[256];
    int want[] = {503, 503, 200, 200};
    for (int i = 0; i < 4; i++) {
        snprintf(raw, sizeof raw, fmt, "key-A");
        struct uc_response r = uc_fetch(uc_port, raw);
        cr_assert_eq(r.status, want[i], "attempt %d", i + 1);
        json_t *j = uc_body_json(&r);
        cr_assert_eq(json_integer_value(json_object_get(j, "attempt")), i + 1);
        json_decref(j);
        uc_response_free(&r);
    }
    /* Another key starts its own count. */
    snprintf(raw, sizeof raw, fmt, "key-B");
    struct uc_response r = uc_fetch(uc_port, raw);
    cr_assert_eq(r.status, 503);
    uc_response_free(&r);

    cr_assert_eq(upstream_key_count(uc_up, "key-A"), 4);
    cr_assert_eq(upstream_key_count(uc_up, "key-B"), 1);
    cr_assert_eq(upstream_key_count(uc_up, "key-C"), 0);
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.keys, 2);
    cr_assert_eq(s.max_key_count, 4);
}

Test(upstream, fail_first_without_key_counts_per_target)
{
    struct uc_response r = uc_get(uc_port, "/t1?fail_first=1&fail_status=500&status=202");
    cr_assert_eq(r.status, 500);
    uc_response_free(&r);
    r = uc_get(uc_port, "/t2?fail_first=1&fail_status=500&status=202"); /* another target */
    cr_assert_eq(r.status, 500);
    uc_response_free(&r);
    r = uc_get(uc_port, "/t1?fail_first=1&fail_status=500&status=202");
    cr_assert_eq(r.status, 202);
    uc_response_free(&r);
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.keys, 0, "retry keys from targets are not Idempotency-Keys");
}

/* ---- echo ---- */

Test(upstream, echo_path_describes_the_request)
{
    struct uc_response r = uc_fetch(uc_port, "PUT /echo?a=1&b=two HTTP/1.1\r\nHost: t\r\nX-Trace-ID: abc\r\n"
                                             "X-Multi: 1\r\nx-multi: 2\r\nContent-Length: 11\r\n\r\nhello world");
    cr_assert_eq(r.status, 200);
    json_t *j = uc_body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "method")), "PUT");
    cr_assert_str_eq(json_string_value(json_object_get(j, "path")), "/echo");
    cr_assert_str_eq(json_string_value(json_object_get(j, "query")), "a=1&b=two");
    cr_assert_str_eq(json_string_value(json_object_get(j, "body")), "hello world");
    json_t *h = json_object_get(j, "headers");
    cr_assert_str_eq(json_string_value(json_object_get(h, "x-trace-id")), "abc");
    cr_assert_str_eq(json_string_value(json_object_get(h, "x-multi")), "1, 2");
    cr_assert_str_eq(json_string_value(json_object_get(h, "content-length")), "11");
    json_decref(j);
    uc_response_free(&r);
}

Test(upstream, echo_param_works_on_any_path_with_the_chosen_status)
{
    struct uc_response r = uc_get(uc_port, "/api/v1/thing?echo=1&status=409");
    cr_assert_eq(r.status, 409);
    json_t *j = uc_body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "path")), "/api/v1/thing");
    cr_assert_str_eq(json_string_value(json_object_get(j, "method")), "GET");
    json_decref(j);
    uc_response_free(&r);
}

Test(upstream, echo_sends_a_non_utf8_body_as_base64)
{
    struct uc_response r = uc_fetch(uc_port, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n\xff\xfe\x01");
    json_t *j = uc_body_json(&r);
    cr_assert_null(json_object_get(j, "body"));
    cr_assert_str_eq(json_string_value(json_object_get(j, "body_base64")), "//4B");
    cr_assert_eq(json_integer_value(json_object_get(j, "body_length")), 3);
    json_decref(j);
    uc_response_free(&r);
}

Test(upstream, chunked_request_body_is_decoded)
{
    struct uc_client *c = uc_client_open(uc_port);
    uc_client_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    usleep(20000); /* the rest in a later segment: the body must be joined across reads */
    uc_client_sends(c, "6\r\n world\r\n0\r\n\r\n");
    struct uc_response r;
    cr_assert(uc_client_read_response(c, &r, false));
    json_t *j = uc_body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "body")), "hello world");
    json_decref(j);
    uc_response_free(&r);
    uc_client_close(c);
}

Test(upstream, expect_100_continue_is_answered_before_the_body)
{
    struct uc_client *c = uc_client_open(uc_port);
    uc_client_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    struct uc_response r;
    cr_assert(uc_client_read_response(c, &r, false));
    cr_assert_eq(r.status, 100);
    uc_response_free(&r);
    uc_client_sends(c, "ping");
    cr_assert(uc_client_read_response(c, &r, false));
    cr_assert_eq(r.status, 200);
    json_t *j = uc_body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "body")), "ping");
    json_decref(j);
    uc_response_free(&r);
    uc_client_close(c);
}

/* ---- other methods and statuses ---- */

Test(upstream, head_request_gets_headers_only)
{
    struct uc_client *c = uc_client_open(uc_port);
    uc_client_sends(c, "HEAD /blob?size=500 HTTP/1.1\r\nHost: t\r\n\r\nGET /after?body=z HTTP/1.1\r\nHost: t\r\n\r\n");
    struct uc_response r;
    cr_assert(uc_client_read_response(c, &r, true));
    char v[32];
    cr_assert_str_eq(uc_resp_header(&r, "Content-Length", v, sizeof v), "500");
    uc_response_free(&r);
    /* Had the HEAD answer carried a body, this would read it instead. */
    cr_assert(uc_client_read_response(c, &r, false));
    cr_assert_str_eq(r.body, "z");
    uc_response_free(&r);
    uc_client_close(c);
}

Test(upstream, status_204_has_no_body_or_length)
{
    struct uc_response r = uc_get(uc_port, "/nothing?status=204");
    cr_assert_eq(r.status, 204);
    char v[32];
    cr_assert_null(uc_resp_header(&r, "Content-Length", v, sizeof v));
    uc_response_free(&r);
}

/* ---- counters ---- */

Test(upstream, stats_endpoint_reports_counters_and_is_not_counted)
{
    struct uc_response r = uc_fetch(uc_port, "GET /a HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k1\r\n\r\n");
    uc_response_free(&r);
    r = uc_fetch(uc_port, "GET /b HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k1\r\n\r\n");
    uc_response_free(&r);
    r = uc_get(uc_port, "/_stats");
    cr_assert_eq(r.status, 200);
    json_t *j = uc_body_json(&r);
    cr_assert_eq(json_integer_value(json_object_get(j, "requests")), 2);
    cr_assert_eq(json_integer_value(json_object_get(j, "in_flight")), 0);
    cr_assert_eq(json_integer_value(json_object_get(j, "max_in_flight")), 1);
    cr_assert_eq(json_integer_value(json_object_get(j, "keys")), 1);
    cr_assert_eq(json_integer_value(json_object_get(j, "max_key_count")), 2);
    json_decref(j);
    uc_response_free(&r);
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.requests, 2, "GET /_stats is not counted");
}

Test(upstream, reset_endpoint_clears_counters_and_keys)
{
    struct uc_response r = uc_fetch(uc_port, "GET /a?fail_first=1 HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k\r\n\r\n");
    cr_assert_eq(r.status, 503);
    uc_response_free(&r);
    r = uc_fetch(uc_port, "POST /_reset HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    cr_assert_eq(r.status, 200);
    uc_response_free(&r);
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.requests, 0);
    cr_assert_eq(s.keys, 0);
    cr_assert_eq(s.max_key_count, 0);
    cr_assert_eq(upstream_key_count(uc_up, "k"), 0);
    /* fail_first starts over too. */
    r = uc_fetch(uc_port, "GET /a?fail_first=1 HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k\r\n\r\n");
    cr_assert_eq(r.status, 503);
    uc_response_free(&r);
}

Test(upstream, reset_api_keeps_in_flight_and_restarts_max_from_it)
{
    struct uc_client *slow = uc_client_open(uc_port);
    uc_client_sends(slow, "GET /slow?delay_ms=300 HTTP/1.1\r\nHost: t\r\n\r\n");
    uc_wait_in_flight(1);
    struct uc_response r = uc_get(uc_port, "/fast");
    uc_response_free(&r);
    upstream_reset_stats(uc_up);
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.requests, 0);
    cr_assert_eq(s.in_flight, 1);
    cr_assert_eq(s.max_in_flight, 1);
    cr_assert(uc_client_read_response(slow, &r, false));
    uc_response_free(&r);
    uc_client_close(slow);
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.in_flight, 0);
}

Test(upstream, control_paths_refuse_other_methods)
{
    struct uc_response r = uc_get(uc_port, "/_reset");
    cr_assert_eq(r.status, 405);
    uc_response_free(&r);
    r = uc_fetch(uc_port, "DELETE /_stats HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert_eq(r.status, 405);
    uc_response_free(&r);
}

/* ---- lifecycle ---- */

Test(upstream, two_upstreams_keep_separate_counters)
{
    upstream *other = upstream_start(NULL);
    cr_assert_not_null(other);
    cr_assert_neq(upstream_port(other), uc_port);
    struct uc_response r = uc_get(upstream_port(other), "/x");
    uc_response_free(&r);
    r = uc_get(upstream_port(other), "/y");
    uc_response_free(&r);
    upstream_stats s;
    upstream_get_stats(other, &s);
    cr_assert_eq(s.requests, 2);
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.requests, 0);
    upstream_stop(other);
}

Test(upstream, stop_with_a_request_waiting_frees_everything)
{
    struct uc_client *c = uc_client_open(uc_port);
    uc_client_sends(c, "GET /forever?delay_ms=600000 HTTP/1.1\r\nHost: t\r\n\r\nGET /partial HTTP/1.1\r\n");
    uc_wait_in_flight(1);
    upstream_stop(uc_up); /* LeakSanitizer checks that the timer, request and connection are freed */
    uc_up = upstream_start(NULL);
    cr_assert_not_null(uc_up);
    cr_assert(uc_client_sees_close(c));
    uc_client_close(c);
}

Test(upstream, start_refuses_a_bad_address_and_a_taken_port)
{
    errno = 0;
    cr_assert_null(upstream_start(&(upstream_config){.host = "not-an-address"}));
    cr_assert_eq(errno, EINVAL);
    cr_assert_null(upstream_start(&(upstream_config){.port = uc_port}));
    cr_assert_eq(errno, EADDRINUSE);
}
