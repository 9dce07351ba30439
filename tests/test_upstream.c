/* The test upstream (tools/upstream) driven over raw TCP, so pipelining, half-closes and
 * malformed requests can be sent exactly as written. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "upstream.h"

/* ---- a minimal HTTP/1.1 client: enough to check every byte the upstream sends ---- */

struct client {
    int fd;
    char *buf;
    size_t len, cap;
};

struct response {
    int status;
    char *head; /* status line and headers, NUL-terminated */
    char *body; /* decoded (de-chunked), NUL-terminated */
    size_t body_len;
};

static struct client *client_open(int port)
{
    struct client *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(c->fd, 0);
    /* A hung upstream fails the test instead of hanging it. */
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0, "connect: %s", strerror(errno));
    return c;
}

static void client_close(struct client *c)
{
    close(c->fd);
    free(c->buf);
    free(c);
}

static void client_send(struct client *c, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t k = send(c->fd, data, n, MSG_NOSIGNAL);
        cr_assert_gt(k, 0, "send: %s", strerror(errno));
        data += k;
        n -= (size_t)k;
    }
}

static void client_sends(struct client *c, const char *s)
{
    client_send(c, s, strlen(s));
}

/* Reads until at least n bytes are buffered; false on EOF or a connection error first. */
static bool client_need(struct client *c, size_t n)
{
    while (c->len < n) {
        if (c->cap - c->len < 65536) {
            c->cap = c->cap * 2 + 65536;
            c->buf = realloc(c->buf, c->cap + 1);
            cr_assert_not_null(c->buf);
        }
        ssize_t k = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        cr_assert(k >= 0 || errno == ECONNRESET, "recv: %s", strerror(errno));
        if (k <= 0)
            return false;
        c->len += (size_t)k;
    }
    return true;
}

static char *client_take(struct client *c, size_t n)
{
    char *s = malloc(n + 1);
    cr_assert_not_null(s);
    memcpy(s, c->buf, n);
    s[n] = '\0';
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    return s;
}

/* Index just past the first occurrence of pat in the buffer, reading more until it appears. */
static bool client_find(struct client *c, const char *pat, size_t *end)
{
    size_t plen = strlen(pat);
    for (;;) {
        for (size_t i = 0; i + plen <= c->len; i++) {
            if (memcmp(c->buf + i, pat, plen) == 0) {
                *end = i + plen;
                return true;
            }
        }
        if (!client_need(c, c->len + 1))
            return false;
    }
}

