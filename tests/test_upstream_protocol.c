/* The test upstream (tools/upstream) driven over raw TCP, so pipelining, half-closes and
 * malformed requests can be sent exactly as written: concurrent connections, keep-alive,
 * pipelining and its read-ahead limit, closes, and malformed and oversized requests. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "upstream.h"
#include "upstream_client.h"

TestSuite(upstream, .init = uc_start_upstream, .fini = uc_stop_upstream, .timeout = 60);

/* ---- concurrency and connections ---- */

Test(upstream, max_in_flight_counts_concurrent_delayed_requests)
{
    enum { N = 20 };
    struct uc_client *c[N];
    for (int i = 0; i < N; i++) {
        c[i] = uc_client_open(uc_port);
        uc_client_sends(c[i], "GET /wait?delay_ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    uc_wait_in_flight(N); /* all held at once: none is answered before its 1.5 s are up */
    for (int i = 0; i < N; i++) {
        struct uc_response r;
        cr_assert(uc_client_read_response(c[i], &r, false));
        cr_assert_eq(r.status, 200);
        uc_response_free(&r);
        uc_client_close(c[i]);
    }
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.requests, N);
    cr_assert_eq(s.max_in_flight, N);
    cr_assert_eq(s.in_flight, 0);
}

Test(upstream, hundreds_of_concurrent_connections_are_served)
{
    enum { N = 300 };
    struct uc_client **c = calloc(N, sizeof *c);
    char raw[128];
    for (int i = 0; i < N; i++) {
        c[i] = uc_client_open(uc_port);
        snprintf(raw, sizeof raw, "GET /conn/%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
        uc_client_sends(c[i], raw);
    }
    for (int i = 0; i < N; i++) {
        struct uc_response r;
        cr_assert(uc_client_read_response(c[i], &r, false), "connection %d", i);
        cr_assert_eq(r.status, 200);
        snprintf(raw, sizeof raw, "\"path\":\"/conn/%d\"", i);
        cr_assert(strstr(r.body, raw) != NULL, "connection %d got %s", i, r.body);
        uc_response_free(&r);
        uc_client_close(c[i]);
    }
    free(c);
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.connections, N);
    cr_assert_eq(s.requests, N);
}

Test(upstream, keep_alive_serves_many_requests_on_one_connection)
{
    struct uc_client *c = uc_client_open(uc_port);
    for (int i = 0; i < 5; i++) {
        uc_client_sends(c, "GET /again HTTP/1.1\r\nHost: t\r\n\r\n");
        struct uc_response r;
        cr_assert(uc_client_read_response(c, &r, false), "request %d", i);
        cr_assert_eq(r.status, 200);
        char v[32];
        cr_assert_null(uc_resp_header(&r, "Connection", v, sizeof v));
        uc_response_free(&r);
    }
    uc_client_close(c);
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.connections, 1);
    cr_assert_eq(s.requests, 5);
}

Test(upstream, pipelined_requests_are_answered_in_order)
{
    struct uc_client *c = uc_client_open(uc_port);
    /* The first is the slowest: answers must still leave in request order. */
    uc_client_sends(c, "GET /p?body=one&delay_ms=200 HTTP/1.1\r\nHost: t\r\n\r\n"
                       "POST /p?body=two HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz"
                       "GET /p?body=three&delay_ms=50 HTTP/1.1\r\nHost: t\r\n\r\n"
                       "GET /p?body=four HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *want[] = {"one", "two", "three", "four"};
    for (int i = 0; i < 4; i++) {
        struct uc_response r;
        cr_assert(uc_client_read_response(c, &r, false), "response %d", i);
        cr_assert_str_eq(r.body, want[i]);
        uc_response_free(&r);
    }
    uc_client_close(c);
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.requests, 4);
    cr_assert_eq(s.max_in_flight, 4, "all four were received before the first was answered");
}

