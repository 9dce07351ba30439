/* The raw-socket client and fixture of the upstream suites (see upstream_client.h). */
#include "upstream_client.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---- a minimal HTTP/1.1 client ---- */

struct uc_client *uc_client_open(int port)
{
    struct uc_client *c = calloc(1, sizeof *c);
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

void uc_client_close(struct uc_client *c)
{
    close(c->fd);
    free(c->buf);
    free(c);
}

void uc_client_send(struct uc_client *c, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t k = send(c->fd, data, n, MSG_NOSIGNAL);
        cr_assert_gt(k, 0, "send: %s", strerror(errno));
        data += k;
        n -= (size_t)k;
    }
}

void uc_client_sends(struct uc_client *c, const char *s)
{
    uc_client_send(c, s, strlen(s));
}

/* Reads until at least n bytes are buffered; false on EOF or a connection error first. */
static bool client_need(struct uc_client *c, size_t n)
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

static char *client_take(struct uc_client *c, size_t n)
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
static bool client_find(struct uc_client *c, const char *pat, size_t *end)
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
const char *uc_resp_header(const struct uc_response *r, const char *name, char *out, size_t outlen)
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
bool uc_client_read_response(struct uc_client *c, struct uc_response *r, bool no_body)
{
    size_t end;
    *r = (struct uc_response){0};
    if (!client_need(c, 1))
        return false;
    cr_assert(client_find(c, "\r\n\r\n", &end), "connection ended inside a response head");
    r->head = client_take(c, end);
    cr_assert_eq(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1, "bad status line: %s", r->head);
    char v[64];
    if (no_body || r->status == 204 || r->status == 304 || r->status < 200) {
        r->body = client_take(c, 0);
    } else if (uc_resp_header(r, "Transfer-Encoding", v, sizeof v)) {
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
        cr_assert_not_null(uc_resp_header(r, "Content-Length", v, sizeof v), "no length: %s", r->head);
        size_t n = strtoul(v, NULL, 10);
        cr_assert(client_need(c, n), "connection ended inside a body");
        r->body = client_take(c, n);
        r->body_len = n;
    }
    return true;
}

void uc_response_free(struct uc_response *r)
{
    free(r->head);
    free(r->body);
}

/* True when the server closed the connection (EOF or reset) without sending more. */
bool uc_client_sees_close(struct uc_client *c)
{
    return c->len == 0 && !client_need(c, 1);
}

/* Readable within ms milliseconds? */
bool uc_client_readable(struct uc_client *c, int ms)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    return c->len > 0 || poll(&pfd, 1, ms) == 1;
}

/* One request on a fresh connection, one response back. */
struct uc_response uc_fetch(int port, const char *raw)
{
    struct uc_client *c = uc_client_open(port);
    uc_client_sends(c, raw);
    struct uc_response r;
    cr_assert(uc_client_read_response(c, &r, false), "no response to: %s", raw);
    uc_client_close(c);
    return r;
}

struct uc_response uc_get(int port, const char *target)
{
    char raw[1024];
    snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", target);
    return uc_fetch(port, raw);
}

json_t *uc_body_json(const struct uc_response *r)
{
    json_error_t err;
    json_t *j = json_loadb(r->body, r->body_len, 0, &err);
    cr_assert_not_null(j, "body is not JSON (%s): %s", err.text, r->body);
    return j;
}

double uc_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- fixture: one upstream per test (each test runs in its own process) ---- */

upstream *uc_up;
int uc_port;

/* Requests on different connections are read in no promised order: wait (up to 5 s) until the
 * upstream holds n received, unanswered requests. */
void uc_wait_in_flight(uint64_t n)
{
    upstream_stats s;
    for (int i = 0; i < 1000; i++) {
        upstream_get_stats(uc_up, &s);
        if (s.in_flight == n)
            return;
        usleep(5000);
    }
    cr_assert_fail("in_flight stayed %llu, not %llu", (unsigned long long)s.in_flight,
                   (unsigned long long)n);
}

void uc_start_upstream(void)
{
    uc_up = upstream_start(NULL);
    cr_assert_not_null(uc_up, "upstream_start: %s", strerror(errno));
    uc_port = upstream_port(uc_up);
    cr_assert_gt(uc_port, 0);
}

void uc_stop_upstream(void)
{
    upstream_stop(uc_up);
    uc_up = NULL;
}
