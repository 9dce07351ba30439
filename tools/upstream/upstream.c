/* The test/benchmark HTTP/1.1 upstream: listener, connections and counters on a private libev loop
 * and thread, requests parsed by libhttp-parser and answered as their query string asks. */
#include "upstream.h"

#include <errno.h>
#include <ev.h>
#include <http_parser.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#define DEFAULT_MAX_HEAD (64u * 1024)
#define DEFAULT_MAX_BODY (8u * 1024 * 1024)
#define MAX_SIZE_PARAM (64u * 1024 * 1024) /* size=N is built in memory: keep a typo from eating RAM */
#define MAX_DELAY_MS 600000u
#define CONN_IN_SIZE (16 * 1024)
/* Requests parsed ahead of their answers on one connection. Past it parsing pauses, so a client
 * pipelining delayed requests cannot make us hold an unbounded queue. */
#define MAX_QUEUED 128
/* Output not yet taken by a client that keeps sending: stop reading until it drains. The same
 * bound applies to answers built but still queued behind a delayed one (size=N makes them big). */
#define OUT_HIGH_WATER (1024 * 1024)
/* After the last answer before a close, discard input this long so the close is a FIN, not an
 * RST that could destroy the answer in the client's receive buffer (nginx's lingering close). */
#define LINGER_SECONDS 2.0
#define CHUNK_MAX 16384

/* ---- growable byte buffer ---- */

struct buf {
    char *data;
    size_t len, cap;
};