/* The value of header name in r->head (copied into out), or NULL. */
static const char *resp_header(const struct response *r, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    for (const char *line = strstr(r->head, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        const char *s = line + 2;
        if (strncasecmp(s, name, n) == 0 && s[n] == ':') {
            s += n + 1;
            while (*s == ' ')
                s++;
            size_t len = strcspn(s, "\r");
            if (len >= outlen)
                len = outlen - 1;
            memcpy(out, s, len);
            out[len] = '\0';
            return out;
        }
    }
    return NULL;
}

/* Reads one response. false when the connection ended before its first byte. no_body is for
 * answers to HEAD. */
static bool client_read_response(struct client *c, struct response *r, bool no_body)
{
    size_t end;
    *r = (struct response){0};
    if (!client_need(c, 1))
        return false;
    cr_assert(client_find(c, "\r\n\r\n", &end), "connection ended inside a response head");
    r->head = client_take(c, end);
    cr_assert_eq(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1, "bad status line: %s", r->head);
    char v[64];
    if (no_body || r->status == 204 || r->status == 304 || r->status < 200) {
        r->body = client_take(c, 0);
    } else if (resp_header(r, "Transfer-Encoding", v, sizeof v)) {
        cr_assert_str_eq(v, "chunked");
        char *body = NULL;
        size_t len = 0;
        for (;;) {
            cr_assert(client_find(c, "\r\n", &end), "connection ended inside a chunk size");
            char *line = client_take(c, end);
            size_t n = strtoul(line, NULL, 16);
            free(line);
            if (n == 0)
                break;
            cr_assert(client_need(c, n + 2), "connection ended inside a chunk");
            cr_assert(c->buf[n] == '\r' && c->buf[n + 1] == '\n', "chunk not followed by CRLF");
            body = realloc(body, len + n + 1);
            memcpy(body + len, c->buf, n);
            len += n;
            free(client_take(c, n + 2));
        }
        cr_assert(client_need(c, 2) && c->buf[0] == '\r' && c->buf[1] == '\n', "no final CRLF");
        free(client_take(c, 2));
        r->body = body ? body : malloc(1);
        r->body[len] = '\0';
        r->body_len = len;
    } else {
        cr_assert_not_null(resp_header(r, "Content-Length", v, sizeof v), "no length: %s", r->head);
        size_t n = strtoul(v, NULL, 10);
        cr_assert(client_need(c, n), "connection ended inside a body");
        r->body = client_take(c, n);
        r->body_len = n;
    }
    return true;
}

static void response_free(struct response *r)
{
    free(r->head);
    free(r->body);
}

/* True when the server closed the connection (EOF or reset) without sending more. */
static bool client_sees_close(struct client *c)
{
    return c->len == 0 && !client_need(c, 1);
}

/* Readable within ms milliseconds? */
static bool client_readable(struct client *c, int ms)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    return c->len > 0 || poll(&pfd, 1, ms) == 1;
}

/* One request on a fresh connection, one response back. */
static struct response fetch(int port, const char *raw)
{
    struct client *c = client_open(port);
    client_sends(c, raw);
    struct response r;
    cr_assert(client_read_response(c, &r, false), "no response to: %s", raw);
    client_close(c);
    return r;
}

static struct response get(int port, const char *target)
{
    char raw[1024];
    snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", target);
    return fetch(port, raw);
}

static json_t *body_json(const struct response *r)
{
    json_error_t err;
    json_t *j = json_loadb(r->body, r->body_len, 0, &err);
    cr_assert_not_null(j, "body is not JSON (%s): %s", err.text, r->body);
    return j;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- fixture: one upstream per test (each test runs in its own process) ---- */

static upstream *up;
static int port;

/* Requests on different connections are read in no promised order: wait (up to 5 s) until the
 * upstream holds n received, unanswered requests. */
static void wait_in_flight(uint64_t n)
{
    upstream_stats s;
    for (int i = 0; i < 1000; i++) {
        upstream_get_stats(up, &s);
        if (s.in_flight == n)
            return;
        usleep(5000);
    }
    cr_assert_fail("in_flight stayed %llu, not %llu", (unsigned long long)s.in_flight,
                   (unsigned long long)n);
}

static void start_upstream(void)
{
    up = upstream_start(NULL);
    cr_assert_not_null(up, "upstream_start: %s", strerror(errno));
    port = upstream_port(up);
    cr_assert_gt(port, 0);
}

static void stop_upstream(void)
{
    upstream_stop(up);
    up = NULL;
}

TestSuite(upstream, .init = start_upstream, .fini = stop_upstream, .timeout = 60);

/* ---- answers chosen by the query string ---- */

Test(upstream, default_answer_is_json_naming_method_and_path)
{
    struct response r = fetch(port, "POST /users/7 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}");
    cr_assert_eq(r.status, 200);
    char v[64];
    cr_assert_str_eq(resp_header(&r, "Content-Type", v, sizeof v), "application/json");
    json_t *j = body_json(&r);
    cr_assert(json_is_true(json_object_get(j, "ok")));
    cr_assert_str_eq(json_string_value(json_object_get(j, "path")), "/users/7");
    cr_assert_str_eq(json_string_value(json_object_get(j, "method")), "POST");
    json_decref(j);
    response_free(&r);
}

Test(upstream, status_param_sets_the_status)
{
    struct response r = get(port, "/items?status=404");
    cr_assert_eq(r.status, 404);
    json_t *j = body_json(&r);
    cr_assert(json_is_false(json_object_get(j, "ok")));
    cr_assert_eq(json_integer_value(json_object_get(j, "status")), 404);
    json_decref(j);
    response_free(&r);
}

Test(upstream, body_param_is_sent_url_decoded_as_text)
{
    struct response r = get(port, "/x?body=hello%2C+world%21&status=201");
    cr_assert_eq(r.status, 201);
    char v[64];
    cr_assert_str_eq(resp_header(&r, "Content-Type", v, sizeof v), "text/plain");
    cr_assert_str_eq(r.body, "hello, world!");
    response_free(&r);
}

Test(upstream, size_param_sends_that_many_pattern_bytes)
{
    struct response r = get(port, "/blob?size=100000");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 100000);
    for (size_t i = 0; i < r.body_len; i++)
        cr_assert_eq(r.body[i], 'a' + (char)(i % 26), "byte %zu", i);
    response_free(&r);
}

