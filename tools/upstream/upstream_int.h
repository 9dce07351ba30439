/* Private to the upstream's files: the server, connection and request structs, and the functions
 * one file calls in another (upstream__). upstream.c: listener, thread, counters and the byte
 * buffer; upstream_conn.c: connections, parsing and the request queue; upstream_answer.c: what
 * each request is answered. */
#ifndef BATCHD_UPSTREAM_INT_H
#define BATCHD_UPSTREAM_INT_H

#include <ev.h>
#include <http_parser.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upstream.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#define CONN_IN_SIZE (16 * 1024)

/* ---- growable byte buffer (upstream.c) ---- */

struct buf {
    char *data;
    size_t len, cap;
};

/* 0, or -1 when memory ran out (b is then unchanged). */
int upstream__buf_reserve(struct buf *b, size_t extra);
int upstream__buf_append(struct buf *b, const void *p, size_t n);
int upstream__buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void upstream__buf_free(struct buf *b);

/* ---- string -> count table (upstream.c) ---- */

struct key_table {
    struct key_entry **slots;
    size_t nslots, n;
};

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

/* ---- counters (upstream.c) ---- */

/* A request fully received: counts it, and holds it in in_flight until
 * upstream__stats_answered. key: its Idempotency-Key, or NULL. attempt (when not NULL) gets
 * how many requests have carried this retry key, this one included. */
void upstream__stats_received(upstream *u, struct req *r, const char *key, size_t key_len,
                              const char *retry_key, size_t retry_len, bool retry_is_key,
                              uint64_t *attempt);
/* r is answered or freed: no longer in flight (nothing when it was never counted). */
void upstream__stats_answered(upstream *u, struct req *r);
/* Adds one to the counter *field of u->stats. */
void upstream__stats_add(upstream *u, uint64_t *field);

/* ---- connections and requests (upstream_conn.c) ---- */

/* Accepts the connected socket fd (non-blocking) onto u's loop; -1 when memory ran out. */
int upstream__conn_new(upstream *u, int fd);
/* Stops every watcher of c and its requests, then frees them. */
void upstream__conn_destroy(struct conn *c);
/* The first header of r named name (case-insensitively), or NULL. */
const struct header *upstream__req_header(const struct req *r, const char *name);

/* ---- answers (upstream_answer.c) ---- */

/* Decides and builds the answer of the fully received r into r->resp (or sets r->drop), and
 * how long to hold it back; close: the connection closes after it. -1 only on ENOMEM. */
int upstream__req_answer(struct req *r, bool close, unsigned long *delay_ms);
/* A text/plain answer of text into r->resp; -1 on ENOMEM. */
int upstream__req_build_text(struct req *r, int status, const char *text, bool head, bool close);

#endif