static int buf_reserve(struct buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

static int buf_append(struct buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data ? b->data + b->len : NULL, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n >= b->cap - b->len) {
        if (buf_reserve(b, (size_t)n + 1) < 0)
            return -1;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
    return 0;
}

static void buf_free(struct buf *b)
{
    free(b->data);
    *b = (struct buf){0};
}

/* ---- string -> count table (Idempotency-Keys, fail_first retry keys) ---- */

struct key_entry {
    struct key_entry *next;
    uint64_t hash, count;
    size_t len;
    char key[];
};

struct key_table {
    struct key_entry **slots;
    size_t nslots, n;
};

static uint64_t key_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static struct key_entry *key_find(const struct key_table *t, const char *s, size_t n, uint64_t h)
{
    if (!t->nslots)
        return NULL;
    for (struct key_entry *e = t->slots[h & (t->nslots - 1)]; e; e = e->next)
        if (e->hash == h && e->len == n && memcmp(e->key, s, n) == 0)
            return e;
    return NULL;
}

/* Adds one to the count of s and returns the new count; 0 when memory ran out. */
static uint64_t key_bump(struct key_table *t, const char *s, size_t n)
{
    uint64_t h = key_hash(s, n);
    struct key_entry *e = key_find(t, s, n, h);
    if (e)
        return ++e->count;
    if (t->n >= t->nslots) { /* keep chains short: grow at load factor 1 */
        size_t nslots = t->nslots ? t->nslots * 2 : 64;
        struct key_entry **slots = calloc(nslots, sizeof *slots);
        if (!slots)
            return 0;
        for (size_t i = 0; i < t->nslots; i++) {
            while (t->slots[i]) {
                struct key_entry *m = t->slots[i];
                t->slots[i] = m->next;
                m->next = slots[m->hash & (nslots - 1)];
                slots[m->hash & (nslots - 1)] = m;
            }
        }
        free(t->slots);
        t->slots = slots;
        t->nslots = nslots;
    }
    e = malloc(sizeof *e + n);
    if (!e)
        return 0;
    e->hash = h;
    e->count = 1;
    e->len = n;
    memcpy(e->key, s, n);
    e->next = t->slots[h & (t->nslots - 1)];
    t->slots[h & (t->nslots - 1)] = e;
    t->n++;
    return 1;
}

static void key_clear(struct key_table *t)
{
    for (size_t i = 0; i < t->nslots; i++) {
        while (t->slots[i]) {
            struct key_entry *e = t->slots[i];
            t->slots[i] = e->next;
            free(e);
        }
    }
    free(t->slots);
    *t = (struct key_table){0};
}

/* ---- the server, its connections and their requests ---- */

struct upstream {
    struct ev_loop *loop;
    pthread_t thread;
    int listen_fd;
    int port;
    size_t max_head, max_body;
    ev_io accept_io;
    ev_timer accept_backoff; /* out of descriptors: retry accept later instead of spinning */
    ev_async stop_async;
    struct conn *conns; /* every open connection, so stop can close them */

    /* Everything below is shared with other threads and guarded by mu. The loop thread takes
     * it twice per request (received, answered); uncontended that costs far less than a syscall. */
    pthread_mutex_t mu;
    upstream_stats stats;
    struct key_table keys;    /* Idempotency-Key -> requests carrying it */
    struct key_table retries; /* fail_first retry key -> attempts seen */
};

enum conn_state {
    CONN_OPEN,      /* reading requests and answering them */
    CONN_DRAINING,  /* reads nothing more; answers what is queued, then closes */
    CONN_LINGERING, /* all written and the write side shut; discards input until EOF or timeout */
};

enum req_state {
    REQ_READING, /* being parsed (conn->cur) */
    REQ_WAITING, /* received, its delay_ms timer running */
    REQ_READY,   /* answer built (or drop decided), waiting for its turn in the queue */
};

enum req_part { PART_URL, PART_FIELD, PART_VALUE, PART_DONE };

struct header {
    size_t name_off, name_len, value_off, value_len; /* into req->head */
};

struct req {
    struct conn *conn;
    struct req *next;
    enum req_state state;
    ev_timer delay;
    enum req_part part;   /* which parser callback ran last, to join fragments */
    struct buf head;      /* URL bytes, then header names and values, unterminated */
    size_t url_len;
    struct header *hdrs;
    size_t nhdrs, hdrs_cap;
    struct buf body;
    struct buf resp;      /* the whole answer, moved to conn->out when its turn comes */
    size_t queued_len;    /* resp.len as added to conn->queued_bytes */
    int reject_status;    /* set by a parser callback that refused the request (413, 431) */
    bool counted;         /* holds one in stats.in_flight until answered or freed */
    bool drop;
};

struct conn {
    upstream *u;
    struct conn *prev, *next;
    int fd;
    enum conn_state state;
    ev_io read_io, write_io;
    ev_timer linger_timer;
    http_parser parser;
    bool parse_paused; /* read-ahead limit reached: input after in_off waits for answers to leave */
    bool peer_eof;
    bool abort_on_drain; /* drop=1: close without lingering */
    struct req *head, *tail, *cur;
    size_t nqueued;
    size_t queued_bytes; /* answers built and not yet moved to out */
    struct req *spare; /* one freed request kept with its buffers: keep-alive needs no malloc */
    struct buf out;
    size_t out_off;
    size_t in_off, in_len;
    char in[CONN_IN_SIZE];
};

static void conn_set_state(struct conn *c, enum conn_state s);
static void conn_update(struct conn *c);
static void conn_destroy(struct conn *c);

/* ---- counters ---- */

static void stats_received(upstream *u, struct req *r, const char *key, size_t key_len,
                           const char *retry_key, size_t retry_len, bool retry_is_key,
                           uint64_t *attempt)
{
    pthread_mutex_lock(&u->mu);
    u->stats.requests++;
    if (++u->stats.in_flight > u->stats.max_in_flight)
        u->stats.max_in_flight = u->stats.in_flight;
    r->counted = true;
    if (key) {
        uint64_t n = key_bump(&u->keys, key, key_len);
        u->stats.keys = u->keys.n;
        if (n > u->stats.max_key_count)
            u->stats.max_key_count = n;
    }
    if (attempt) {
        /* The two kinds of retry key share a table: a leading byte keeps them apart. */
        char tag = retry_is_key ? 'k' : 't';
        struct buf k = {0};
        if (buf_append(&k, &tag, 1) == 0 && buf_append(&k, retry_key, retry_len) == 0)
            *attempt = key_bump(&u->retries, k.data, k.len);
        buf_free(&k);
    }
    pthread_mutex_unlock(&u->mu);
}

static void stats_answered(upstream *u, struct req *r)
{
    if (!r->counted)
        return;
    r->counted = false;
    pthread_mutex_lock(&u->mu);
    u->stats.in_flight--;
    pthread_mutex_unlock(&u->mu);
}

static void stats_add(upstream *u, uint64_t *field)
{
    pthread_mutex_lock(&u->mu);
    (*field)++;
    pthread_mutex_unlock(&u->mu);
}

void upstream_get_stats(upstream *u, upstream_stats *out)
{
    pthread_mutex_lock(&u->mu);
    *out = u->stats;
    pthread_mutex_unlock(&u->mu);
}

uint64_t upstream_key_count(upstream *u, const char *key)
{
    size_t n = strlen(key);
    pthread_mutex_lock(&u->mu);
    struct key_entry *e = key_find(&u->keys, key, n, key_hash(key, n));
    uint64_t count = e ? e->count : 0;
    pthread_mutex_unlock(&u->mu);
    return count;
}

void upstream_reset_stats(upstream *u)
{
    pthread_mutex_lock(&u->mu);
    uint64_t in_flight = u->stats.in_flight;
    u->stats = (upstream_stats){.in_flight = in_flight, .max_in_flight = in_flight};
    key_clear(&u->keys);
    key_clear(&u->retries);
    pthread_mutex_unlock(&u->mu);
}

int upstream_port(const upstream *u)
{
    return u->port;
}

/* ---- requests ---- */

static void req_delay_cb(struct ev_loop *loop, ev_timer *w, int revents);

static struct req *req_new(struct conn *c)
{
    struct req *r = c->spare;
    if (r) {
        c->spare = NULL;
    } else {
        r = calloc(1, sizeof *r);
        if (!r)
            return NULL;
        ev_init(&r->delay, req_delay_cb);
    }
    r->conn = c;
    r->state = REQ_READING;
    r->part = PART_URL;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->nqueued++;
    return r;
}

static void req_free(struct req *r)
{
    buf_free(&r->head);
    buf_free(&r->body);
    buf_free(&r->resp);
    free(r->hdrs);
    free(r);
}

/* Unlinks the queue head and frees it, or keeps it as the spare when its buffers are modest. */
static void req_release_head(struct conn *c)
{
    struct req *r = c->head;
    c->head = r->next;
    if (!c->head)
        c->tail = NULL;
    if (c->cur == r)
        c->cur = NULL;
    c->nqueued--;
    c->queued_bytes -= r->queued_len;
    r->queued_len = 0;
    ev_timer_stop(c->u->loop, &r->delay);
    stats_answered(c->u, r);
    if (c->spare || r->head.cap + r->body.cap + r->resp.cap > 256 * 1024) {
        req_free(r);
        return;
    }
    r->next = NULL;
    r->head.len = r->body.len = r->resp.len = 0;
    r->url_len = r->nhdrs = 0;
    r->reject_status = 0;
    r->drop = false;
    c->spare = r;
}

static const struct header *req_header(const struct req *r, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < r->nhdrs; i++)
        if (r->hdrs[i].name_len == n && strncasecmp(r->head.data + r->hdrs[i].name_off, name, n) == 0)
            return &r->hdrs[i];
    return NULL;
}

