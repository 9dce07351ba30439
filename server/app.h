/* The batchd server as one object: configuration, the loop, the gRPC server, the batch
 * registry, the executor and the HTTP targets. No global state: tests run several in one
 * process. Everything here runs on the loop thread except where said. */
#ifndef BATCHD_APP_H
#define BATCHD_APP_H

#include <ev.h>
#include <stdint.h>

#include "batch.h"
#include "config.h"
#include "exec.h"
#include "http.h"
#include "list.h"
#include "rpc.h"
#include "store.h"
#include "strmap.h"

/* Methods served; each rpc_*.c file fills its entries. */
enum app_method {
    APP_SUBMIT_BATCH,
    APP_WATCH_BATCH,
    APP_GET_BATCH,
    APP_LIST_BATCHES,
    APP_CANCEL_BATCH,
    APP_LIST_RESULTS,
    APP_LIST_OPERATIONS,
    APP_HEALTH_CHECK,
    APP_HEALTH_WATCH,
    APP_REFLECTION_V1,
    APP_REFLECTION_V1ALPHA,
    APP_N_METHODS
};

enum app_state { APP_SERVING, APP_DRAINING, APP_STOPPING, APP_STOPPED };

typedef struct app {
    struct ev_loop *loop;
    const config *cfg;
    enum app_state state;
    rpc_server *rpc;
    rpc_method methods[APP_N_METHODS];            /* path NULL: not served (e.g. --no-reflection) */
    const rpc_method *method_ptrs[APP_N_METHODS]; /* the served ones, packed */
    size_t n_methods;
    batch_registry reg;
    store *store;
    strmap requests;          /* request_id -> batch, while younger than --idempotency-ttl */
    strmap keys;              /* idempotency_key -> app_key of its latest success */
    http_client *http;
    target *targets;
    exec *exec;

    list_node watchers;       /* open WatchBatch streams */
    uint32_t n_watchers;
    list_node dirty_watchers; /* watchers with something to send, flushed once per loop turn */
    list_node waiters;        /* SubmitBatch calls waiting for their batch to end */
    list_node health_watchers; /* open Health.Watch streams */
    uint32_t n_health_watchers;
    int health_serving;       /* what Health reports for "" and batch.v1.BatchService */
    struct reflection *reflection; /* rpc_reflection.c's index and streams; NULL: --no-reflection */
    ev_prepare flush;

    ev_async stop_request;    /* app_request_stop, from any thread */
    ev_timer grace_timer;     /* polls the running items while draining */
    ev_timer sweep_timer;     /* retention, eviction, key expiry (sweep.c) */
    int store_healthy;        /* as the store last said: its writes succeed */
    int64_t grace_end_ns;     /* monotonic end of the grace period */
    int exit_code;
} app;

/* Creates the server, binds cfg->listen and starts serving on loop. cfg must outlive the
 * app. NULL with a message in err on failure. */
app *app_new(struct ev_loop *loop, const config *cfg, char *err, size_t errlen);
int app_port(const app *a);

/* Graceful shutdown: new batches get UNAVAILABLE, running items get the grace period,
 * watchers get their final event or UNAVAILABLE, then the loop has nothing left to run
 * and ev_run returns. */
void app_stop(app *a);
/* app_stop from any thread. */
void app_request_stop(app *a);
/* After ev_run returned. */
void app_free(app *a);

/* Registers a new batch: findable by id, and by request_id if it has one. */
void app_register_batch(app *a, batch *b);
/* The batch submitted with request_id within the TTL, or NULL. */
batch *app_find_request(app *a, const char *request_id);
/* The latest success of an item with this idempotency key within the TTL: 0 with where
 * it is (batch id, item index), -1 if none. */
int app_key_lookup(app *a, const char *key, char batch_id[BATCH_ID_LEN + 1], uint32_t *index);
/* Remembers (or moves) key to the success of item index of batch_id. 0, or -1 on ENOMEM. */
int app_remember_key(app *a, const char *key, const char *batch_id, uint32_t index, int64_t created_ns);
/* Forgets keys remembered before cutoff_ns; returns how many. */
unsigned app_expire_keys(app *a, int64_t cutoff_ns);
/* Removes an ended batch from memory (its observers are told), and its request_id. */
void app_forget_batch(app *a, batch *b);

/* Handlers' shared replies. */
void app_fail_not_found(rpc_call *c, const char *batch_id);
void app_fail_draining(rpc_call *c);
/* RESOURCE_EXHAUSTED for a request refused for want of memory before anything was created:
 * retrying later may work, so the answer carries RetryInfo. */
void app_fail_no_memory(rpc_call *c, const char *what);

#endif
