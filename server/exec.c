/* The executor: a round-robin ring of batches with startable work, limits checked at
 * every start, one attempt struct per item that is running or waiting for a retry. */
#include "exec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "list.h"
#include "log.h"
#include "pbtime.h"
#include "result.h"

typedef enum attempt_state {
    ATT_RUNNING,  /* the target has it */
    ATT_BACKOFF,  /* waiting for its retry timer */
    ATT_READY,    /* retry due, queued in batch->retry_ready */
} attempt_state;

typedef struct attempt {
    exec *e;
    batch *b;
    uint32_t idx;
    attempt_state state;
    ev_timer backoff;
    list_node link;                 /* batch->retry_ready while READY */
    list_node live;                 /* exec->live, always */
    target_call tc;
    Batch__V1__Operation *op;       /* unpacked while RUNNING */
    int64_t start_ns;               /* wall clock of the first attempt */
    char key[BATCH_ID_LEN + 2 + 130]; /* derived Idempotency-Key: <batch id>/<item id> */
} attempt;

struct exec {
    struct ev_loop *loop;
    const config *cfg;
    target *targets;
    size_t n_targets;
    store *st;
    exec_hooks hooks;
    void *hooks_arg;
    list_node ring;                 /* batches that may have startable work */
    size_t ring_len;
    list_node live;                 /* every attempt */
    uint32_t inflight, peak;
    int draining;
    int kicked;
    ev_timer rate_timer;
    uint64_t rng;
};

enum try_result { TRY_STARTED, TRY_BLOCKED, TRY_RATE, TRY_EMPTY };

static void finish(exec *e, batch *b, uint32_t idx, attempt *a, const target_response *resp,
                   int state, grpc_status_code code, const char *msg, int check_end);

static uint64_t next_random(exec *e)
{
    /* xorshift64*: retry jitter needs spread, not secrecy. */
    e->rng ^= e->rng >> 12;
    e->rng ^= e->rng << 25;
    e->rng ^= e->rng >> 27;
    return e->rng * 2685821657736338717ULL;
}

static void kick(exec *e) { e->kicked = 1; }
void exec_kick(exec *e) { kick(e); }

static void ring_add(exec *e, batch *b)
{
    if (!list_linked(&b->run_link)) {
        list_push_back(&e->ring, &b->run_link);
        e->ring_len++;
    }
    kick(e);
}

static void ring_remove(exec *e, batch *b)
{
    if (list_linked(&b->run_link)) {
        list_remove(&b->run_link);
        e->ring_len--;
    }
}

/* Token bucket with a burst of a tenth of a second's worth (at least one token).
 * Returns 1 if a token is available now, else 0 with *wait_ns until there is one. */
static int bucket_ready(double *tokens, int64_t *last_ns, double rate, int64_t now, int64_t *wait_ns)
{
    if (rate <= 0)
        return 1;
    double burst = rate * 0.1 < 1 ? 1 : rate * 0.1;
    if (*last_ns == 0) {
        *tokens = 1;
        *last_ns = now;
    }
    *tokens += (double)(now - *last_ns) * rate / 1e9;
    if (*tokens > burst)
        *tokens = burst;
    *last_ns = now;
    if (*tokens >= 1)
        return 1;
    *wait_ns = (int64_t)((1 - *tokens) / rate * 1e9) + 1;
    return 0;
}

static int64_t item_timeout_ns(const exec *e, const batch *b, const Batch__V1__Operation *op)
{
    int64_t ns;
    if (op->timeout && pbtime_duration_ns(op->timeout, &ns) == 0 && ns > 0)
        return ns;
    if (b->options->item_timeout && pbtime_duration_ns(b->options->item_timeout, &ns) == 0 && ns > 0)
        return ns;
    return e->cfg->default_item_timeout_ns;
}

static void attempt_free(attempt *a)
{
    if (a->op)
        batch__v1__operation__free_unpacked(a->op, NULL);
    target_response_clear(&a->tc.resp);
    list_remove(&a->live);
    a->b->items[a->idx].att = NULL;
    free(a);
}