Test(upstream, chunked_param_sends_a_chunked_body)
{
    struct response r = get(port, "/blob?size=40000&chunked=1");
    char v[64];
    cr_assert_str_eq(resp_header(&r, "Transfer-Encoding", v, sizeof v), "chunked");
    cr_assert_null(resp_header(&r, "Content-Length", v, sizeof v));
    cr_assert_eq(r.body_len, 40000);
    cr_assert_eq(r.body[39999], 'a' + (char)(39999 % 26));
    response_free(&r);
}

Test(upstream, retry_after_param_sets_the_header)
{
    struct response r = get(port, "/busy?status=429&retry_after=3");
    cr_assert_eq(r.status, 429);
    char v[64];
    cr_assert_str_eq(resp_header(&r, "Retry-After", v, sizeof v), "3");
    response_free(&r);
}

Test(upstream, bad_param_value_gets_400_and_keeps_the_connection)
{
    struct client *c = client_open(port);
    struct response r;
    client_sends(c, "GET /x?status=abc HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert(client_read_response(c, &r, false));
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(r.body, "status") != NULL, "body names the parameter: %s", r.body);
    response_free(&r);
    client_sends(c, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert(client_read_response(c, &r, false));
    cr_assert_eq(r.status, 200);
    response_free(&r);
    client_close(c);
}

Test(upstream, delay_ms_holds_the_answer_without_blocking_other_connections)
{
    struct client *slow = client_open(port);
    double t0 = now_s();
    client_sends(slow, "GET /slow?delay_ms=700 HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_in_flight(1);

    struct response fast = get(port, "/fast");
    cr_assert_eq(fast.status, 200);
    response_free(&fast);
    cr_assert_not(client_readable(slow, 0), "the delayed answer came before the undelayed one");
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.in_flight, 1);

    struct response r;
    cr_assert(client_read_response(slow, &r, false));
    cr_assert_eq(r.status, 200);
    /* A lower bound only: the answer must not come early; how late is not this test's business.
     * 50 ms of slack for libev's cached loop time. */
    cr_assert_geq(now_s() - t0, 0.65);
    response_free(&r);
    client_close(slow);
}

Test(upstream, fail_first_fails_per_idempotency_key)
{
    const char *fmt = "GET /pay?fail_first=2 HTTP/1.1\r\nHost: t\r\nIdempotency-Key: %s\r\n\r\n";
    char raw[256];
    int want[] = {503, 503, 200, 200};
    for (int i = 0; i < 4; i++) {
        snprintf(raw, sizeof raw, fmt, "key-A");
        struct response r = fetch(port, raw);
        cr_assert_eq(r.status, want[i], "attempt %d", i + 1);
        json_t *j = body_json(&r);
        cr_assert_eq(json_integer_value(json_object_get(j, "attempt")), i + 1);
        json_decref(j);
        response_free(&r);
    }
    /* Another key starts its own count. */
    snprintf(raw, sizeof raw, fmt, "key-B");
    struct response r = fetch(port, raw);
    cr_assert_eq(r.status, 503);
    response_free(&r);

    cr_assert_eq(upstream_key_count(up, "key-A"), 4);
    cr_assert_eq(upstream_key_count(up, "key-B"), 1);
    cr_assert_eq(upstream_key_count(up, "key-C"), 0);
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.keys, 2);
    cr_assert_eq(s.max_key_count, 4);
}

