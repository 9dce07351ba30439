/* The upstream's connections: reading, parsing with libhttp-parser (the callbacks copy what
 * they are handed into the request), the queue of requests answered in order, writing, and
 * closing with a lingering close. */
#include <errno.h>
#include <ev.h>
#include <http_parser.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "upstream_int.h"

/* Requests parsed ahead of their answers on one connection. Past it parsing pauses, so a client
 * pipelining delayed requests cannot make us hold an unbounded queue. */
#define MAX_QUEUED 128
/* Output not yet taken by a client that keeps sending: stop reading until it drains. The same
 * bound applies to answers built but still queued behind a delayed one (size=N makes them big). */
#define OUT_HIGH_WATER (1024 * 1024)
/* After the last answer before a close, discard input this long so the close is a FIN, not an
 * RST that could destroy the answer in the client's receive buffer (nginx's lingering close). */
#define LINGER_SECONDS 2.0

static void conn_set_state(struct conn *c, enum conn_state s);
static void conn_update(struct conn *c);

/* ---- requests ---- */

static void req_delay_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct req *r = container_of(w, struct req, delay);
    r->state = REQ_READY;
    conn_update(r->conn);
}

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
    upstream__buf_free(&r->head);
    upstream__buf_free(&r->body);
    upstream__buf_free(&r->resp);
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
    upstream__stats_answered(c->u, r);
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

const struct header *upstream__req_header(const struct req *r, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < r->nhdrs; i++)
        if (r->hdrs[i].name_len == n && strncasecmp(r->head.data + r->hdrs[i].name_off, name, n) == 0)
            return &r->hdrs[i];
    return NULL;
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
    return upstream__buf_append(&r->head, at, n);
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
    const struct header *h = upstream__req_header(r, "Expect");
    if (h && h->value_len == 12 && strncasecmp(r->head.data + h->value_off, "100-continue", 12) == 0 &&
        c->head == r && c->out.len == c->out_off &&
        (p->flags & F_CHUNKED || (p->content_length > 0 && p->content_length != ULLONG_MAX)))
        return upstream__buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0 ? -1 : 0;
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
    return upstream__buf_append(&r->body, at, n);
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct req *r = c->cur;
    /* An Upgrade request is answered as any other, and nothing after it is HTTP/1.1. */
    bool close = !http_should_keep_alive(p) || p->upgrade;
    unsigned long delay_ms = 0;
    if (upstream__req_answer(r, close, &delay_ms) < 0)
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
    upstream__stats_add(c->u, &c->u->stats.bad_requests);
    char text[160];
    snprintf(text, sizeof text, "%s\n", why);
    /* Not a HEAD answer even if the method looked like one: the request is not understood. */
    if (upstream__req_build_text(r, status, text, false, true) < 0)
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
            } else if (upstream__buf_append(&c->out, r->resp.data, r->resp.len) < 0) {
                upstream__conn_destroy(c);
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
        upstream__conn_destroy(c);
        return;
    }
    bool idle = c->out.len == 0 && !c->head;
    if (idle && c->state == CONN_DRAINING) {
        if (c->abort_on_drain || c->peer_eof) {
            upstream__conn_destroy(c);
            return;
        }
        conn_set_state(c, CONN_LINGERING);
    } else if (idle && c->state == CONN_OPEN && c->peer_eof) {
        upstream__conn_destroy(c);
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
        upstream__conn_destroy(c);
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
    upstream__conn_destroy(container_of(w, struct conn, linger_timer));
}

/* Stops every watcher of c and its requests, then frees them: nothing can call back into c. */
void upstream__conn_destroy(struct conn *c)
{
    struct ev_loop *loop = c->u->loop;
    ev_io_stop(loop, &c->read_io);
    ev_io_stop(loop, &c->write_io);
    ev_timer_stop(loop, &c->linger_timer);
    while (c->head)
        req_release_head(c);
    if (c->spare)
        req_free(c->spare);
    upstream__buf_free(&c->out);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->u->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

int upstream__conn_new(upstream *u, int fd)
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
    upstream__stats_add(u, &u->stats.connections);
    return 0;
}