static void on_done(target_call *tc);

static void start_attempt(exec *e, batch *b, uint32_t idx, attempt *a)
{
    item *it = &b->items[idx];
    target *t = &e->targets[it->target];
    if (a == NULL) {
        a = calloc(1, sizeof *a);
        if (a == NULL) {
            finish(e, b, idx, NULL, NULL, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED,
                   GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory starting the item", 1);
            return;
        }
        a->e = e;
        a->b = b;
        a->idx = idx;
        list_init(&a->link);
        list_push_back(&e->live, &a->live);
        it->att = a;
        a->start_ns = pbtime_wall_ns();
    }
    a->op = batch_item_op(b, idx);
    if (a->op == NULL) {
        finish(e, b, idx, a, NULL, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED, GRPC_STATUS_INTERNAL,
               "the stored operation cannot be read", 1);
        return;
    }
    const char *key = a->op->idempotency_key;
    if (key == NULL || key[0] == '\0') {
        char idbuf[129];
        snprintf(a->key, sizeof a->key, "%s/%s", b->id, batch_item_id(a->op, idx, idbuf));
        key = a->key;
    }
    memset(&a->tc, 0, sizeof a->tc);
    a->tc.op = a->op;
    a->tc.idempotency_key = key;
    a->tc.timeout_ns = item_timeout_ns(e, b, a->op);
    a->tc.max_response_bytes = e->cfg->max_response_bytes;
    a->tc.done = on_done;
    a->tc.resp.retry_after_ns = -1;
    a->state = ATT_RUNNING;
    it->attempts++;
    batch_item_running(b, idx);
    b->running++;
    t->inflight++;
    if (++e->inflight > e->peak)
        e->peak = e->inflight;
    if (t->ops->start(t, &a->tc) < 0)
        on_done(&a->tc); /* failed at once: the same path as any other outcome */
}

static enum try_result try_start(exec *e, batch *b, int64_t now, int64_t *wait_ns)
{
    if (b->state != BATCH__V1__BATCH_STATE__BATCH_STATE_RUNNING || b->end_state)
        return TRY_EMPTY;
    attempt *ready = list_empty(&b->retry_ready) ? NULL
                                                 : container_of(b->retry_ready.next, attempt, link);
    uint32_t idx;
    if (ready) {
        idx = ready->idx;
    } else {
        while (b->next_index < b->total && b->items[b->next_index].outcome)
            b->next_index++; /* ended before dispatch: recovered, reused or cancelled */
        if (b->next_index >= b->total)
            return TRY_EMPTY; /* retries in backoff bring the batch back when due */
        idx = b->next_index;
    }
    if (b->running >= b->options->max_concurrency)
        return TRY_BLOCKED;
    if (b->items[idx].target == ITEM_TARGET_GONE) {
        /* Recovered after a restart that dropped its --target. */
        if (!ready)
            b->next_index++;
        else
            list_remove(&ready->link);
        finish(e, b, idx, ready, NULL, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED, GRPC_STATUS_FAILED_PRECONDITION,
               "its target is no longer configured in batchd", 1);
        return TRY_STARTED;
    }
    target *t = &e->targets[b->items[idx].target];
    if (t->cfg->max_concurrency && t->inflight >= t->cfg->max_concurrency)
        return TRY_BLOCKED;
    int64_t w1 = 0, w2 = 0;
    int ok1 = bucket_ready(&b->tokens, &b->tokens_ns, b->options->max_rate, now, &w1);
    int ok2 = bucket_ready(&t->tokens, &t->tokens_ns, t->cfg->max_rate, now, &w2);
    if (!ok1 || !ok2) {
        *wait_ns = w1 > w2 ? w1 : w2;
        return TRY_RATE;
    }
    if (b->options->max_rate > 0)
        b->tokens -= 1;
    if (t->cfg->max_rate > 0)
        t->tokens -= 1;
    if (ready) {
        list_remove(&ready->link);
    } else {
        b->next_index++;
    }
    start_attempt(e, b, idx, ready);
    return TRY_STARTED;
}

static void dispatch(exec *e)
{
    /* While the store cannot write, finishing more items would only pile up results. */
    if (e->draining || !store_healthy(e->st))
        return;
    int64_t now = pbtime_mono_ns(), min_wait = INT64_MAX;
    for (;;) {
        /* One pass: each batch in the ring gets at most one start, and every visited batch
         * moves to the back, so the next pass (or the next call) goes on from there. */
        size_t n = e->ring_len, started = 0;
        for (size_t k = 0; k < n && !list_empty(&e->ring); k++) {
            if (e->inflight >= e->cfg->max_inflight)
                goto out;
            batch *b = container_of(e->ring.next, batch, run_link);
            ring_remove(e, b);
            int64_t wait = 0;
            enum try_result r = try_start(e, b, now, &wait);
            if (r == TRY_EMPTY)
                continue;
            if (!list_linked(&b->run_link)) {
                list_push_back(&e->ring, &b->run_link);
                e->ring_len++;
            }
            if (r == TRY_STARTED)
                started++;
            else if (r == TRY_RATE && wait < min_wait)
                min_wait = wait;
        }
        if (started == 0)
            break;
    }
out:
    if (min_wait != INT64_MAX) {
        ev_timer_stop(e->loop, &e->rate_timer);
        ev_timer_set(&e->rate_timer, (double)min_wait / 1e9, 0.);
        ev_timer_start(e->loop, &e->rate_timer);
    }
}

void exec_flush(exec *e)
{
    if (e->kicked) {
        e->kicked = 0;
        dispatch(e);
    }
}

static void on_rate_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    exec *e = container_of(w, exec, rate_timer);
    dispatch(e);
}