/* ---- building answers ---- */

static int append_json_string(struct buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n * 6 + 2) < 0) /* worst case: every byte as \u00XX */
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            *o++ = '\\';
            *o++ = (char)ch;
        } else if (ch < 0x20) {
            o += sprintf(o, "\\u%04x", ch);
        } else {
            *o++ = (char)ch;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

/* Byte i of a size=N body: a-z repeating, so a client can check it received the right bytes. */
static void fill_pattern(char *dst, size_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)('a' + (off + i) % 26);
}

struct answer {
    int status;
    bool head; /* answering HEAD: headers only */
    const char *content_type;
    const char *body; /* NULL with body_len > 0: the a-z pattern */
    size_t body_len;
    const char *retry_after;
    size_t retry_after_len;
    bool chunked;
};

/* Writes the status line, headers and body of a into r->resp. */
static int req_build(struct req *r, const struct answer *a, bool close)
{
    const http_parser *p = &r->conn->parser;
    struct buf *b = &r->resp;
    bool no_body = a->status == 204 || a->status == 304;
    bool http11 = p->http_major == 1 && p->http_minor >= 1;
    bool chunked = a->chunked && http11 && !no_body;
    const char *reason = http_status_str((enum http_status)a->status);
    if (strcmp(reason, "<unknown>") == 0)
        reason = "Status";

    b->len = 0;
    if (buf_printf(b, "HTTP/1.1 %d %s\r\nServer: batchd-upstream\r\n", a->status, reason) < 0)
        return -1;
    if (!no_body) {
        if (buf_printf(b, "Content-Type: %s\r\n", a->content_type) < 0)
            return -1;
        if (chunked ? buf_printf(b, "Transfer-Encoding: chunked\r\n") < 0
                    : buf_printf(b, "Content-Length: %zu\r\n", a->body_len) < 0)
            return -1;
    }
    if (a->retry_after && buf_printf(b, "Retry-After: %.*s\r\n", (int)a->retry_after_len,
                                     a->retry_after) < 0)
        return -1;
    if (close ? buf_printf(b, "Connection: close\r\n\r\n") < 0
              : buf_printf(b, http11 ? "\r\n" : "Connection: keep-alive\r\n\r\n") < 0)
        return -1;
    if (a->head || no_body)
        return 0;

    /* Several chunks when there is more than one byte, so clients' reassembly gets exercised. */
    size_t per = a->body_len;
    if (chunked) {
        size_t nchunks = (a->body_len + CHUNK_MAX - 1) / CHUNK_MAX;
        if (nchunks < 2)
            nchunks = 2;
        per = (a->body_len + nchunks - 1) / nchunks;
        if (per == 0)
            per = 1;
    }
    for (size_t off = 0; off < a->body_len; off += per) {
        size_t n = a->body_len - off < per ? a->body_len - off : per;
        if (chunked && buf_printf(b, "%zx\r\n", n) < 0)
            return -1;
        if (buf_reserve(b, n + 2) < 0)
            return -1;
        if (a->body)
            memcpy(b->data + b->len, a->body + off, n);
        else
            fill_pattern(b->data + b->len, off, n);
        b->len += n;
        if (chunked && buf_append(b, "\r\n", 2) < 0)
            return -1;
    }
    if (chunked && buf_append(b, "0\r\n\r\n", 5) < 0)
        return -1;
    return 0;
}

static int req_build_text(struct req *r, int status, const char *text, bool head, bool close)
{
    struct answer a = {.status = status, .head = head, .content_type = "text/plain", .body = text,
                       .body_len = strlen(text)};
    return req_build(r, &a, close);
}

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static json_t *base64_json(const unsigned char *s, size_t n)
{
    struct buf b = {0};
    if (buf_reserve(&b, (n + 2) / 3 * 4 + 1) < 0)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) |
                     (i + 2 < n ? s[i + 2] : 0);
        b.data[b.len++] = b64_alphabet[v >> 18 & 63];
        b.data[b.len++] = b64_alphabet[v >> 12 & 63];
        b.data[b.len++] = i + 1 < n ? b64_alphabet[v >> 6 & 63] : '=';
        b.data[b.len++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
    json_t *j = json_stringn(b.data ? b.data : "", b.len);
    buf_free(&b);
    return j;
}

