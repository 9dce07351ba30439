/* The in-memory store: nothing survives a restart. Writes "complete" on the next loop
 * turn, never inside the call, so the code above runs the same asynchronous paths as
 * with SQLite. Batches are never evicted (there is nowhere to read them back from). */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"

typedef struct completion {
    store_done_fn done;
    void *arg;
} completion;

typedef struct store_memory {
    store base;
    struct ev_loop *loop;
    ev_timer flush;       /* zero-delay: the next loop turn */
    completion *q;
    size_t head, len, cap; /* ring buffer */
} store_memory;

static void on_flush(struct ev_loop *loop, ev_timer *w, int revents)
{
    store_memory *m = (store_memory *)((char *)w - offsetof(store_memory, flush));
    /* Only what was queued before this turn: callbacks may queue more for the next. */
    for (size_t n = m->len; n > 0; n--) {
        completion c = m->q[m->head];
        m->head = (m->head + 1) % m->cap;
        m->len--;
        if (c.done)
            c.done(c.arg, STORE_OK);
    }
    if (m->len)
        ev_timer_start(loop, &m->flush);
}

static void enqueue(store_memory *m, store_done_fn done, void *arg)
{
    if (m->len == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        completion *q = malloc(cap * sizeof *q);
        if (q == NULL) {
            /* Completing now is still correct, only re-entrant: better than losing it. */
            log_error("out of memory queueing a store completion");
            if (done)
                done(arg, STORE_OK);
            return;
        }
        for (size_t i = 0; i < m->len; i++)
            q[i] = m->q[(m->head + i) % m->cap];
        free(m->q);
        m->q = q;
        m->head = 0;
        m->cap = cap;
    }
    m->q[(m->head + m->len) % m->cap] = (completion){done, arg};
    m->len++;
    if (!ev_is_active(&m->flush))
        ev_timer_start(m->loop, &m->flush);
}

static store_err mem_load(store *s, store_load_fn fn, void *arg, char *err, size_t errlen)
{
    return STORE_OK; /* nothing was kept */
}

static store_err mem_load_keys(store *s, int64_t newer_than_ns, store_key_fn fn, void *arg, char *err,
                               size_t errlen)
{
    return STORE_OK;
}

static void mem_put_batch(store *s, batch *b, store_done_fn done, void *arg)
{
    enqueue((store_memory *)s, done, arg);
}

static void mem_put_result(store *s, batch *b, uint32_t index, const char *key, store_done_fn done, void *arg)
{
    enqueue((store_memory *)s, done, arg);
}

static void mem_put_summary(store *s, batch *b, store_done_fn done, void *arg)
{
    enqueue((store_memory *)s, done, arg);
}

static void mem_delete_batch(store *s, const char *batch_id, int64_t keys_before_ns, store_done_fn done,
                             void *arg)
{
    enqueue((store_memory *)s, done, arg);
}

static void mem_read_results(store *s, const char *batch_id, uint32_t from, int by_seq, int state,
                             uint32_t limit, store_read_fn fn, void *arg)
{
    /* Batches never leave memory here, so nobody reads results back from this engine. */
    fn(arg, STORE_ECORRUPT, NULL, 0);
}

static void mem_read_ops(store *s, const char *batch_id, uint32_t from, int state, uint32_t limit,
                         store_read_fn fn, void *arg)
{
    fn(arg, STORE_ECORRUPT, NULL, 0); /* as mem_read_results: never needed */
}

static int mem_healthy(const store *s) { return 1; }
static int mem_durable(const store *s) { return 0; }

static void mem_close(store *s)
{
    store_memory *m = (store_memory *)s;
    while (m->len) /* the queued completions still run, in order */
        on_flush(m->loop, &m->flush, 0);
    ev_timer_stop(m->loop, &m->flush);
    free(m->q);
    free(m);
}

static const store_ops memory_ops = {
    .name = "memory",
    .load = mem_load,
    .load_keys = mem_load_keys,
    .put_batch = mem_put_batch,
    .put_result = mem_put_result,
    .put_summary = mem_put_summary,
    .delete_batch = mem_delete_batch,
    .read_results = mem_read_results,
    .read_ops = mem_read_ops,
    .healthy = mem_healthy,
    .durable = mem_durable,
    .close = mem_close,
};

store *store_memory_new(struct ev_loop *loop)
{
    store_memory *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->base.ops = &memory_ops;
    m->loop = loop;
    ev_timer_init(&m->flush, on_flush, 0., 0.);
    return &m->base;
}
