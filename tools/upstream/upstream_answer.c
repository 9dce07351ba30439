/* The upstream's answers: the query parameters of a request, the /echo description, the
 * control requests, and the status line, headers and body built for each. */
#include <http_parser.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream_int.h"

#define MAX_SIZE_PARAM (64u * 1024 * 1024) /* size=N is built in memory: keep a typo from eating RAM */
#define MAX_DELAY_MS 600000u
#define CHUNK_MAX 16384

/* ---- building answers ---- */

static int append_json_string(struct buf *b, const char *s, size_t n)
{
    if (upstream__buf_reserve(b, n * 6 + 2) < 0) /* worst case: every byte as \u00XX */
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
    if (upstream__buf_printf(b, "HTTP/1.1 %d %s\r\nServer: batchd-upstream\r\n", a->status,
                             reason) < 0)
        return -1;
    if (!no_body) {
        if (upstream__buf_printf(b, "Content-Type: %s\r\n", a->content_type) < 0)
            return -1;
        if (chunked ? upstream__buf_printf(b, "Transfer-Encoding: chunked\r\n") < 0
                    : upstream__buf_printf(b, "Content-Length: %zu\r\n", a->body_len) < 0)
            return -1;
    }
    if (a->retry_after && upstream__buf_printf(b, "Retry-After: %.*s\r\n", (int)a->retry_after_len,
                                               a->retry_after) < 0)
        return -1;
    if (close ? upstream__buf_printf(b, "Connection: close\r\n\r\n") < 0
              : upstream__buf_printf(b, http11 ? "\r\n" : "Connection: keep-alive\r\n\r\n") < 0)
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
        if (chunked && upstream__buf_printf(b, "%zx\r\n", n) < 0)
            return -1;
        if (upstream__buf_reserve(b, n + 2) < 0)
            return -1;
        if (a->body)
            memcpy(b->data + b->len, a->body + off, n);
        else
            fill_pattern(b->data + b->len, off, n);
        b->len += n;
        if (chunked && upstream__buf_append(b, "\r\n", 2) < 0)
            return -1;
    }
    if (chunked && upstream__buf_append(b, "0\r\n\r\n", 5) < 0)
        return -1;
    return 0;
}

int upstream__req_build_text(struct req *r, int status, const char *text, bool head, bool close)
{
    struct answer a = {.status = status, .head = head, .content_type = "text/plain", .body = text,
                       .body_len = strlen(text)};
    return req_build(r, &a, close);
}

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static json_t *base64_json(const unsigned char *s, size_t n)
{
    struct buf b = {0};
    if (upstream__buf_reserve(&b, (n + 2) / 3 * 4 + 1) < 0)
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
    upstream__buf_free(&b);
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
            if (upstream__buf_printf(&joined, "%s, %.*s", json_string_value(prev),
                                     (int)h->value_len, value) == 0)
                json_object_set_new(hdrs, name, json_stringn_nocheck(joined.data, joined.len));
            upstream__buf_free(&joined);
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
    if (upstream__buf_reserve(out, n + 1) < 0)
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
    upstream__buf_free(&pm->body);
    upstream__buf_free(&pm->retry_after);
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
int upstream__req_answer(struct req *r, bool close, unsigned long *delay_ms)
{
    struct conn *c = r->conn;
    upstream *u = c->u;
    const http_parser *p = &c->parser;
    bool head = p->method == HTTP_HEAD;
    const char *url = r->head.data ? r->head.data : "";
    struct http_parser_url pu;
    http_parser_url_init(&pu);
    if (http_parser_parse_url(url, r->url_len, p->method == HTTP_CONNECT, &pu) != 0) {
        upstream__stats_add(u, &u->stats.bad_requests);
        return upstream__req_build_text(r, 400, "bad request target\n", head, close);
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
            return upstream__req_build_text(r, 405, stats ? "use GET\n" : "use POST\n", head,
                                            close);
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

    const struct header *key = upstream__req_header(r, "Idempotency-Key");
    const char *key_s = key ? r->head.data + key->value_off : NULL;
    uint64_t attempt = 0;
    upstream__stats_received(u, r, key_s, key ? key->value_len : 0, key_s ? key_s : url,
                             key ? key->value_len : r->url_len, key != NULL,
                             pm.has_fail_first ? &attempt : NULL);
    if (pm.bad) {
        char text[96];
        snprintf(text, sizeof text, "bad value for query parameter %.*s\n", (int)pm.bad_len, pm.bad);
        rc = upstream__req_build_text(r, 400, text, head, close);
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
        if (upstream__buf_printf(&json, "{\"ok\":%s,\"status\":%d,\"method\":\"%s\",\"path\":",
                                 status < 400 ? "true" : "false", status,
                                 http_method_str((enum http_method)p->method)) < 0 ||
            append_json_string(&json, path, path_len) < 0 ||
            (pm.has_fail_first
                 ? upstream__buf_printf(&json, ",\"attempt\":%llu}", (unsigned long long)attempt)
                 : upstream__buf_append(&json, "}", 1)) < 0)
            goto out;
        a.content_type = "application/json";
        a.body = json.data;
        a.body_len = json.len;
    }
    rc = req_build(r, &a, close);
out:
    free(echo);
    upstream__buf_free(&json);
    params_free(&pm);
    return rc;
}
