/* Where batches, operations and results are kept. The executor and the RPC layer see
 * only this interface; engines: memory (store_memory.c: nothing survives a restart) and
 * SQLite (store_sqlite.c: --data-dir). A shared engine (e.g. Redis) would be a third.
 *
 * Threading: every function here is called on the loop thread, and every callback runs
 * on the loop thread. An engine does its I/O elsewhere; it must not block the loop.
 *
 * Ordering: writes of one batch complete in the order they were submitted. Results of one
 * batch are therefore durable in sequence order, so the durable results of a batch always
 * form a prefix 1..n of its sequence numbers — what lets watchers resume across a crash.
 * Writes of different batches may complete out of submission order: SQLite writes a large
 * put_batch over several transactions and lets other batches' results pass it. [store_sqlite]
 *
 * What the engine reads from the loop's objects: a write copies or references (slices)
 * everything it needs before it returns; it never touches a batch afterwards — except
 * that put_batch may read the (immutable) items[i].op from its own thread while it holds
 * a b->refs reference, dropped on the loop thread after done. [store_sqlite] */
#ifndef BATCHD_STORE_H
#define BATCHD_STORE_H

#include <ev.h>
#include <grpc/slice.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"

typedef struct store store;

/* Outcome of a store operation. */
typedef enum store_err {
    STORE_OK = 0,
    STORE_EIO,        /* the write failed (disk full, I/O error): retried until it succeeds */
    STORE_ECORRUPT,   /* the data does not read back */
    STORE_ENOMEM,
    STORE_ECLOSED,    /* the store is shutting down */
} store_err;

const char *store_strerror(store_err e);

/* A write became durable (err 0), or could not be made (only STORE_ECLOSED: a failing
 * write is retried, not dropped). */
typedef void (*store_done_fn)(void *arg, store_err err);

/* One stored result, as read back. */
typedef struct store_result {
    uint32_t index;
    uint32_t seq;
    int state;          /* Batch__V1__ItemState */
    grpc_slice result;  /* packed ItemResult; the reader takes the reference */
} store_result;

/* A page of results (n of them, count may be 0 at the end). err != 0: the read failed. The
 * callback owns the slices in v (grpc_slice_unref each); v itself is freed after it returns. */
typedef void (*store_read_fn)(void *arg, store_err err, store_result *v, size_t n);

/* What recovery hands back for one stored batch. */
typedef struct store_loaded {
    grpc_slice snapshot;      /* packed Batch as last stored (counts may lag the results);
                               * borrowed: valid during the callback (ref it to keep it) */
    const char *request_id;   /* NULL if none */
    const uint8_t *fingerprint; /* 32 bytes; valid during the callback */
    int ended;                /* ended batches come without ops and results */
    /* Unfinished batches only: */
    uint32_t n_ops;
    const uint8_t *const *ops;  /* ops[i]: packed Operation of item i (valid during the callback) */
    const uint32_t *op_lens;
    store_result *results;    /* recorded results; the callback takes the slice references */
    size_t n_results;
} store_loaded;

/* Called once per stored batch, oldest first. Returns 0 to go on, -1 to stop the load. */
typedef int (*store_load_fn)(void *arg, const store_loaded *l);

/* A remembered successful result for an idempotency key. */
typedef struct store_key {
    const char *key;
    const char *batch_id;
    uint32_t index;
    int64_t created_ns;
} store_key;
typedef int (*store_key_fn)(void *arg, const store_key *k);

typedef struct store_ops {
    const char *name;
    /* Recovery, before serving: batches (load) and idempotency keys younger than the TTL
     * (keys). Synchronous. Returns 0, or an error with a message in err. */
    store_err (*load)(store *s, store_load_fn fn, void *arg, char *err, size_t errlen);
    store_err (*load_keys)(store *s, int64_t newer_than_ns, store_key_fn fn, void *arg, char *err,
                           size_t errlen);
    /* A new batch with its operations (and the results of items already ended, e.g. reused
     * ones). done when all of it is durable: only then may SubmitBatch answer. */
    void (*put_batch)(store *s, batch *b, store_done_fn done, void *arg);
    /* The result of item index (its slice, seq and state are read from the batch now). key
     * (may be NULL) is remembered for item idempotency when the result is a success. */
    void (*put_result)(store *s, batch *b, uint32_t index, const char *key, store_done_fn done, void *arg);
    /* The batch's own fields (state, times, counts, error) as they are now. */
    void (*put_summary)(store *s, batch *b, store_done_fn done, void *arg);
    /* Deletes a batch with everything it holds, and idempotency keys older than keys_before_ns. */
    void (*delete_batch)(store *s, const char *batch_id, int64_t keys_before_ns, store_done_fn done, void *arg);
    /* Pages of results in index order from from_index (state 0: all states), or in
     * sequence order after after_seq (by_seq). */
    void (*read_results)(store *s, const char *batch_id, uint32_t from, int by_seq, int state,
                         uint32_t limit, store_read_fn fn, void *arg);
    /* Pages of operations in index order from `from`, as store_result records whose result
     * holds the packed Operation, seq 0, and state the item's recorded state (0 while it
     * has none); state filters on it (0: all). */
    void (*read_ops)(store *s, const char *batch_id, uint32_t from, int state, uint32_t limit,
                     store_read_fn fn, void *arg);
    /* Whether writes currently succeed (0 while a failing write is being retried). */
    int (*healthy)(const store *s);
    /* Whether results can be read back after the batch's items left memory. */
    int (*durable)(const store *s);
    /* Finishes queued writes (their callbacks run), then frees the store. */
    void (*close)(store *s);
} store_ops;

struct store {
    const store_ops *ops;
};

/* The engines. Both return NULL with a message in err on failure. */
store *store_memory_new(struct ev_loop *loop);
typedef struct store_sqlite_opts {
    const char *dir;      /* created if missing; holds batchd.db (+ -wal, -shm) */
    int sync_full;        /* synchronous=FULL (fsync every commit) vs NORMAL */
    /* Told on the loop thread when writes start failing (0) and work again (1). Optional. */
    void (*health_changed)(void *arg, int healthy);
    void *health_arg;
} store_sqlite_opts;
store *store_sqlite_open(struct ev_loop *loop, const store_sqlite_opts *o, char *err, size_t errlen);

/* Shorthands. */
#define store_put_batch(s, ...) ((s)->ops->put_batch((s), __VA_ARGS__))
#define store_put_result(s, ...) ((s)->ops->put_result((s), __VA_ARGS__))
#define store_put_summary(s, ...) ((s)->ops->put_summary((s), __VA_ARGS__))
#define store_delete_batch(s, ...) ((s)->ops->delete_batch((s), __VA_ARGS__))
#define store_read_results(s, ...) ((s)->ops->read_results((s), __VA_ARGS__))
#define store_read_ops(s, ...) ((s)->ops->read_ops((s), __VA_ARGS__))
#define store_healthy(s) ((s)->ops->healthy(s))
#define store_durable(s) ((s)->ops->durable(s))
#define store_close(s) ((s)->ops->close(s))

#endif
