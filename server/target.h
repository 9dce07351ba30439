/* What the executor asks of an upstream kind: start one attempt of an operation, cancel
 * it, and report its response. HTTP (http.c) is the only kind today; the vtable keeps
 * the executor ignorant of libcurl. */
#ifndef BATCHD_TARGET_H
#define BATCHD_TARGET_H

#include <grpc/status.h>
#include <stddef.h>
#include <stdint.h>

#include "batch/v1/batch.pb-c.h"
#include "config.h"

typedef struct target_header {
    char *name;   /* as the upstream sent it */
    char *value;
} target_header;

/* The outcome of one attempt. Everything malloc'd here belongs to the target_call and
 * is released by target_response_clear. */
typedef struct target_response {
    int http_status;              /* 0: no response */
    grpc_status_code code;        /* OK when a response arrived, else why not */
    char *error;                  /* transport failure text, or NULL */
    uint8_t *body;                /* at most max_response_bytes */
    size_t body_len;
    int body_truncated;
    char *content_type;           /* NULL if none */
    target_header *headers;
    size_t n_headers;
    int64_t retry_after_ns;       /* from Retry-After, -1 if absent */
} target_response;

void target_response_clear(target_response *r);

typedef struct target_call target_call;

struct target_call {
    /* Set by the executor before start; borrowed until done or cancel. */
    const Batch__V1__Operation *op;
    const char *idempotency_key;
    int64_t timeout_ns;
    size_t max_response_bytes;
    /* Called on the loop thread when the attempt ends; never from inside start or cancel. */
    void (*done)(target_call *tc);
    target_response resp;         /* filled before done */
    void *priv;                   /* the target's per-attempt state */
};

typedef struct target target;

typedef struct target_ops {
    /* Starts tc. Returns 0 if started (done follows later), or -1 when it failed at once:
     * then tc->resp says why and done is not called. */
    int (*start)(target *t, target_call *tc);
    /* Aborts a started tc; done is not called. */
    void (*cancel)(target *t, target_call *tc);
} target_ops;

struct target {
    const target_ops *ops;
    const target_config *cfg;
    void *impl;                   /* the kind's shared state (the HTTP client) */
    uint32_t inflight;            /* attempts running now */
    double tokens;                /* rate-limit bucket, used by the executor */
    int64_t tokens_ns;
};

#endif