Test(upstream, fail_first_without_key_counts_per_target)
{
    struct response r = get(port, "/t1?fail_first=1&fail_status=500&status=202");
    cr_assert_eq(r.status, 500);
    response_free(&r);
    r = get(port, "/t2?fail_first=1&fail_status=500&status=202"); /* another target */
    cr_assert_eq(r.status, 500);
    response_free(&r);
    r = get(port, "/t1?fail_first=1&fail_status=500&status=202");
    cr_assert_eq(r.status, 202);
    response_free(&r);
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.keys, 0, "retry keys from targets are not Idempotency-Keys");
}

/* ---- echo ---- */

Test(upstream, echo_path_describes_the_request)
{
    struct response r = fetch(port, "PUT /echo?a=1&b=two HTTP/1.1\r\nHost: t\r\nX-Trace-ID: abc\r\n"
                                    "X-Multi: 1\r\nx-multi: 2\r\nContent-Length: 11\r\n\r\nhello world");
    cr_assert_eq(r.status, 200);
    json_t *j = body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "method")), "PUT");
    cr_assert_str_eq(json_string_value(json_object_get(j, "path")), "/echo");
    cr_assert_str_eq(json_string_value(json_object_get(j, "query")), "a=1&b=two");
    cr_assert_str_eq(json_string_value(json_object_get(j, "body")), "hello world");
    json_t *h = json_object_get(j, "headers");
    cr_assert_str_eq(json_string_value(json_object_get(h, "x-trace-id")), "abc");
    cr_assert_str_eq(json_string_value(json_object_get(h, "x-multi")), "1, 2");
    cr_assert_str_eq(json_string_value(json_object_get(h, "content-length")), "11");
    json_decref(j);
    response_free(&r);
}

Test(upstream, echo_param_works_on_any_path_with_the_chosen_status)
{
    struct response r = get(port, "/api/v1/thing?echo=1&status=409");
    cr_assert_eq(r.status, 409);
    json_t *j = body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "path")), "/api/v1/thing");
    cr_assert_str_eq(json_string_value(json_object_get(j, "method")), "GET");
    json_decref(j);
    response_free(&r);
}

Test(upstream, echo_sends_a_non_utf8_body_as_base64)
{
    struct response r = fetch(port, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n\xff\xfe\x01");
    json_t *j = body_json(&r);
    cr_assert_null(json_object_get(j, "body"));
    cr_assert_str_eq(json_string_value(json_object_get(j, "body_base64")), "//4B");
    cr_assert_eq(json_integer_value(json_object_get(j, "body_length")), 3);
    json_decref(j);
    response_free(&r);
}

Test(upstream, chunked_request_body_is_decoded)
{
    struct client *c = client_open(port);
    client_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    usleep(20000); /* the rest in a later segment: the body must be joined across reads */
    client_sends(c, "6\r\n world\r\n0\r\n\r\n");
    struct response r;
    cr_assert(client_read_response(c, &r, false));
    json_t *j = body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "body")), "hello world");
    json_decref(j);
    response_free(&r);
    client_close(c);
}

Test(upstream, expect_100_continue_is_answered_before_the_body)
{
    struct client *c = client_open(port);
    client_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    struct response r;
    cr_assert(client_read_response(c, &r, false));
    cr_assert_eq(r.status, 100);
    response_free(&r);
    client_sends(c, "ping");
    cr_assert(client_read_response(c, &r, false));
    cr_assert_eq(r.status, 200);
    json_t *j = body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "body")), "ping");
    json_decref(j);
    response_free(&r);
    client_close(c);
}