/* The /echo description of r as JSON text in *out (caller frees). NULL-free on ENOMEM: -1. */
static int echo_json(const struct req *r, const char *path, size_t path_len, const char *query,
                     size_t query_len, char **out)
{
    const http_parser *p = &r->conn->parser;
    char version[16];
    snprintf(version, sizeof version, "%u.%u", p->http_major, p->http_minor);
    json_t *o = json_object();
    json_t *hdrs = json_object();
    if (!o || !hdrs)
        goto fail;
    json_object_set_new(o, "method", json_string(http_method_str((enum http_method)p->method)));
    json_object_set_new(o, "path", json_stringn_nocheck(path, path_len));
    json_object_set_new(o, "query", json_stringn_nocheck(query, query_len));
    json_object_set_new(o, "version", json_string(version));
    for (size_t i = 0; i < r->nhdrs; i++) {
        const struct header *h = &r->hdrs[i];
        char *name = strndup(r->head.data + h->name_off, h->name_len);
        if (!name)
            goto fail;
        for (char *s = name; *s; s++)
            if (*s >= 'A' && *s <= 'Z')
                *s = (char)(*s - 'A' + 'a');
        const char *value = r->head.data + h->value_off;
        json_t *prev = json_object_get(hdrs, name);
        if (prev) { /* RFC 9110 5.3: repeated fields combine into one comma-separated list */
            struct buf joined = {0};
            if (buf_printf(&joined, "%s, %.*s", json_string_value(prev), (int)h->value_len, value) == 0)
                json_object_set_new(hdrs, name, json_stringn_nocheck(joined.data, joined.len));
            buf_free(&joined);
        } else {
            json_object_set_new(hdrs, name, json_stringn_nocheck(value, h->value_len));
        }
        free(name);
    }
    json_object_set_new(o, "headers", hdrs);
    hdrs = NULL;
    json_t *body = json_stringn(r->body.data ? r->body.data : "", r->body.len);
    if (body)
        json_object_set_new(o, "body", body);
    else /* not UTF-8: JSON strings cannot carry it as it is */
        json_object_set_new(o, "body_base64", base64_json((const unsigned char *)r->body.data, r->body.len));
    json_object_set_new(o, "body_length", json_integer((json_int_t)r->body.len));
    /* Header values are copied unchecked; JSON_ENSURE_ASCII would not save invalid UTF-8. */
    *out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return *out ? 0 : -1;
fail:
    json_decref(hdrs);
    json_decref(o);
    return -1;
}

/* ---- query parameters ---- */

static bool span_is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Form-style decoding: %XX and '+' as a space; a malformed % escape stays as it is. */
static int url_decode(const char *s, size_t n, struct buf *out)
{
    out->len = 0;
    if (buf_reserve(out, n + 1) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            ch = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        out->data[out->len++] = ch;
    }
    out->data[out->len] = '\0';
    return 0;
}

