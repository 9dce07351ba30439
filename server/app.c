/* The server object: construction, the per-loop-turn flush, and graceful shutdown. */
#include "app.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pbtime.h"
#include "recover.h"
#include "rpcs.h"
#include "sweep.h"

/* How often a draining server looks whether its running items are done. */
#define DRAIN_POLL_S 0.02
/* After the watchers and waiters were answered, calls still open get this long. */
#define CANCEL_CALLS_AFTER_S 1.0

/* Once per loop turn, in this order: the executor starts what it can (which may change
 * batches), then the watchers get what they are owed. One prepare watcher for both, so
 * that nothing the first does waits for an unrelated event to be seen by the second. */
static void on_flush(struct ev_loop *loop, ev_prepare *w, int revents)
{
    app *a = container_of(w, app, flush);
    exec_flush(a->exec);
    rpc_watch_flush(a);
}

/* Told by a durable store when its writes fail (retried meanwhile) and work again. */
static void on_store_health(void *arg, int healthy)
{
    app *a = arg;
    if (healthy == a->store_healthy)
        return;
    a->store_healthy = healthy;
    if (healthy) {
        log_info("the store writes again: accepting batches");
        exec_kick(a->exec);
    } else {
        log_error("the store cannot write: refusing new batches and pausing items until it can");
    }
}

/* An idempotency key's latest success. */
typedef struct app_key {
    char batch_id[BATCH_ID_LEN + 1];
    uint32_t index;
    int64_t created_ns;
} app_key;

void app_register_batch(app *a, batch *b)
{
    batch_register(&a->reg, b);
    if (b->request_id && strmap_put(&a->requests, b->request_id, b) < 0)
        log_warn("out of memory remembering request_id %s", b->request_id);
}

batch *app_find_request(app *a, const char *request_id)
{
    batch *b = strmap_get(&a->requests, request_id);
    if (b && b->create_ns < pbtime_wall_ns() - a->cfg->idempotency_ttl_ns) {
        strmap_remove(&a->requests, request_id); /* expired: the id may name a new batch */
        return NULL;
    }
    return b;
}

int app_key_lookup(app *a, const char *key, char batch_id[BATCH_ID_LEN + 1], uint32_t *index)
{
    app_key *k = strmap_get(&a->keys, key);
    if (k == NULL || k->created_ns < pbtime_wall_ns() - a->cfg->idempotency_ttl_ns)
        return -1;
    memcpy(batch_id, k->batch_id, BATCH_ID_LEN + 1);
    *index = k->index;
    return 0;
}

int app_remember_key(app *a, const char *key, const char *batch_id, uint32_t index, int64_t created_ns)
{
    app_key *k = strmap_get(&a->keys, key);
    if (k == NULL) {
        if ((k = malloc(sizeof *k)) == NULL)
            return -1;
        if (strmap_put(&a->keys, key, k) < 0) {
            free(k);
            return -1;
        }
    }
    snprintf(k->batch_id, sizeof k->batch_id, "%s", batch_id);
    k->index = index;
    k->created_ns = created_ns;
    return 0;
}

static int key_expired(void *value, void *arg)
{
    return ((app_key *)value)->created_ns < *(int64_t *)arg;
}

unsigned app_expire_keys(app *a, int64_t cutoff_ns)
{
    return (unsigned)strmap_sweep(&a->keys, key_expired, &cutoff_ns, free);
}

void app_forget_batch(app *a, batch *b)
{
    if (b->request_id && strmap_get(&a->requests, b->request_id) == b)
        strmap_remove(&a->requests, b->request_id);
    batch_release(&a->reg, b);
}

/* A recorded success under a client's idempotency key is remembered for reuse. */
static void on_item_recorded(void *arg, batch *b, uint32_t index)
{
    app *a = arg;
    const item *it = &b->items[index];
    if (!it->has_key || it->reused || it->state != BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED)
        return;
    Batch__V1__Operation *op = batch_item_op(b, index);
    if (op == NULL)
        return;
    if (app_remember_key(a, op->idempotency_key, b->id, index, pbtime_wall_ns()) < 0)
        log_warn("out of memory remembering idempotency key %s", op->idempotency_key);
    batch__v1__operation__free_unpacked(op, NULL);
}