/* ---- concurrency and connections ---- */

Test(upstream, max_in_flight_counts_concurrent_delayed_requests)
{
    enum { N = 20 };
    struct client *c[N];
    for (int i = 0; i < N; i++) {
        c[i] = client_open(port);
        client_sends(c[i], "GET /wait?delay_ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    wait_in_flight(N); /* all held at once: none is answered before its 1.5 s are up */
    for (int i = 0; i < N; i++) {
        struct response r;
        cr_assert(client_read_response(c[i], &r, false));
        cr_assert_eq(r.status, 200);
        response_free(&r);
        client_close(c[i]);
    }
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.requests, N);
    cr_assert_eq(s.max_in_flight, N);
    cr_assert_eq(s.in_flight, 0);
}

Test(upstream, hundreds_of_concurrent_connections_are_served)
{
    enum { N = 300 };
    struct client **c = calloc(N, sizeof *c);
    char raw[128];
    for (int i = 0; i < N; i++) {
        c[i] = client_open(port);
        snprintf(raw, sizeof raw, "GET /conn/%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
        client_sends(c[i], raw);
    }
    for (int i = 0; i < N; i++) {
        struct response r;
        cr_assert(client_read_response(c[i], &r, false), "connection %d", i);
        cr_assert_eq(r.status, 200);
        snprintf(raw, sizeof raw, "\"path\":\"/conn/%d\"", i);
        cr_assert(strstr(r.body, raw) != NULL, "connection %d got %s", i, r.body);
        response_free(&r);
        client_close(c[i]);
    }
    free(c);
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.connections, N);
    cr_assert_eq(s.requests, N);
}

Test(upstream, keep_alive_serves_many_requests_on_one_connection)
{
    struct client *c = client_open(port);
    for (int i = 0; i < 5; i++) {
        client_sends(c, "GET /again HTTP/1.1\r\nHost: t\r\n\r\n");
        struct response r;
        cr_assert(client_read_response(c, &r, false), "request %d", i);
        cr_assert_eq(r.status, 200);
        char v[32];
        cr_assert_null(resp_header(&r, "Connection", v, sizeof v));
        response_free(&r);
    }
    client_close(c);
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.connections, 1);
    cr_assert_eq(s.requests, 5);
}

Test(upstream, pipelined_requests_are_answered_in_order)
{
    struct client *c = client_open(port);
    /* The first is the slowest: answers must still leave in request order. */
    client_sends(c, "GET /p?body=one&delay_ms=200 HTTP/1.1\r\nHost: t\r\n\r\n"
                    "POST /p?body=two HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz"
                    "GET /p?body=three&delay_ms=50 HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /p?body=four HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *want[] = {"one", "two", "three", "four"};
    for (int i = 0; i < 4; i++) {
        struct response r;
        cr_assert(client_read_response(c, &r, false), "response %d", i);
        cr_assert_str_eq(r.body, want[i]);
        response_free(&r);
    }
    client_close(c);
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.requests, 4);
    cr_assert_eq(s.max_in_flight, 4, "all four were received before the first was answered");
}

Test(upstream, pipelining_past_the_read_ahead_limit_pauses_and_resumes)
{
    enum { N = 300 };
    struct client *c = client_open(port);
    char *raw = malloc(N * 64);
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len += (size_t)sprintf(raw + len, "GET /q/%d%s HTTP/1.1\r\n\r\n", i, i ? "" : "?delay_ms=100");
    client_send(c, raw, len);
    free(raw);
    char want[32];
    for (int i = 0; i < N; i++) {
        struct response r;
        cr_assert(client_read_response(c, &r, false), "response %d", i);
        snprintf(want, sizeof want, "\"path\":\"/q/%d\"", i);
        cr_assert(strstr(r.body, want) != NULL, "response %d is %s", i, r.body);
        response_free(&r);
    }
    client_close(c);
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.requests, N);
    cr_assert_eq(s.max_in_flight, 128, "read-ahead is bounded at 128 requests per connection");
}