static bool parse_uint(const char *s, size_t n, unsigned long max, unsigned long *out)
{
    if (!s)
        return false;
    unsigned long v = 0;
    if (n == 0 || n > 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* A flag: "name", "name=1" or "name=0". */
static bool parse_flag(const char *s, size_t n, bool *out)
{
    unsigned long v = 1;
    if (s && n && !parse_uint(s, n, 1, &v))
        return false;
    *out = v == 1;
    return true;
}

struct params {
    unsigned long status, delay_ms, fail_first, fail_status, size;
    bool has_fail_first, has_size, drop, chunked, echo;
    struct buf body, retry_after; /* decoded; body.data NULL when absent */
    const char *bad;              /* name of the first parameter with a bad value (in the query) */
    size_t bad_len;
};

static void params_free(struct params *pm)
{
    buf_free(&pm->body);
    buf_free(&pm->retry_after);
}

static int params_parse(const char *q, size_t qlen, struct params *pm)
{
    *pm = (struct params){.status = 200, .fail_status = 503};
    size_t i = 0;
    while (i < qlen) {
        size_t end = i;
        while (end < qlen && q[end] != '&')
            end++;
        const char *name = q + i, *val = NULL;
        size_t name_len = end - i, val_len = 0;
        const char *eq = memchr(name, '=', name_len);
        if (eq) {
            val = eq + 1;
            val_len = (size_t)(q + end - val);
            name_len = (size_t)(eq - name);
        }
        bool ok = true;
        if (span_is(name, name_len, "status"))
            ok = parse_uint(val, val_len, 599, &pm->status) && pm->status >= 200;
        else if (span_is(name, name_len, "delay_ms"))
            ok = parse_uint(val, val_len, MAX_DELAY_MS, &pm->delay_ms);
        else if (span_is(name, name_len, "fail_first"))
            ok = pm->has_fail_first = parse_uint(val, val_len, 1000000000ul, &pm->fail_first);
        else if (span_is(name, name_len, "fail_status"))
            ok = parse_uint(val, val_len, 599, &pm->fail_status) && pm->fail_status >= 200;
        else if (span_is(name, name_len, "size"))
            ok = pm->has_size = parse_uint(val, val_len, MAX_SIZE_PARAM, &pm->size);
        else if (span_is(name, name_len, "drop"))
            ok = parse_flag(val, val_len, &pm->drop);
        else if (span_is(name, name_len, "chunked"))
            ok = parse_flag(val, val_len, &pm->chunked);
        else if (span_is(name, name_len, "echo"))
            ok = parse_flag(val, val_len, &pm->echo);
        else if (span_is(name, name_len, "body")) {
            if (url_decode(val ? val : "", val_len, &pm->body) < 0)
                return -1;
        } else if (span_is(name, name_len, "retry_after")) {
            if (url_decode(val ? val : "", val_len, &pm->retry_after) < 0)
                return -1;
            for (size_t k = 0; k < pm->retry_after.len; k++) /* no header injection */
                if ((unsigned char)pm->retry_after.data[k] < 0x20 || pm->retry_after.data[k] == 0x7f)
                    ok = false;
        }
        if (!ok && !pm->bad) {
            pm->bad = name;
            pm->bad_len = name_len;
        }
        i = end + 1;
    }
    return 0;
}

/* ---- answering one fully received request ---- */

/* Decides and builds r's answer (or marks it dropped) and how long to hold it back;
 * -1 only when memory ran out. */
static int req_answer(struct req *r, bool close, unsigned long *delay_ms)
{
    struct conn *c = r->conn;
    upstream *u = c->u;
    const http_parser *p = &c->parser;
    bool head = p->method == HTTP_HEAD;
    const char *url = r->head.data ? r->head.data : "";
    struct http_parser_url pu;
    http_parser_url_init(&pu);
    if (http_parser_parse_url(url, r->url_len, p->method == HTTP_CONNECT, &pu) != 0) {
        stats_add(u, &u->stats.bad_requests);
        return req_build_text(r, 400, "bad request target\n", head, close);
    }
    const char *path = "/", *query = "";
    size_t path_len = 1, query_len = 0;
    if (pu.field_set & (1 << UF_PATH)) {
        path = url + pu.field_data[UF_PATH].off;
        path_len = pu.field_data[UF_PATH].len;
    }
    if (pu.field_set & (1 << UF_QUERY)) {
        query = url + pu.field_data[UF_QUERY].off;
        query_len = pu.field_data[UF_QUERY].len;
    }

    /* Control requests: not counted, so polling the stats does not change them. */
    bool stats = span_is(path, path_len, "/_stats");
    if (stats || span_is(path, path_len, "/_reset")) {
        if (p->method != (stats ? HTTP_GET : HTTP_POST) && !(stats && p->method == HTTP_HEAD))
            return req_build_text(r, 405, stats ? "use GET\n" : "use POST\n", head, close);
        char text[320];
        if (stats) {
            upstream_stats s;
            upstream_get_stats(u, &s);
            snprintf(text, sizeof text,
                     "{\"requests\":%llu,\"in_flight\":%llu,\"max_in_flight\":%llu,\"keys\":%llu,"
                     "\"max_key_count\":%llu,\"connections\":%llu,\"bad_requests\":%llu}",
                     (unsigned long long)s.requests, (unsigned long long)s.in_flight,
                     (unsigned long long)s.max_in_flight, (unsigned long long)s.keys,
                     (unsigned long long)s.max_key_count, (unsigned long long)s.connections,
                     (unsigned long long)s.bad_requests);
        } else {
            upstream_reset_stats(u);
            snprintf(text, sizeof text, "{\"ok\":true}");
        }
        struct answer a = {.status = 200, .head = head, .content_type = "application/json", .body = text,
                           .body_len = strlen(text)};
        return req_build(r, &a, close);
    }

    int rc = -1;
    char *echo = NULL;
    struct buf json = {0};
    struct params pm;
    if (params_parse(query, query_len, &pm) < 0)
        goto out;

    const struct header *key = req_header(r, "Idempotency-Key");
    const char *key_s = key ? r->head.data + key->value_off : NULL;
    uint64_t attempt = 0;
    stats_received(u, r, key_s, key ? key->value_len : 0, key_s ? key_s : url,
                   key ? key->value_len : r->url_len, key != NULL,
                   pm.has_fail_first ? &attempt : NULL);
    if (pm.bad) {
        char text[96];
        snprintf(text, sizeof text, "bad value for query parameter %.*s\n", (int)pm.bad_len, pm.bad);
        rc = req_build_text(r, 400, text, head, close);
        goto out;
    }
    *delay_ms = pm.delay_ms;
    if (pm.drop) {
        r->drop = true;
        rc = 0;
        goto out;
    }
    int status = (int)pm.status;
    if (pm.has_fail_first && attempt <= pm.fail_first)
        status = (int)pm.fail_status;

    struct answer a = {.status = status, .head = head, .chunked = pm.chunked};
    if (pm.retry_after.data) {
        a.retry_after = pm.retry_after.data;
        a.retry_after_len = pm.retry_after.len;
    }
    if (pm.echo || span_is(path, path_len, "/echo")) {
        if (echo_json(r, path, path_len, query, query_len, &echo) < 0)
            goto out;
        a.content_type = "application/json";
        a.body = echo;
        a.body_len = strlen(echo);
    } else if (pm.body.data) {
        a.content_type = "text/plain";
        a.body = pm.body.data;
        a.body_len = pm.body.len;
    } else if (pm.has_size) {
        a.content_type = "application/octet-stream";
        a.body_len = pm.size;
    } else {
        /* The hot path of benchmarks: one escape and one printf, no JSON library. */
        if (buf_printf(&json, "{\"ok\":%s,\"status\":%d,\"method\":\"%s\",\"path\":",
                       status < 400 ? "true" : "false", status,
                       http_method_str((enum http_method)p->method)) < 0 ||
            append_json_string(&json, path, path_len) < 0 ||
            (pm.has_fail_first ? buf_printf(&json, ",\"attempt\":%llu}", (unsigned long long)attempt)
                               : buf_append(&json, "}", 1)) < 0)
            goto out;
        a.content_type = "application/json";
        a.body = json.data;
        a.body_len = json.len;
    }
    rc = req_build(r, &a, close);
out:
    free(echo);
    buf_free(&json);
    params_free(&pm);
    return rc;
}

static void req_delay_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct req *r = container_of(w, struct req, delay);
    r->state = REQ_READY;
    conn_update(r->conn);
}

/* ---- parser callbacks: copy what the parser hands us, since conn->in is reused ---- */

static int head_append(struct req *r, const char *at, size_t n)
{
    size_t max = r->conn->u->max_head;
    /* Approximates the head size from its parts plus ": " and CRLF per header; the parser's own
     * HTTP_MAX_HEADER_SIZE (80 KiB) catches what this misses and also becomes a 431. */
    if (r->head.len + n + 4 * r->nhdrs > max) {
        r->reject_status = 431;
        return -1;
    }
    return buf_append(&r->head, at, n);
}

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;
    c->cur = req_new(c);
    return c->cur ? 0 : -1;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct req *r = ((struct conn *)p->data)->cur;
    if (head_append(r, at, n) < 0)
        return -1;
    r->url_len += n;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct req *r = ((struct conn *)p->data)->cur;
    if (r->part == PART_DONE) /* chunked trailers: not kept */
        return 0;
    if (r->part != PART_FIELD) {
        if (r->nhdrs == r->hdrs_cap) {
            size_t cap = r->hdrs_cap ? r->hdrs_cap * 2 : 16;
            struct header *h = realloc(r->hdrs, cap * sizeof *h);
            if (!h)
                return -1;
            r->hdrs = h;
            r->hdrs_cap = cap;
        }
        r->hdrs[r->nhdrs++] = (struct header){.name_off = r->head.len};
        r->part = PART_FIELD;
    }
    if (head_append(r, at, n) < 0)
        return -1;
    r->hdrs[r->nhdrs - 1].name_len += n;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct req *r = ((struct conn *)p->data)->cur;
    if (r->part == PART_DONE)
        return 0;
    struct header *h = &r->hdrs[r->nhdrs - 1];
    if (r->part != PART_VALUE) {
        h->value_off = r->head.len;
        r->part = PART_VALUE;
    }
    if (head_append(r, at, n) < 0)
        return -1;
    h->value_len += n;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct req *r = c->cur;
    r->part = PART_DONE;
    if (!(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX &&
        p->content_length > c->u->max_body) {
        r->reject_status = 413;
        return -1; /* 1 means "no body" and 2 "upgrade"; anything else is an error */
    }
    /* 100 Continue is only safe when nothing before this request still owes an answer, or it
     * would land in the middle of those answers. Otherwise the client sends after its timeout. */
    const struct header *h = req_header(r, "Expect");
    if (h && h->value_len == 12 && strncasecmp(r->head.data + h->value_off, "100-continue", 12) == 0 &&
        c->head == r && c->out.len == c->out_off &&
        (p->flags & F_CHUNKED || (p->content_length > 0 && p->content_length != ULLONG_MAX)))
        return buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0 ? -1 : 0;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    struct req *r = c->cur;
    if (r->body.len + n > c->u->max_body) { /* chunked bodies are only known as they come */
        r->reject_status = 413;
        return -1;
    }
    return buf_append(&r->body, at, n);
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct req *r = c->cur;
    /* An Upgrade request is answered as any other, and nothing after it is HTTP/1.1. */
    bool close = !http_should_keep_alive(p) || p->upgrade;
    unsigned long delay_ms = 0;
    if (req_answer(r, close, &delay_ms) < 0)
        return -1;
    c->cur = NULL;
    r->queued_len = r->resp.len;
    c->queued_bytes += r->queued_len;
    if (delay_ms > 0) {
        r->state = REQ_WAITING;
        ev_timer_set(&r->delay, (double)delay_ms / 1000.0, 0.);
        ev_timer_start(c->u->loop, &r->delay);
    } else {
        r->state = REQ_READY;
    }
    /* Nothing after a closing or dropped request is read: pause here and never resume. */
    if (close || r->drop) {
        conn_set_state(c, CONN_DRAINING);
        http_parser_pause(p, 1);
    } else if (c->nqueued >= MAX_QUEUED || c->queued_bytes > OUT_HIGH_WATER) {
        c->parse_paused = true;
        http_parser_pause(p, 1);
    }
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- connections ---- */

static void conn_set_state(struct conn *c, enum conn_state s)
{
    c->state = s;
    if (s == CONN_LINGERING) {
        shutdown(c->fd, SHUT_WR);
        ev_timer_set(&c->linger_timer, LINGER_SECONDS, 0.);
        ev_timer_start(c->u->loop, &c->linger_timer);
    }
}

/* Answers a request the parser or a callback refused, after those queued before it, and stops
 * reading: the rest of the byte stream cannot be trusted to start at a request boundary. */
static void conn_reject(struct conn *c, int status, const char *why)
{
    struct req *r = c->cur ? c->cur : req_new(c);
    c->cur = NULL;
    conn_set_state(c, CONN_DRAINING);
    if (!r) {
        c->abort_on_drain = true;
        return;
    }
    stats_add(c->u, &c->u->stats.bad_requests);
    char text[160];
    snprintf(text, sizeof text, "%s\n", why);
    /* Not a HEAD answer even if the method looked like one: the request is not understood. */
    if (req_build_text(r, status, text, false, true) < 0)
        r->drop = true;
    r->state = REQ_READY;
}

/* The peer sent its last byte. A half-close still gets the answers to what it sent; a request
 * it cut short can never be answered: dropping it closes the connection once those are out. */
static void conn_input_ended(struct conn *c)
{
    c->peer_eof = true;
    if (c->cur) {
        c->cur->drop = true;
        c->cur->state = REQ_READY;
        c->cur = NULL;
    }
}

static void conn_parse(struct conn *c)
{
    size_t n = http_parser_execute(&c->parser, &parser_settings, c->in + c->in_off, c->in_len - c->in_off);
    c->in_off += n;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e != HPE_OK && e != HPE_PAUSED) {
        int status = c->cur && c->cur->reject_status ? c->cur->reject_status : 400;
        if (e == HPE_HEADER_OVERFLOW)
            status = 431;
        conn_reject(c, status, status == 413 ? "request body too large" :
                               status == 431 ? "request header fields too large" :
                                               http_errno_description(e));
    }
    /* Unparsed input remains only while paused, and a paused connection is not read: so EOF
     * (conn_input_ended) is only ever seen with all input parsed. */
    if (c->in_off == c->in_len || c->state != CONN_OPEN)
        c->in_off = c->in_len = 0;
}

static int conn_write(struct conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        }
        c->out_off += (size_t)n;
    }
    c->out.len = c->out_off = 0;
    return 0;
}