Test(upstream, pipelining_past_the_read_ahead_limit_pauses_and_resumes)
{
    enum { N = 300 };
    struct uc_client *c = uc_client_open(uc_port);
    char *raw = malloc(N * 64);
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len += (size_t)sprintf(raw + len, "GET /q/%d%s HTTP/1.1\r\n\r\n", i, i ? "" : "?delay_ms=100");
    uc_client_send(c, raw, len);
    free(raw);
    char want[32];
    for (int i = 0; i < N; i++) {
        struct uc_response r;
        cr_assert(uc_client_read_response(c, &r, false), "response %d", i);
        snprintf(want, sizeof want, "\"path\":\"/q/%d\"", i);
        cr_assert(strstr(r.body, want) != NULL, "response %d is %s", i, r.body);
        uc_response_free(&r);
    }
    uc_client_close(c);
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.requests, N);
    cr_assert_eq(s.max_in_flight, 128, "read-ahead is bounded at 128 requests per connection");
}

Test(upstream, big_answers_queued_behind_a_delayed_one_are_all_delivered)
{
    enum { N = 6, SIZE = 1000000 };
    struct uc_client *c = uc_client_open(uc_port);
    uc_client_sends(c, "GET /big?size=1000000&delay_ms=100 HTTP/1.1\r\n\r\n");
    for (int i = 1; i < N; i++)
        uc_client_sends(c, "GET /big?size=1000000 HTTP/1.1\r\n\r\n");
    for (int i = 0; i < N; i++) {
        struct uc_response r;
        cr_assert(uc_client_read_response(c, &r, false), "response %d", i);
        cr_assert_eq(r.body_len, SIZE);
        cr_assert_eq(r.body[SIZE - 1], 'a' + (char)((SIZE - 1) % 26));
        uc_response_free(&r);
    }
    uc_client_close(c);
}

Test(upstream, connection_close_is_honoured)
{
    struct uc_client *c = uc_client_open(uc_port);
    uc_client_sends(c, "GET /bye HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                       "GET /never HTTP/1.1\r\nHost: t\r\n\r\n");
    struct uc_response r;
    cr_assert(uc_client_read_response(c, &r, false));
    char v[32];
    cr_assert_str_eq(uc_resp_header(&r, "Connection", v, sizeof v), "close");
    uc_response_free(&r);
    cr_assert(uc_client_sees_close(c), "nothing after a Connection: close answer");
    uc_client_close(c);
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.requests, 1);
}

Test(upstream, http10_closes_unless_keep_alive_is_asked)
{
    struct uc_client *c = uc_client_open(uc_port);
    uc_client_sends(c, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    struct uc_response r;
    cr_assert(uc_client_read_response(c, &r, false));
    char v[32];
    cr_assert_str_eq(uc_resp_header(&r, "Connection", v, sizeof v), "keep-alive");
    uc_response_free(&r);
    uc_client_sends(c, "GET /old?chunked=1 HTTP/1.0\r\n\r\n");
    cr_assert(uc_client_read_response(c, &r, false));
    cr_assert_not_null(uc_resp_header(&r, "Content-Length", v, sizeof v), "no chunking for HTTP/1.0");
    uc_response_free(&r);
    cr_assert(uc_client_sees_close(c));
    uc_client_close(c);
}

Test(upstream, half_closed_client_still_gets_its_answer)
{
    struct uc_client *c = uc_client_open(uc_port);
    uc_client_sends(c, "GET /half?delay_ms=100 HTTP/1.1\r\nHost: t\r\n\r\n");
    shutdown(c->fd, SHUT_WR);
    struct uc_response r;
    cr_assert(uc_client_read_response(c, &r, false));
    cr_assert_eq(r.status, 200);
    uc_response_free(&r);
    cr_assert(uc_client_sees_close(c));
    uc_client_close(c);
}

Test(upstream, request_cut_short_by_eof_is_dropped_after_earlier_answers)
{
    struct uc_client *c = uc_client_open(uc_port);
    uc_client_sends(c, "GET /whole?delay_ms=50 HTTP/1.1\r\nHost: t\r\n\r\nGET /partial HTTP/1.1\r\nHost:");
    shutdown(c->fd, SHUT_WR);
    struct uc_response r;
    cr_assert(uc_client_read_response(c, &r, false));
    cr_assert_eq(r.status, 200);
    uc_response_free(&r);
    cr_assert(uc_client_sees_close(c));
    uc_client_close(c);
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.requests, 1);
    cr_assert_eq(s.bad_requests, 0);
}

