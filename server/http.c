/* HTTP targets on libcurl's multi-socket API driven by libev (the shape of curl's
 * evhiperfifo example). curl owns the sockets; we only watch them. Easy handles are pooled
 * and curl_easy_reset before each use, so no option leaks from one item to the next. */
#include "http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "list.h"
#include "log.h"
#include "pbtime.h"
#include "pbvalue.h"

/* Response headers kept per item: enough for Location, ETag and friends, bounded so a
 * hostile upstream cannot make every result huge. */
#define MAX_RESPONSE_HEADERS 64
#define MAX_RESPONSE_HEADER_BYTES (16 * 1024)

typedef struct http_sock {
    ev_io io;
    http_client *c;
    struct http_sock *next_free;
} http_sock;

typedef struct http_xfer {
    http_client *c;
    CURL *easy;
    target_call *tc;
    struct curl_slist *headers;
    char *json_body;          /* the Value operation body as JSON text */
    char *url;
    size_t url_cap;
    uint8_t *body;            /* response body so far; handed to tc->resp */
    size_t body_len, body_cap, max_body;
    int truncated;
    char errbuf[CURL_ERROR_SIZE];
    struct http_xfer *next_free;
} http_xfer;

struct http_client {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer;
    http_xfer *free_xfers;
    http_sock *free_socks;
    size_t active;
};

void target_response_clear(target_response *r)
{
    free(r->error);
    free(r->body);
    free(r->content_type);
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    memset(r, 0, sizeof *r);
    r->retry_after_ns = -1;
}

static void check_done(http_client *c);

/* ---- libev <-> libcurl glue ------------------------------------------------------ */

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    http_sock *s = container_of(w, http_sock, io);
    http_client *c = s->c; /* s may be recycled inside socket_action: read it first */
    int flags = (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    CURLMcode mc = curl_multi_socket_action(c->multi, w->fd, flags, &running);
    if (mc != CURLM_OK)
        log_error("curl_multi_socket_action: %s", curl_multi_strerror(mc));
    check_done(c);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    http_client *c = container_of(w, http_client, timer);
    int running;
    CURLMcode mc = curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    if (mc != CURLM_OK)
        log_error("curl_multi_socket_action(timeout): %s", curl_multi_strerror(mc));
    check_done(c);
}

/* Called by curl inside socket_action/add_handle: only (re)arm watchers here, never call
 * back into the multi handle (it would return CURLM_RECURSIVE_API_CALL). */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *sockp)
{
    http_client *c = userp;
    http_sock *s = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            ev_io_stop(c->loop, &s->io);
            s->next_free = c->free_socks;
            c->free_socks = s;
        }
        return 0;
    }
    int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    if (s == NULL) {
        if (c->free_socks) {
            s = c->free_socks;
            c->free_socks = s->next_free;
        } else if ((s = malloc(sizeof *s)) == NULL) {
            return -1; /* curl fails the transfer */
        }
        s->c = c;
        ev_io_init(&s->io, on_io, fd, events);
        curl_multi_assign(c->multi, fd, s);
    } else {
        ev_io_stop(c->loop, &s->io);
        ev_io_set(&s->io, fd, events);
    }
    ev_io_start(c->loop, &s->io);
    return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    http_client *c = userp;
    ev_timer_stop(c->loop, &c->timer);
    if (timeout_ms >= 0) { /* 0 too: it starts new handles on the next loop turn */
        ev_timer_set(&c->timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(c->loop, &c->timer);
    }
    return 0;
}

/* ---- transfers ------------------------------------------------------------------- */

static size_t on_write(char *data, size_t size, size_t n, void *userp)
{
    http_xfer *x = userp;
    size_t len = size * n;
    size_t take = x->max_body - x->body_len;
    if (take > len)
        take = len;
    if (take < len)
        x->truncated = 1; /* keep reading: the status still counts, the rest is dropped */
    if (take) {
        if (x->body_len + take > x->body_cap) {
            size_t cap = x->body_cap ? x->body_cap : 4096;
            while (cap < x->body_len + take)
                cap *= 2;
            if (cap > x->max_body)
                cap = x->max_body;
            uint8_t *p = realloc(x->body, cap);
            if (p == NULL)
                return 0; /* CURLE_WRITE_ERROR: the attempt fails, the server goes on */
            x->body = p;
            x->body_cap = cap;
        }
        memcpy(x->body + x->body_len, data, take);
        x->body_len += take;
    }
    return len;
}

static http_xfer *xfer_get(http_client *c)
{
    http_xfer *x = c->free_xfers;
    if (x) {
        c->free_xfers = x->next_free;
        curl_easy_reset(x->easy);
        return x;
    }
    x = calloc(1, sizeof *x);
    if (x == NULL)
        return NULL;
    x->c = c;
    if ((x->easy = curl_easy_init()) == NULL) {
        free(x);
        return NULL;
    }
    return x;
}