/* The one place that moves a connection forward after anything happened to it: queues ready
 * answers in request order, writes, resumes a paused parser, closes when done, and arms the
 * watchers for what comes next. May free c; callers return right after. */
static void conn_update(struct conn *c)
{
    struct ev_loop *loop = c->u->loop;
    for (;;) {
        while (c->head && c->head->state == REQ_READY) {
            struct req *r = c->head;
            if (r->drop) {
                c->abort_on_drain = true;
                conn_set_state(c, CONN_DRAINING);
                while (c->head)
                    req_release_head(c);
                break;
            }
            if (c->out.len == 0) { /* swap rather than copy: both buffers keep their memory */
                struct buf t = c->out;
                c->out = r->resp;
                r->resp = t;
            } else if (buf_append(&c->out, r->resp.data, r->resp.len) < 0) {
                conn_destroy(c);
                return;
            }
            req_release_head(c);
        }
        if (c->state == CONN_OPEN && c->parse_paused && c->nqueued < MAX_QUEUED &&
            c->queued_bytes <= OUT_HIGH_WATER) {
            c->parse_paused = false;
            http_parser_pause(&c->parser, 0);
            conn_parse(c);
            continue;
        }
        break;
    }
    if (c->out_off < c->out.len && conn_write(c) < 0) {
        conn_destroy(c);
        return;
    }
    bool idle = c->out.len == 0 && !c->head;
    if (idle && c->state == CONN_DRAINING) {
        if (c->abort_on_drain || c->peer_eof) {
            conn_destroy(c);
            return;
        }
        conn_set_state(c, CONN_LINGERING);
    } else if (idle && c->state == CONN_OPEN && c->peer_eof) {
        conn_destroy(c);
        return;
    }
    bool want_read = c->state == CONN_LINGERING ||
                     (c->state == CONN_OPEN && !c->peer_eof && !c->parse_paused &&
                      c->out.len - c->out_off < OUT_HIGH_WATER);
    if (want_read)
        ev_io_start(loop, &c->read_io);
    else
        ev_io_stop(loop, &c->read_io);
    if (c->out_off < c->out.len)
        ev_io_start(loop, &c->write_io);
    else
        ev_io_stop(loop, &c->write_io);
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = container_of(w, struct conn, read_io);
    char *dst = c->in + c->in_len;
    size_t room = sizeof c->in - c->in_len;
    if (c->state == CONN_LINGERING) { /* discard */
        dst = c->in;
        room = sizeof c->in;
    }
    ssize_t n = recv(c->fd, dst, room, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0 || (n == 0 && c->state == CONN_LINGERING)) {
        conn_destroy(c);
        return;
    }
    if (c->state == CONN_LINGERING)
        return;
    if (n == 0) {
        conn_input_ended(c);
    } else if (c->state == CONN_OPEN) {
        c->in_len += (size_t)n;
        conn_parse(c);
    }
    conn_update(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    conn_update(container_of(w, struct conn, write_io));
}

static void conn_linger_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    conn_destroy(container_of(w, struct conn, linger_timer));
}

