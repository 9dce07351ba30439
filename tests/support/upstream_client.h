/* A raw-socket HTTP/1.1 client for the test upstream suites (test_upstream.c,
 * test_upstream_protocol.c): enough to send requests exactly as written (pipelined, cut
 * short, malformed) and check every byte the upstream sends back. Plus the suites' fixture:
 * one upstream per test, in uc_up on port uc_port.
 *
 * Ownership: a struct uc_client is allocated by uc_client_open and freed (and its socket
 * closed) by uc_client_close. A struct uc_response owns its head and body: free them with
 * uc_response_free. uc_body_json returns a new reference. Every helper fails the test
 * (Criterion assertion) on a socket error or a response it cannot read. */
#ifndef BATCHD_UPSTREAM_CLIENT_H
#define BATCHD_UPSTREAM_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upstream.h"

struct uc_client {
    int fd;
    char *buf;
    size_t len, cap;
};

struct uc_response {
    int status;
    char *head; /* status line and headers, NUL-terminated */
    char *body; /* decoded (de-chunked), NUL-terminated */
    size_t body_len;
};

/* Connects to port on the loopback address; reads time out after 10 s (a hung upstream
 * fails the test instead of hanging it). */
struct uc_client *uc_client_open(int port);
void uc_client_close(struct uc_client *c);
/* Sends all n bytes of data. */
void uc_client_send(struct uc_client *c, const char *data, size_t n);
/* Sends the string s. */
void uc_client_sends(struct uc_client *c, const char *s);
/* The value of header name in r->head (copied into out), or NULL. */
const char *uc_resp_header(const struct uc_response *r, const char *name, char *out, size_t outlen);
/* Reads one response. false when the connection ended before its first byte. no_body is for
 * answers to HEAD. */
bool uc_client_read_response(struct uc_client *c, struct uc_response *r, bool no_body);
void uc_response_free(struct uc_response *r);
/* True when the server closed the connection (EOF or reset) without sending more. */
bool uc_client_sees_close(struct uc_client *c);
/* Readable within ms milliseconds? */
bool uc_client_readable(struct uc_client *c, int ms);
/* One request on a fresh connection, one response back. */
struct uc_response uc_fetch(int port, const char *raw);
/* GET target on a fresh connection. */
struct uc_response uc_get(int port, const char *target);
/* The body of r as JSON (fails the test if it is not). */
json_t *uc_body_json(const struct uc_response *r);
/* CLOCK_MONOTONIC in seconds. */
double uc_now_s(void);

/* ---- fixture: one upstream per test (each test runs in its own process) ---- */

/* The upstream of the running test and its port (tests may stop it and start another). */
extern upstream *uc_up;
extern int uc_port;

/* Requests on different connections are read in no promised order: wait (up to 5 s) until the
 * upstream holds n received, unanswered requests. */
void uc_wait_in_flight(uint64_t n);
/* The suite's .init and .fini: start uc_up on an ephemeral port, stop it. */
void uc_start_upstream(void);
void uc_stop_upstream(void);

#endif
