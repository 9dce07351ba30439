/* A controllable HTTP/1.1 upstream for tests, demos and benchmarks: a loopback server on its
 * own libev loop and thread that answers as each request's query string asks and counts what it saw. */
#ifndef BATCHD_UPSTREAM_H
#define BATCHD_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

/*
 * Request behaviour. One upstream serves every test case because the request itself says how
 * to answer. Query parameters, on any path (values are URL-decoded, '+' as a space; an unknown
 * parameter is ignored; a bad value gets 400 naming it, counted as a request, connection kept):
 *
 *   status=N        answer with status N (200..599, default 200).
 *   delay_ms=N      answer N ms after the request was fully received (0..600000). The wait is an
 *                   ev_timer, so other connections and pipelined requests go on meanwhile; responses
 *                   on one connection still leave in request order.
 *   body=TEXT       the response body is TEXT, as text/plain.
 *   size=N          the response body is N bytes (0..64 MiB) of a repeating a-z pattern, as
 *                   application/octet-stream.
 *   retry_after=S   adds "Retry-After: S" (S must not hold control characters).
 *   fail_first=N    the first N requests with the same retry key are answered with fail_status
 *   fail_status=N   (default 503, 200..599) and every later one with status. The retry key is the
 *                   Idempotency-Key header when present, otherwise the whole request target
 *                   (path and query), so a test without the header must use a path of its own.
 *   drop=1          close the connection instead of answering (after delay_ms, and after the
 *                   responses to earlier requests on the connection have been written): the client
 *                   sees a connection error. For drop, chunked and echo the bare name means =1.
 *   chunked=1       send the body with Transfer-Encoding: chunked, in at least two chunks when it
 *                   has two bytes or more (HTTP/1.0 clients get Content-Length instead).
 *   echo=1          answer as GET /echo does, below.
 *
 * Which body is sent: echo, else body=, else size=, else the default JSON. 204 and 304 answers
 * carry no body; HEAD answers carry the headers of the body they would have sent.
 *
 * Paths:
 *   /echo           application/json describing the request (status= still applies):
 *                   {"method":"POST","path":"/echo","query":"a=1","version":"1.1",
 *                    "headers":{"content-type":"text/plain",...},"body":"...","body_length":N}
 *                   Header names are lowercased; repeated headers are joined with ", ". A body that
 *                   is not UTF-8 is sent as "body_base64" instead of "body".
 *   GET /_stats     the counters below as JSON:
 *                   {"requests":N,"in_flight":N,"max_in_flight":N,"keys":N,"max_key_count":N,
 *                    "connections":N,"bad_requests":N}
 *   POST /_reset    upstream_reset_stats(), answers {"ok":true}.
 *   anything else   the default answer: status as asked, application/json
 *                   {"ok":true,"status":200,"method":"GET","path":"/users/7"} ("ok" is false for
 *                   status >= 400; "attempt":N is added when fail_first is in the query).
 *   /_stats and /_reset are control requests: they are not counted, and any other method on
 *   them gets 405.
 *
 * Protocol: HTTP/1.1 keep-alive by default (HTTP/1.0 only with "Connection: keep-alive"),
 * "Connection: close" honoured, request bodies by Content-Length or chunked, pipelined requests
 * answered in order, "Expect: 100-continue" answered with 100 when nothing is queued before it. At most 128
 * requests (or 1 MiB of built answers) per connection are read ahead of their answers; past
 * that the connection is not read until answers leave.
 * Limits: a request head over max_head_bytes gets 431, a body over max_body_bytes gets 413,
 * a request the parser refuses gets 400; all three close the connection after the answer and
 * count as bad_requests, not as requests. The parser is Debian's libhttp-parser (nodejs
 * http-parser 2.9).
 */

/* Zero-initialise and set what you need: every zero field takes its default. */
typedef struct upstream_config {
    const char *host;      /* numeric IPv4 or IPv6 address to bind; NULL = "127.0.0.1" */
    int port;              /* 0 = an ephemeral port, see upstream_port() */
    size_t max_head_bytes; /* 0 = 64 KiB: request line plus headers */
    size_t max_body_bytes; /* 0 = 8 MiB: decoded request body */
} upstream_config;

/* A snapshot of the counters. Control requests (/_stats, /_reset) are never counted. */
typedef struct upstream_stats {
    uint64_t requests;      /* requests fully received since start or the last reset */
    uint64_t in_flight;     /* received fully, not yet answered (or dropped); not reset */
    uint64_t max_in_flight; /* highest in_flight seen; a reset lowers it to the current in_flight */
    uint64_t keys;          /* distinct Idempotency-Key values seen */
    uint64_t max_key_count; /* requests carrying the most frequent Idempotency-Key */
    uint64_t connections;   /* connections accepted */
    uint64_t bad_requests;  /* requests refused with 400, 413 or 431 */
} upstream_stats;

typedef struct upstream upstream;

/* Binds cfg->host:cfg->port, listens, and starts serving on a new thread with its own libev
 * loop (ev_loop_new). cfg may be NULL for all defaults and is not kept. Returns NULL with errno
 * set when the address is bad (EINVAL), cannot be bound, or a resource runs out. The process's
 * signal dispositions are left alone (writes use MSG_NOSIGNAL); the thread inherits the caller's
 * signal mask. The caller owns the result and must pass it to upstream_stop(). */
upstream *upstream_start(const upstream_config *cfg);

/* The bound port (the ephemeral one when cfg->port was 0). */
int upstream_port(const upstream *u);

/* Stops the thread, closes the listener and every connection (answers not yet sent are lost),
 * and frees u. Call once, from any thread but the upstream's own; u is invalid afterwards. */
void upstream_stop(upstream *u);

/* The following are safe from any thread while the upstream runs. */

/* Copies the counters into *out. */
void upstream_get_stats(upstream *u, upstream_stats *out);

/* How many counted requests carried "Idempotency-Key: key" (0 for one never seen). */
uint64_t upstream_key_count(upstream *u, const char *key);

/* Zeroes every counter and forgets every Idempotency-Key and fail_first retry key, except
 * in_flight, which describes requests still held, and max_in_flight, which restarts from it. */
void upstream_reset_stats(upstream *u);

#endif