static void xfer_put(http_xfer *x)
{
    http_client *c = x->c;
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    free(x->json_body);
    x->json_body = NULL;
    free(x->body);
    x->body = NULL;
    x->body_len = x->body_cap = 0;
    x->truncated = 0;
    x->tc = NULL;
    x->next_free = c->free_xfers;
    c->free_xfers = x;
}

static int append_header(http_xfer *x, const char *name, const char *value)
{
    char buf[512];
    char *line = buf;
    size_t need = strlen(name) + strlen(value) + 3;
    if (need > sizeof buf && (line = malloc(need)) == NULL)
        return -1;
    /* "Name;" is curl's way to send a header with an empty value ("Name:" deletes it). */
    if (*value)
        snprintf(line, need, "%s: %s", name, value);
    else
        snprintf(line, need, "%s;", name);
    struct curl_slist *l = curl_slist_append(x->headers, line);
    if (line != buf)
        free(line);
    if (l == NULL)
        return -1;
    x->headers = l;
    return 0;
}

static int set_url(http_xfer *x, const char *base, const char *path)
{
    size_t need = strlen(base) + strlen(path) + 1;
    if (need > x->url_cap) {
        char *u = realloc(x->url, need);
        if (u == NULL)
            return -1;
        x->url = u;
        x->url_cap = need;
    }
    snprintf(x->url, need, "%s%s", base, path);
    return 0;
}

static int has_header(const Batch__V1__Operation *op, const char *name)
{
    for (size_t i = 0; i < op->n_headers; i++)
        if (strcasecmp(op->headers[i]->key, name) == 0)
            return 1;
    return 0;
}

/* Sets every per-attempt option on a freshly reset handle. */
static int xfer_setup(http_xfer *x, const target_config *cfg, target_call *tc)
{
    const Batch__V1__Operation *op = tc->op;
    CURL *e = x->easy;
    char method[16];
    size_t mlen = strlen(op->method);
    if (mlen >= sizeof method)
        return -1;
    for (size_t i = 0; i <= mlen; i++)
        method[i] = (char)toupper((unsigned char)op->method[i]);

    if (set_url(x, cfg->url, op->path) < 0)
        return -1;
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L); /* never wait for a resolver thread */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* an http_proxy variable must not divert items */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "batchd/" BATCHD_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    long ms = (long)((tc->timeout_ns + PBTIME_NS_PER_MS - 1) / PBTIME_NS_PER_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);

    const char *content_type = NULL;
    const void *body = NULL;
    size_t body_len = 0;
    switch (op->body_case) {
    case BATCH__V1__OPERATION__BODY_JSON: {
        json_t *j = pbvalue_to_json(op->json, NULL);
        x->json_body = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        json_decref(j);
        if (x->json_body == NULL)
            return -1;
        body = x->json_body;
        body_len = strlen(x->json_body);
        content_type = "application/json";
        break;
    }
    case BATCH__V1__OPERATION__BODY_RAW:
        body = op->raw.data;
        body_len = op->raw.len;
        content_type = "application/octet-stream";
        break;
    case BATCH__V1__OPERATION__BODY_TEXT:
        body = op->text;
        body_len = strlen(op->text);
        content_type = "text/plain; charset=utf-8";
        break;
    default:
        break;
    }

    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (body == NULL && strcmp(method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        if (body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
            strcmp(method, "PATCH") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
        }
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }

    for (size_t i = 0; i < op->n_headers; i++) {
        const char *name = op->headers[i]->key;
        if (tc->idempotency_key && strcasecmp(name, "Idempotency-Key") == 0)
            continue; /* the executor's key wins; validation made sure they agree */
        if (append_header(x, name, op->headers[i]->value) < 0)
            return -1;
    }
    if (content_type && !has_header(op, "Content-Type") &&
        append_header(x, "Content-Type", content_type) < 0)
        return -1;
    if (tc->idempotency_key && append_header(x, "Idempotency-Key", tc->idempotency_key) < 0)
        return -1;
    /* No "Expect: 100-continue" round trip for large bodies: upstreams are trusted targets. */
    if (body_len > 0 && !has_header(op, "Expect") && append_header(x, "Expect", "") < 0)
        return -1;
    if (x->headers)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    x->max_body = tc->max_response_bytes;
    return 0;
}

static grpc_status_code code_for_curl(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return GRPC_STATUS_DEADLINE_EXCEEDED;
    case CURLE_OUT_OF_MEMORY:
    case CURLE_WRITE_ERROR:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return GRPC_STATUS_INTERNAL;
    default:
        /* Resolution, connection, TLS, send/receive and protocol failures: the upstream
         * could not be reached or did not answer, which may pass. */
        return GRPC_STATUS_UNAVAILABLE;
    }
}