Test(upstream, big_answers_queued_behind_a_delayed_one_are_all_delivered)
{
    enum { N = 6, SIZE = 1000000 };
    struct client *c = client_open(port);
    client_sends(c, "GET /big?size=1000000&delay_ms=100 HTTP/1.1\r\n\r\n");
    for (int i = 1; i < N; i++)
        client_sends(c, "GET /big?size=1000000 HTTP/1.1\r\n\r\n");
    for (int i = 0; i < N; i++) {
        struct response r;
        cr_assert(client_read_response(c, &r, false), "response %d", i);
        cr_assert_eq(r.body_len, SIZE);
        cr_assert_eq(r.body[SIZE - 1], 'a' + (char)((SIZE - 1) % 26));
        response_free(&r);
    }
    client_close(c);
}

Test(upstream, connection_close_is_honoured)
{
    struct client *c = client_open(port);
    client_sends(c, "GET /bye HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                    "GET /never HTTP/1.1\r\nHost: t\r\n\r\n");
    struct response r;
    cr_assert(client_read_response(c, &r, false));
    char v[32];
    cr_assert_str_eq(resp_header(&r, "Connection", v, sizeof v), "close");
    response_free(&r);
    cr_assert(client_sees_close(c), "nothing after a Connection: close answer");
    client_close(c);
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.requests, 1);
}

Test(upstream, http10_closes_unless_keep_alive_is_asked)
{
    struct client *c = client_open(port);
    client_sends(c, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    struct response r;
    cr_assert(client_read_response(c, &r, false));
    char v[32];
    cr_assert_str_eq(resp_header(&r, "Connection", v, sizeof v), "keep-alive");
    response_free(&r);
    client_sends(c, "GET /old?chunked=1 HTTP/1.0\r\n\r\n");
    cr_assert(client_read_response(c, &r, false));
    cr_assert_not_null(resp_header(&r, "Content-Length", v, sizeof v), "no chunking for HTTP/1.0");
    response_free(&r);
    cr_assert(client_sees_close(c));
    client_close(c);
}

Test(upstream, half_closed_client_still_gets_its_answer)
{
    struct client *c = client_open(port);
    client_sends(c, "GET /half?delay_ms=100 HTTP/1.1\r\nHost: t\r\n\r\n");
    shutdown(c->fd, SHUT_WR);
    struct response r;
    cr_assert(client_read_response(c, &r, false));
    cr_assert_eq(r.status, 200);
    response_free(&r);
    cr_assert(client_sees_close(c));
    client_close(c);
}

Test(upstream, request_cut_short_by_eof_is_dropped_after_earlier_answers)
{
    struct client *c = client_open(port);
    client_sends(c, "GET /whole?delay_ms=50 HTTP/1.1\r\nHost: t\r\n\r\nGET /partial HTTP/1.1\r\nHost:");
    shutdown(c->fd, SHUT_WR);
    struct response r;
    cr_assert(client_read_response(c, &r, false));
    cr_assert_eq(r.status, 200);
    response_free(&r);
    cr_assert(client_sees_close(c));
    client_close(c);
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.requests, 1);
    cr_assert_eq(s.bad_requests, 0);
}

Test(upstream, drop_closes_without_answering_after_earlier_answers)
{
    struct client *c = client_open(port);
    client_sends(c, "GET /first HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /x?drop=1&delay_ms=50 HTTP/1.1\r\nHost: t\r\n\r\n");
    struct response r;
    cr_assert(client_read_response(c, &r, false));
    cr_assert_eq(r.status, 200);
    response_free(&r);
    cr_assert(client_sees_close(c), "the dropped request must get no answer");
    client_close(c);
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.requests, 2);
    cr_assert_eq(s.in_flight, 0);
}