static void on_rpc_stopped(void *arg)
{
    app *a = arg;
    a->state = APP_STOPPED;
    log_info("stopped");
    ev_async_stop(a->loop, &a->stop_request); /* the last watcher keeping the loop alive */
    ev_break(a->loop, EVBREAK_ALL);
}

/* Shutdown, second half: whatever still runs is aborted (a durable store runs it again
 * after a restart), every waiting call gets its answer, then gRPC stops. */
static void stop_now(app *a)
{
    if (a->state != APP_DRAINING)
        return;
    a->state = APP_STOPPING;
    ev_timer_stop(a->loop, &a->grace_timer);
    uint32_t left = exec_inflight(a->exec);
    if (left)
        log_warn("grace period over: aborting %u running items", left);
    exec_abort_all(a->exec);
    rpc_batch_release_waiters(a);
    rpc_watch_release_all(a);
    rpc_health_release_all(a);
    rpc_reflection_release_all(a);
    rpc_server_shutdown(a->rpc, CANCEL_CALLS_AFTER_S, on_rpc_stopped, a);
}

static void on_grace(struct ev_loop *loop, ev_timer *w, int revents)
{
    app *a = container_of(w, app, grace_timer);
    if (exec_inflight(a->exec) == 0 || pbtime_mono_ns() >= a->grace_end_ns)
        stop_now(a);
}

void app_stop(app *a)
{
    if (a->state != APP_SERVING)
        return;
    /* Health first, so that load balancers stop sending work before anything is refused. */
    rpc_health_set_serving(a, 0);
    log_info("shutting down: refusing new batches, %u items running", exec_inflight(a->exec));
    a->state = APP_DRAINING;
    exec_drain(a->exec);
    a->grace_end_ns = pbtime_mono_ns() + a->cfg->shutdown_grace_ns;
    ev_timer_init(&a->grace_timer, on_grace, 0., DRAIN_POLL_S);
    ev_timer_start(a->loop, &a->grace_timer);
}

static void on_stop_request(struct ev_loop *loop, ev_async *w, int revents)
{
    app_stop(container_of(w, app, stop_request));
}

void app_request_stop(app *a) { ev_async_send(a->loop, &a->stop_request); }

int app_port(const app *a) { return rpc_server_port(a->rpc); }

void app_fail_not_found(rpc_call *c, const char *batch_id)
{
    rpcstatus *st = rpcstatus_new(GRPC_STATUS_NOT_FOUND, "batch %.64s not found", batch_id);
    if (st) {
        rpcstatus_error_info(st, "BATCH_NOT_FOUND");
        rpcstatus_error_metadata(st, "batch_id", batch_id);
    }
    rpc_call_finish(c, st, NULL);
    rpcstatus_free(st);
}