Test(upstream, drop_closes_without_answering_after_earlier_answers)
{
    struct uc_client *c = uc_client_open(uc_port);
    uc_client_sends(c, "GET /first HTTP/1.1\r\nHost: t\r\n\r\n"
                       "GET /x?drop=1&delay_ms=50 HTTP/1.1\r\nHost: t\r\n\r\n");
    struct uc_response r;
    cr_assert(uc_client_read_response(c, &r, false));
    cr_assert_eq(r.status, 200);
    uc_response_free(&r);
    cr_assert(uc_client_sees_close(c), "the dropped request must get no answer");
    uc_client_close(c);
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.requests, 2);
    cr_assert_eq(s.in_flight, 0);
}

/* ---- malformed and oversized requests ---- */

Test(upstream, garbage_gets_400_and_close)
{
    struct uc_client *c = uc_client_open(uc_port);
    uc_client_sends(c, "HELLO\x01 there\r\n\r\n");
    struct uc_response r;
    cr_assert(uc_client_read_response(c, &r, false));
    cr_assert_eq(r.status, 400);
    char v[32];
    cr_assert_str_eq(uc_resp_header(&r, "Connection", v, sizeof v), "close");
    uc_response_free(&r);
    cr_assert(uc_client_sees_close(c));
    uc_client_close(c);
    upstream_stats s;
    upstream_get_stats(uc_up, &s);
    cr_assert_eq(s.bad_requests, 1);
    cr_assert_eq(s.requests, 0);
}

Test(upstream, bad_request_after_a_good_one_is_answered_in_turn)
{
    struct uc_client *c = uc_client_open(uc_port);
    uc_client_sends(c, "GET /ok?delay_ms=100 HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nContent-Length: x\r\n\r\n");
    struct uc_response r;
    cr_assert(uc_client_read_response(c, &r, false));
    cr_assert_eq(r.status, 200);
    uc_response_free(&r);
    cr_assert(uc_client_read_response(c, &r, false));
    cr_assert_eq(r.status, 400);
    uc_response_free(&r);
    cr_assert(uc_client_sees_close(c));
    uc_client_close(c);
}

Test(upstream, oversized_head_gets_431)
{
    size_t n = 70 * 1024;
    char *raw = malloc(n + 64);
    int k = snprintf(raw, n + 64, "GET / HTTP/1.1\r\nX-Big: ");
    memset(raw + k, 'a', n);
    strcpy(raw + k + n, "\r\n\r\n");
    struct uc_response r = uc_fetch(uc_port, raw);
    free(raw);
    cr_assert_eq(r.status, 431);
    uc_response_free(&r);
}

Test(upstream, oversized_body_gets_413_without_reading_it)
{
    struct uc_client *c = uc_client_open(uc_port);
    uc_client_sends(c, "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 9437184\r\n\r\n");
    struct uc_response r;
    cr_assert(uc_client_read_response(c, &r, false));
    cr_assert_eq(r.status, 413);
    uc_response_free(&r);
    cr_assert(uc_client_sees_close(c));
    uc_client_close(c);
}

Test(upstream, oversized_chunked_body_gets_413)
{
    upstream_stop(uc_up);
    uc_up = upstream_start(&(upstream_config){.max_body_bytes = 10});
    cr_assert_not_null(uc_up);
    struct uc_response r = uc_fetch(upstream_port(uc_up),
                                    "POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n");
    cr_assert_eq(r.status, 413);
    uc_response_free(&r);
}