/* ---- malformed and oversized requests ---- */

Test(upstream, garbage_gets_400_and_close)
{
    struct client *c = client_open(port);
    client_sends(c, "HELLO\x01 there\r\n\r\n");
    struct response r;
    cr_assert(client_read_response(c, &r, false));
    cr_assert_eq(r.status, 400);
    char v[32];
    cr_assert_str_eq(resp_header(&r, "Connection", v, sizeof v), "close");
    response_free(&r);
    cr_assert(client_sees_close(c));
    client_close(c);
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.bad_requests, 1);
    cr_assert_eq(s.requests, 0);
}

Test(upstream, bad_request_after_a_good_one_is_answered_in_turn)
{
    struct client *c = client_open(port);
    client_sends(c, "GET /ok?delay_ms=100 HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nContent-Length: x\r\n\r\n");
    struct response r;
    cr_assert(client_read_response(c, &r, false));
    cr_assert_eq(r.status, 200);
    response_free(&r);
    cr_assert(client_read_response(c, &r, false));
    cr_assert_eq(r.status, 400);
    response_free(&r);
    cr_assert(client_sees_close(c));
    client_close(c);
}

Test(upstream, oversized_head_gets_431)
{
    size_t n = 70 * 1024;
    char *raw = malloc(n + 64);
    int k = snprintf(raw, n + 64, "GET / HTTP/1.1\r\nX-Big: ");
    memset(raw + k, 'a', n);
    strcpy(raw + k + n, "\r\n\r\n");
    struct response r = fetch(port, raw);
    free(raw);
    cr_assert_eq(r.status, 431);
    response_free(&r);
}

Test(upstream, oversized_body_gets_413_without_reading_it)
{
    struct client *c = client_open(port);
    client_sends(c, "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 9437184\r\n\r\n");
    struct response r;
    cr_assert(client_read_response(c, &r, false));
    cr_assert_eq(r.status, 413);
    response_free(&r);
    cr_assert(client_sees_close(c));
    client_close(c);
}

Test(upstream, oversized_chunked_body_gets_413)
{
    upstream_stop(up);
    up = upstream_start(&(upstream_config){.max_body_bytes = 10});
    cr_assert_not_null(up);
    struct response r = fetch(upstream_port(up), "POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                                                 "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n");
    cr_assert_eq(r.status, 413);
    response_free(&r);
}

/* ---- other methods and statuses ---- */

Test(upstream, head_request_gets_headers_only)
{
    struct client *c = client_open(port);
    client_sends(c, "HEAD /blob?size=500 HTTP/1.1\r\nHost: t\r\n\r\nGET /after?body=z HTTP/1.1\r\nHost: t\r\n\r\n");
    struct response r;
    cr_assert(client_read_response(c, &r, true));
    char v[32];
    cr_assert_str_eq(resp_header(&r, "Content-Length", v, sizeof v), "500");
    response_free(&r);
    /* Had the HEAD answer carried a body, this would read it instead. */
    cr_assert(client_read_response(c, &r, false));
    cr_assert_str_eq(r.body, "z");
    response_free(&r);
    client_close(c);
}

Test(upstream, status_204_has_no_body_or_length)
{
    struct response r = get(port, "/nothing?status=204");
    cr_assert_eq(r.status, 204);
    char v[32];
    cr_assert_null(resp_header(&r, "Content-Length", v, sizeof v));
    response_free(&r);
}

/* ---- counters ---- */

Test(upstream, stats_endpoint_reports_counters_and_is_not_counted)
{
    struct response r = fetch(port, "GET /a HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k1\r\n\r\n");
    response_free(&r);
    r = fetch(port, "GET /b HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k1\r\n\r\n");
    response_free(&r);
    r = get(port, "/_stats");
    cr_assert_eq(r.status, 200);
    json_t *j = body_json(&r);
    cr_assert_eq(json_integer_value(json_object_get(j, "requests")), 2);
    cr_assert_eq(json_integer_value(json_object_get(j, "in_flight")), 0);
    cr_assert_eq(json_integer_value(json_object_get(j, "max_in_flight")), 1);
    cr_assert_eq(json_integer_value(json_object_get(j, "keys")), 1);
    cr_assert_eq(json_integer_value(json_object_get(j, "max_key_count")), 2);
    json_decref(j);
    response_free(&r);
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.requests, 2, "GET /_stats is not counted");
}