static void on_backoff(struct ev_loop *loop, ev_timer *w, int revents)
{
    attempt *a = container_of(w, attempt, backoff);
    a->state = ATT_READY;
    list_push_back(&a->b->retry_ready, &a->link);
    ring_add(a->e, a->b);
}

static void schedule_retry(exec *e, attempt *a, int64_t retry_after_ns)
{
    item *it = &a->b->items[a->idx];
    int64_t base = e->cfg->backoff_base_ns;
    for (unsigned i = 1; i < it->attempts && base < e->cfg->backoff_max_ns; i++)
        base *= 2;
    if (base > e->cfg->backoff_max_ns)
        base = e->cfg->backoff_max_ns;
    /* Equal jitter: half fixed, half random, so retries spread out but never hammer. */
    int64_t delay = base / 2 + (int64_t)(next_random(e) % (uint64_t)(base / 2 + 1));
    if (retry_after_ns > delay)
        delay = retry_after_ns;
    if (delay > e->cfg->backoff_max_ns)
        delay = e->cfg->backoff_max_ns;
    batch__v1__operation__free_unpacked(a->op, NULL);
    a->op = NULL;
    target_response_clear(&a->tc.resp);
    a->state = ATT_BACKOFF;
    batch_item_waiting(a->b, a->idx);
    ev_timer_init(&a->backoff, on_backoff, (double)delay / 1e9, 0.);
    ev_timer_start(e->loop, &a->backoff);
}

static int retryable(const target_response *r)
{
    if (r->code == GRPC_STATUS_UNAVAILABLE || r->code == GRPC_STATUS_DEADLINE_EXCEEDED)
        return 1;
    return r->code == GRPC_STATUS_OK &&
           (r->http_status == 429 || r->http_status == 502 || r->http_status == 503 ||
            r->http_status == 504);
}