/* Stops every watcher of c and its requests, then frees them: nothing can call back into c. */
static void conn_destroy(struct conn *c)
{
    struct ev_loop *loop = c->u->loop;
    ev_io_stop(loop, &c->read_io);
    ev_io_stop(loop, &c->write_io);
    ev_timer_stop(loop, &c->linger_timer);
    while (c->head)
        req_release_head(c);
    if (c->spare)
        req_free(c->spare);
    buf_free(&c->out);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->u->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static int conn_new(upstream *u, int fd)
{
    struct conn *c = malloc(sizeof *c);
    if (!c)
        return -1;
    memset(c, 0, offsetof(struct conn, in)); /* the input buffer needs no clearing */
    c->u = u;
    c->fd = fd;
    c->state = CONN_OPEN;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    ev_io_init(&c->read_io, conn_read_cb, fd, EV_READ);
    ev_io_init(&c->write_io, conn_write_cb, fd, EV_WRITE);
    ev_init(&c->linger_timer, conn_linger_cb);
    int one = 1; /* answers are single writes; Nagle would only hold pipelined ones back */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->next = u->conns;
    if (u->conns)
        u->conns->prev = c;
    u->conns = c;
    ev_io_start(u->loop, &c->read_io);
    stats_add(u, &u->stats.connections);
    return 0;
}

/* ---- listener and thread ---- */

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    upstream *u = container_of(w, upstream, accept_io);
    for (int i = 0; i < 64; i++) { /* bounded, so a connection storm cannot starve the others */
        int fd = accept4(u->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The pending connection stays readable: level-triggered, we would spin. */
                ev_io_stop(loop, &u->accept_io);
                ev_timer_set(&u->accept_backoff, 0.1, 0.);
                ev_timer_start(loop, &u->accept_backoff);
            }
            return;
        }
        if (conn_new(u, fd) < 0)
            close(fd);
    }
}