Test(upstream, reset_endpoint_clears_counters_and_keys)
{
    struct response r = fetch(port, "GET /a?fail_first=1 HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k\r\n\r\n");
    cr_assert_eq(r.status, 503);
    response_free(&r);
    r = fetch(port, "POST /_reset HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    cr_assert_eq(r.status, 200);
    response_free(&r);
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.requests, 0);
    cr_assert_eq(s.keys, 0);
    cr_assert_eq(s.max_key_count, 0);
    cr_assert_eq(upstream_key_count(up, "k"), 0);
    /* fail_first starts over too. */
    r = fetch(port, "GET /a?fail_first=1 HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k\r\n\r\n");
    cr_assert_eq(r.status, 503);
    response_free(&r);
}

Test(upstream, reset_api_keeps_in_flight_and_restarts_max_from_it)
{
    struct client *slow = client_open(port);
    client_sends(slow, "GET /slow?delay_ms=300 HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_in_flight(1);
    struct response r = get(port, "/fast");
    response_free(&r);
    upstream_reset_stats(up);
    upstream_stats s;
    upstream_get_stats(up, &s);
    cr_assert_eq(s.requests, 0);
    cr_assert_eq(s.in_flight, 1);
    cr_assert_eq(s.max_in_flight, 1);
    cr_assert(client_read_response(slow, &r, false));
    response_free(&r);
    client_close(slow);
    upstream_get_stats(up, &s);
    cr_assert_eq(s.in_flight, 0);
}

Test(upstream, control_paths_refuse_other_methods)
{
    struct response r = get(port, "/_reset");
    cr_assert_eq(r.status, 405);
    response_free(&r);
    r = fetch(port, "DELETE /_stats HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert_eq(r.status, 405);
    response_free(&r);
}

/* ---- lifecycle ---- */

Test(upstream, two_upstreams_keep_separate_counters)
{
    upstream *other = upstream_start(NULL);
    cr_assert_not_null(other);
    cr_assert_neq(upstream_port(other), port);
    struct response r = get(upstream_port(other), "/x");
    response_free(&r);
    r = get(upstream_port(other), "/y");
    response_free(&r);
    upstream_stats s;
    upstream_get_stats(other, &s);
    cr_assert_eq(s.requests, 2);
    upstream_get_stats(up, &s);
    cr_assert_eq(s.requests, 0);
    upstream_stop(other);
}

Test(upstream, stop_with_a_request_waiting_frees_everything)
{
    struct client *c = client_open(port);
    client_sends(c, "GET /forever?delay_ms=600000 HTTP/1.1\r\nHost: t\r\n\r\nGET /partial HTTP/1.1\r\n");
    wait_in_flight(1);
    upstream_stop(up); /* LeakSanitizer checks that the timer, request and connection are freed */
    up = upstream_start(NULL);
    cr_assert_not_null(up);
    cr_assert(client_sees_close(c));
    client_close(c);
}

Test(upstream, start_refuses_a_bad_address_and_a_taken_port)
{
    errno = 0;
    cr_assert_null(upstream_start(&(upstream_config){.host = "not-an-address"}));
    cr_assert_eq(errno, EINVAL);
    cr_assert_null(upstream_start(&(upstream_config){.port = port}));
    cr_assert_eq(errno, EADDRINUSE);
}