static void on_done(target_call *tc)
{
    attempt *a = container_of(tc, attempt, tc);
    exec *e = a->e;
    batch *b = a->b;
    item *it = &b->items[a->idx];
    target *t = &e->targets[it->target];
    b->running--;
    t->inflight--;
    e->inflight--;
    kick(e);

    const target_response *r = &tc->resp;
    if (r->code == GRPC_STATUS_OK && r->http_status >= 200 && r->http_status <= 299) {
        finish(e, b, a->idx, a, r, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, GRPC_STATUS_OK, NULL, 1);
        return;
    }
    if (retryable(r) && it->attempts < b->options->max_attempts) {
        if (e->draining) {
            /* Shutting down: leave it unrecorded, so a durable store runs it again. */
            batch_item_waiting(b, a->idx);
            attempt_free(a);
            return;
        }
        if (b->state == BATCH__V1__BATCH_STATE__BATCH_STATE_RUNNING && !b->end_state) {
            schedule_retry(e, a, r->retry_after_ns);
            return;
        }
    }
    char msg[512];
    grpc_status_code code;
    if (r->code != GRPC_STATUS_OK) {
        code = r->code;
        if (code == GRPC_STATUS_DEADLINE_EXCEEDED)
            snprintf(msg, sizeof msg, "no response within %lld ms",
                     (long long)(tc->timeout_ns / PBTIME_NS_PER_MS));
        else
            snprintf(msg, sizeof msg, "upstream unreachable: %s", r->error ? r->error : "unknown error");
    } else {
        code = result_code_for_http(r->http_status);
        const char *reason = result_http_reason(r->http_status);
        snprintf(msg, sizeof msg, "HTTP %d%s%s", r->http_status, *reason ? " " : "", reason);
    }
    finish(e, b, a->idx, a, r, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED, code, msg, 1);
}

static void end_batch(exec *e, batch *b)
{
    ring_remove(e, b);
    batch_end(b, b->end_state ? b->end_state : batch_outcome(b), 0, NULL);
    store_put_summary(e->st, b, NULL, NULL);
}

/* The store made the next result of b durable: it is now recorded for everyone. */
static void on_recorded(void *arg, store_err err)
{
    batch *b = arg;
    exec *e = b->exec;
    if (err == STORE_OK) {
        uint32_t idx = batch_item_record_next(b);
        if (e->hooks.item_ended)
            e->hooks.item_ended(e->hooks_arg, b, idx);
        if (b->last_sequence == b->total && !batch_state_terminal(b->state))
            end_batch(e, b);
    }
    batch_unref(b);
}

/* Builds the item's result, hands it to the store, frees its attempt, and stops the
 * batch when stop_on_failure says so (check_stop). */
static void finish(exec *e, batch *b, uint32_t idx, attempt *a, const target_response *resp,
                   int state, grpc_status_code code, const char *msg, int check_stop)
{
    item *it = &b->items[idx];
    /* The id lives in the operation: the running attempt has it unpacked, others not. */
    Batch__V1__Operation *own_op = a && a->op ? NULL : batch_item_op(b, idx);
    Batch__V1__Operation *op = own_op ? own_op : (a ? a->op : NULL);
    char idbuf[129];
    result_input in = {
        .id = batch_item_id(op, idx, idbuf),
        .index = idx,
        .state = state,
        .resp = resp,
        .code = code,
        .message = msg,
        .attempts = it->attempts,
        .start_ns = a ? a->start_ns : 0,
        .end_ns = pbtime_wall_ns(),
        .sequence = b->next_seq + 1,
    };
    batch_item_finish(b, idx, state, result_build(&in));
    /* A success is remembered under the client's key, so that it is not sent again. */
    const char *key = state == BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED && op && op->idempotency_key[0]
                          ? op->idempotency_key
                          : NULL;
    b->refs++; /* until on_recorded */
    store_put_result(e->st, b, idx, key, on_recorded, b);
    char failed_id[129];
    snprintf(failed_id, sizeof failed_id, "%s", in.id);
    if (a)
        attempt_free(a);
    if (own_op)
        batch__v1__operation__free_unpacked(own_op, NULL);
    if (check_stop && state == BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED && b->options->stop_on_failure) {
        char why[768];
        snprintf(why, sizeof why, "stopped after item %s failed: %s", failed_id, msg ? msg : "");
        exec_cancel(e, b, BATCH__V1__BATCH_STATE__BATCH_STATE_FAILED, code, why);
    }
}