static void accept_backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    upstream *u = container_of(w, upstream, accept_backoff);
    ev_io_start(loop, &u->accept_io);
}

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    upstream *u = container_of(w, upstream, stop_async);
    ev_io_stop(loop, &u->accept_io);
    ev_timer_stop(loop, &u->accept_backoff);
    ev_async_stop(loop, &u->stop_async);
    while (u->conns)
        conn_destroy(u->conns);
    ev_break(loop, EVBREAK_ALL);
}

static void *upstream_thread(void *arg)
{
    upstream *u = arg;
    ev_run(u->loop, 0);
    return NULL;
}

/* Returns a listening socket bound to host:port and stores the bound port; -1 with errno set. */
static int listen_on(const char *host, int port, int *bound)
{
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int fd = -1, err;
    if (getaddrinfo(host, service, &hints, &ai) != 0) {
        err = EINVAL;
        goto fail;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
        err = errno;
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        err = errno;
        goto fail;
    }
    *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    freeaddrinfo(ai);
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    if (ai)
        freeaddrinfo(ai);
    errno = err;
    return -1;
}

upstream *upstream_start(const upstream_config *cfg)
{
    static const upstream_config defaults = {0};
    if (!cfg)
        cfg = &defaults;
    if (cfg->port < 0 || cfg->port > 65535) {
        errno = EINVAL;
        return NULL;
    }
    int err = ENOMEM;
    bool mutex_ok = false;
    upstream *u = calloc(1, sizeof *u);
    if (!u)
        goto fail;
    u->listen_fd = -1;
    u->max_head = cfg->max_head_bytes ? cfg->max_head_bytes : DEFAULT_MAX_HEAD;
    u->max_body = cfg->max_body_bytes ? cfg->max_body_bytes : DEFAULT_MAX_BODY;
    if ((err = pthread_mutex_init(&u->mu, NULL)) != 0)
        goto fail;
    mutex_ok = true;
    u->listen_fd = listen_on(cfg->host ? cfg->host : "127.0.0.1", cfg->port, &u->port);
    if (u->listen_fd < 0) {
        err = errno;
        goto fail;
    }
    /* NOSIGMASK: we own no signal watchers, so libev has no reason to touch the thread's mask. */
    u->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!u->loop) {
        err = ENOMEM;
        goto fail;
    }
    ev_io_init(&u->accept_io, accept_cb, u->listen_fd, EV_READ);
    ev_io_start(u->loop, &u->accept_io);
    ev_init(&u->accept_backoff, accept_backoff_cb);
    ev_async_init(&u->stop_async, stop_cb);
    ev_async_start(u->loop, &u->stop_async);
    if ((err = pthread_create(&u->thread, NULL, upstream_thread, u)) != 0)
        goto fail;
    return u;
fail:
    if (u) {
        if (u->loop)
            ev_loop_destroy(u->loop);
        if (u->listen_fd >= 0)
            close(u->listen_fd);
        if (mutex_ok)
            pthread_mutex_destroy(&u->mu);
        free(u);
    }
    errno = err;
    return NULL;
}

void upstream_stop(upstream *u)
{
    if (!u)
        return;
    ev_async_send(u->loop, &u->stop_async);
    pthread_join(u->thread, NULL);
    ev_loop_destroy(u->loop);
    close(u->listen_fd);
    key_clear(&u->keys);
    key_clear(&u->retries);
    pthread_mutex_destroy(&u->mu);
    free(u);
}