void app_fail_no_memory(rpc_call *c, const char *what)
{
    rpcstatus *st = rpcstatus_new(GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory %s", what);
    if (st) {
        rpcstatus_retry_after(st, PBTIME_NS_PER_SEC);
        rpcstatus_error_info(st, "OUT_OF_MEMORY");
    }
    rpc_call_finish(c, st, NULL);
    rpcstatus_free(st);
}

void app_fail_draining(rpc_call *c)
{
    rpcstatus *st = rpcstatus_new(GRPC_STATUS_UNAVAILABLE, "batchd is shutting down; retry on another instance or later");
    if (st) {
        rpcstatus_retry_after(st, PBTIME_NS_PER_SEC);
        rpcstatus_error_info(st, "SHUTTING_DOWN");
    }
    rpc_call_finish(c, st, NULL);
    rpcstatus_free(st);
}

app *app_new(struct ev_loop *loop, const config *cfg, char *err, size_t errlen)
{
    app *a = calloc(1, sizeof *a);
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->loop = loop;
    a->cfg = cfg;
    a->state = APP_SERVING;
    list_init(&a->watchers);
    list_init(&a->dirty_watchers);
    list_init(&a->waiters);
    list_init(&a->health_watchers);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (batch_registry_init(&a->reg) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if ((a->http = http_client_new(loop, cfg->max_inflight, err, errlen)) == NULL)
        goto fail;
    if ((a->targets = calloc(cfg->n_targets, sizeof *a->targets)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_targets; i++)
        http_target_init(&a->targets[i], a->http, &cfg->targets[i]);
    strmap_init(&a->requests);
    strmap_init(&a->keys);
    a->store_healthy = 1;
    if (cfg->data_dir) {
        store_sqlite_opts so = {
            .dir = cfg->data_dir,
            .sync_full = cfg->sync == STORE_SYNC_FULL,
            .health_changed = on_store_health,
            .health_arg = a,
        };
        if ((a->store = store_sqlite_open(loop, &so, err, errlen)) == NULL)
            goto fail;
    } else if ((a->store = store_memory_new(loop)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    static const exec_hooks hooks = {.item_ended = on_item_recorded};
    if ((a->exec = exec_new(loop, cfg, a->targets, cfg->n_targets, a->store, &hooks, a)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }

    if (recover_load(a, err, errlen) < 0)
        goto fail;

    rpc_batch_register(a);
    rpc_submit_register(a);
    rpc_watch_register(a);
    rpc_results_register(a);
    rpc_health_register(a);
    if (cfg->reflection && rpc_reflection_register(a, err, errlen) < 0)
        goto fail;
    for (int i = 0; i < APP_N_METHODS; i++) {
        if (a->methods[i].path == NULL) /* not served: gRPC answers it as unknown */
            continue;
        a->methods[i].arg = a;
        a->method_ptrs[a->n_methods++] = &a->methods[i];
    }
    /* gRPC's own limit sits a quarter above ours, so that requests just over the limit get
     * batchd's answer with details (rpc_unpack_request) rather than gRPC's bare one. */
    size_t core_limit = cfg->max_request_bytes + cfg->max_request_bytes / 4;
    rpc_server_opts o = {
        .listen = cfg->listen,
        .max_receive_bytes = core_limit > INT32_MAX ? INT32_MAX : core_limit,
        .methods = a->method_ptrs,
        .n_methods = a->n_methods,
    };
    if ((a->rpc = rpc_server_new(loop, &o, err, errlen)) == NULL)
        goto fail;

    ev_prepare_init(&a->flush, on_flush);
    ev_prepare_start(loop, &a->flush);
    ev_unref(loop);
    ev_async_init(&a->stop_request, on_stop_request);
    ev_async_start(loop, &a->stop_request); /* keeps ev_run going until shutdown completes */
    ev_timer_init(&a->grace_timer, on_grace, 0., 0.);
    sweep_start(a);
    recover_resume(a);
    return a;
fail:
    app_free(a);
    return NULL;
}

void app_free(app *a)
{
    if (a == NULL)
        return;
    if (ev_is_active(&a->flush)) {
        ev_ref(a->loop);
        ev_prepare_stop(a->loop, &a->flush);
    }
    ev_async_stop(a->loop, &a->stop_request);
    ev_timer_stop(a->loop, &a->grace_timer);
    sweep_stop(a);
    /* The executor stops its transfers; the store finishes its writes and reads (their
     * callbacks still reach the executor, batches and calls); then the calls go (their
     * handlers detach from batches); then the batches, then the HTTP client. */
    if (a->exec)
        exec_abort_all(a->exec);
    if (a->store)
        store_close(a->store);
    rpc_server_free(a->rpc);
    rpc_reflection_free(a);
    exec_free(a->exec);
    strmap_free(&a->requests, NULL);
    strmap_free(&a->keys, free);
    batch_registry_free(&a->reg);
    http_client_free(a->http);
    free(a->targets);
    free(a);
    curl_global_cleanup();
}