void exec_cancel(exec *e, batch *b, Batch__V1__BatchState state, int code, const char *why)
{
    if (batch_state_terminal(b->state) || b->end_state || b->items == NULL || batch_all_finished(b))
        return;
    b->exec = e; /* it may not have been run yet: a batch still being stored */
    ring_remove(e, b);
    char msg[768];
    snprintf(msg, sizeof msg, "%s", why ? why : "batch cancelled");
    b->end_state = state;
    b->error_code = code;
    free(b->error_message);
    b->error_message = strdup(msg);
    for (uint32_t i = 0; i < b->total; i++) {
        item *it = &b->items[i];
        if (it->outcome)
            continue;
        attempt *a = it->att;
        if (a && a->state == ATT_RUNNING) {
            target *t = &e->targets[it->target];
            t->ops->cancel(t, &a->tc);
            b->running--;
            t->inflight--;
            e->inflight--;
        } else if (a && a->state == ATT_BACKOFF) {
            ev_timer_stop(e->loop, &a->backoff);
        } else if (a && a->state == ATT_READY) {
            list_remove(&a->link);
        }
        finish(e, b, i, a, NULL, BATCH__V1__ITEM_STATE__ITEM_STATE_CANCELLED, GRPC_STATUS_CANCELLED,
               msg, 0);
    }
    kick(e); /* the batch ends when the store has recorded the last of these */
}

void exec_run(exec *e, batch *b)
{
    b->exec = e;
    if (b->state == BATCH__V1__BATCH_STATE__BATCH_STATE_PENDING) {
        batch_start(b);
        store_put_summary(e->st, b, NULL, NULL);
    }
    if (b->state != BATCH__V1__BATCH_STATE__BATCH_STATE_RUNNING)
        return;
    if (b->last_sequence == b->total) { /* every item was recorded already (recovered) */
        end_batch(e, b);
        return;
    }
    if (!batch_all_finished(b))
        ring_add(e, b);
}

void exec_drain(exec *e) { e->draining = 1; }

void exec_abort_all(exec *e)
{
    e->draining = 1;
    list_node *pos, *tmp;
    list_foreach_safe(pos, tmp, &e->live) {
        attempt *a = container_of(pos, attempt, live);
        batch *b = a->b;
        item *it = &b->items[a->idx];
        if (a->state == ATT_RUNNING) {
            target *t = &e->targets[it->target];
            t->ops->cancel(t, &a->tc);
            b->running--;
            t->inflight--;
            e->inflight--;
            batch_item_waiting(b, a->idx);
        } else if (a->state == ATT_BACKOFF) {
            ev_timer_stop(e->loop, &a->backoff);
        } else {
            list_remove(&a->link);
        }
        attempt_free(a);
    }
    while (!list_empty(&e->ring))
        ring_remove(e, container_of(e->ring.next, batch, run_link));
}

uint32_t exec_inflight(const exec *e) { return e->inflight; }
uint32_t exec_peak_inflight(const exec *e) { return e->peak; }

exec *exec_new(struct ev_loop *loop, const config *cfg, target *targets, size_t n_targets, store *st,
               const exec_hooks *hooks, void *hooks_arg)
{
    exec *e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->loop = loop;
    e->cfg = cfg;
    e->targets = targets;
    e->n_targets = n_targets;
    e->st = st;
    if (hooks)
        e->hooks = *hooks;
    e->hooks_arg = hooks_arg;
    list_init(&e->ring);
    list_init(&e->live);
    if (getrandom(&e->rng, sizeof e->rng, 0) != (ssize_t)sizeof e->rng || e->rng == 0)
        e->rng = (uint64_t)pbtime_mono_ns() | 1;
    ev_timer_init(&e->rate_timer, on_rate_timer, 0., 0.);
    return e;
}

void exec_free(exec *e)
{
    if (e == NULL)
        return;
    exec_abort_all(e);
    ev_timer_stop(e->loop, &e->rate_timer);
    free(e);
}