static void collect_headers(http_xfer *x, target_response *r)
{
    size_t bytes = 0, n = 0;
    struct curl_header *h = NULL;
    while ((h = curl_easy_nextheader(x->easy, CURLH_HEADER, -1, h)) != NULL)
        n++;
    if (n == 0)
        return;
    if (n > MAX_RESPONSE_HEADERS)
        n = MAX_RESPONSE_HEADERS;
    r->headers = calloc(n, sizeof *r->headers);
    if (r->headers == NULL)
        return;
    h = NULL;
    while (r->n_headers < n && (h = curl_easy_nextheader(x->easy, CURLH_HEADER, -1, h)) != NULL) {
        bytes += strlen(h->name) + strlen(h->value);
        if (bytes > MAX_RESPONSE_HEADER_BYTES)
            break;
        target_header *th = &r->headers[r->n_headers];
        th->name = strdup(h->name);
        th->value = strdup(h->value);
        if (th->name == NULL || th->value == NULL) {
            free(th->name);
            free(th->value);
            break;
        }
        r->n_headers++;
    }
}

static void xfer_finish(http_xfer *x, CURLcode rc)
{
    target_call *tc = x->tc;
    target_response *r = &tc->resp;
    memset(r, 0, sizeof *r);
    r->retry_after_ns = -1;
    if (rc == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        r->http_status = (int)status;
        r->code = GRPC_STATUS_OK;
        char *ct = NULL;
        if (curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
            r->content_type = strdup(ct);
        curl_off_t retry_after = 0;
        if (curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK &&
            retry_after > 0)
            r->retry_after_ns = retry_after > 86400 ? 86400 * PBTIME_NS_PER_SEC
                                                    : (int64_t)retry_after * PBTIME_NS_PER_SEC;
        collect_headers(x, r);
        r->body = x->body;
        r->body_len = x->body_len;
        r->body_truncated = x->truncated;
        x->body = NULL;
    } else {
        r->code = code_for_curl(rc);
        const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
        if (asprintf(&r->error, "%s", detail) < 0)
            r->error = NULL;
    }
}

static void check_done(http_client *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result; /* msg is invalid after remove_handle */
        http_xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(c->multi, easy);
        c->active--;
        target_call *tc = x->tc;
        xfer_finish(x, rc);
        xfer_put(x);
        tc->priv = NULL;
        tc->done(tc);
    }
}

static int http_start(target *t, target_call *tc)
{
    http_client *c = t->impl;
    memset(&tc->resp, 0, sizeof tc->resp);
    tc->resp.retry_after_ns = -1;
    http_xfer *x = xfer_get(c);
    if (x == NULL) {
        tc->resp.code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        tc->resp.error = strdup("out of memory starting the request");
        return -1;
    }
    x->tc = tc;
    x->errbuf[0] = '\0';
    if (xfer_setup(x, t->cfg, tc) < 0) {
        xfer_put(x);
        tc->resp.code = GRPC_STATUS_INTERNAL;
        tc->resp.error = strdup("cannot prepare the request");
        return -1;
    }
    CURLMcode mc = curl_multi_add_handle(c->multi, x->easy);
    if (mc != CURLM_OK) {
        xfer_put(x);
        tc->resp.code = GRPC_STATUS_INTERNAL;
        if (asprintf(&tc->resp.error, "curl_multi_add_handle: %s", curl_multi_strerror(mc)) < 0)
            tc->resp.error = NULL;
        return -1;
    }
    c->active++;
    tc->priv = x;
    return 0;
}

static void http_cancel(target *t, target_call *tc)
{
    http_client *c = t->impl;
    http_xfer *x = tc->priv;
    if (x == NULL)
        return;
    /* From a loop callback this closes the connection at once; curl sends no DONE. */
    curl_multi_remove_handle(c->multi, x->easy);
    c->active--;
    xfer_put(x);
    tc->priv = NULL;
}

static const target_ops http_ops = {http_start, http_cancel};

void http_target_init(target *t, http_client *c, const target_config *cfg)
{
    memset(t, 0, sizeof *t);
    t->ops = &http_ops;
    t->cfg = cfg;
    t->impl = c;
}

http_client *http_client_new(struct ev_loop *loop, size_t max_connections, char *err, size_t errlen)
{
    http_client *c = calloc(1, sizeof *c);
    if (c == NULL || (c->multi = curl_multi_init()) == NULL) {
        snprintf(err, errlen, "cannot create the libcurl multi handle");
        free(c);
        return NULL;
    }
    c->loop = loop;
    ev_timer_init(&c->timer, on_timer, 0., 0.);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)max_connections);
    return c;
}

void http_client_free(http_client *c)
{
    if (c == NULL)
        return;
    ev_timer_stop(c->loop, &c->timer);
    for (http_xfer *x = c->free_xfers, *next; x; x = next) {
        next = x->next_free;
        curl_easy_cleanup(x->easy);
        free(x->url);
        free(x);
    }
    /* Cached connections close here; curl reports their sockets removed. */
    curl_multi_cleanup(c->multi);
    for (http_sock *s = c->free_socks, *next; s; s = next) {
        next = s->next_free;
        free(s);
    }
    free(c);
}
