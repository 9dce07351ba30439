/* Test harness for the SQLite store suites (test_store_sqlite*.c): a temp dir and an ev
 * loop per test, batches built with the real registry, collectors for load, load_keys and
 * read_results, and raw SQLite access to check or damage the file. */
#ifndef BATCHD_STORE_HARNESS_H
#define BATCHD_STORE_HARNESS_H

#include <ev.h>
#include <stdint.h>

#include "batch.h"
#include "store.h"
#include "store_sqlite.h"

typedef struct sqt_ctx {
    struct ev_loop *loop;
    batch_registry reg;
    store *st;
    char dir[64];
    char path[96];
    int n_done;           /* write completions so far, any write */
    int health[16];       /* health_changed values in order */
    int n_health;
    int mounted;
} sqt_ctx;

typedef struct sqt_done {
    sqt_ctx *t;
    int calls;
    int order;            /* position among all completions */
    store_err err;
} sqt_done;

typedef struct sqt_loaded_batch {
    Batch__V1__Batch *snap;   /* unpacked snapshot */
    grpc_slice snapshot;
    char *request_id;
    uint8_t fp[32];
    int ended;
    uint32_t n_ops;
    uint8_t **ops;
    uint32_t *op_lens;
    store_result *results;
    size_t n_results;
} sqt_loaded_batch;

typedef struct sqt_loaded {
    sqt_loaded_batch v[8];
    size_t n;
} sqt_loaded;

typedef struct sqt_page {
    int calls;
    store_err err;
    store_result *v;
    size_t n;
} sqt_page;

/* store_done_fn for a sqt_done: counts the call, records err and the completion order. */
void sqt_on_done(void *arg, store_err err);
/* Runs the loop until *counter reaches want or secs pass. */
int sqt_run_until(sqt_ctx *t, const int *counter, int want, double secs);
/* A fresh temp dir, loop and registry; sqt_free closes the store, frees the registry,
 * unmounts what the test mounted there and removes the dir. */
void sqt_init(sqt_ctx *t);
/* Opens the store in t->dir (health changes recorded in t->health); NULL + err on failure. */
store *sqt_try_open(sqt_ctx *t, int sync_full, char *err, size_t errlen);
/* The same, asserting success into t->st. */
void sqt_open(sqt_ctx *t, int sync_full);
void sqt_close(sqt_ctx *t);
void sqt_free(sqt_ctx *t);
/* Mounts made by this test stay in this process (Criterion runs each test in its own). */
int sqt_private_mounts(void);
/* A registered batch of n items with ~300-byte packed operations (so that the store's
 * batch_unref never frees it), a 32-byte fingerprint and the request_id if given. */
batch *sqt_make_batch(sqt_ctx *t, uint32_t n, const char *request_id);
/* Finishes item idx (outcome, seq, result) as the executor does before put_result. */
void sqt_finish_item(batch *b, uint32_t idx, int state, size_t len);
/* Whether s holds exactly the bytes sqt_finish_item made for idx. */
int sqt_blob_ok(grpc_slice s, uint32_t idx, size_t len);
/* store_load_fn into a sqt_loaded: copies everything, takes the result slices. */
int sqt_on_loaded(void *arg, const store_loaded *l);
void sqt_loaded_free(sqt_loaded *L);
/* load() into L, asserting success (free with sqt_loaded_free). */
void sqt_load_all(sqt_ctx *t, sqt_loaded *L);
/* store_read_fn into a sqt_page: keeps the rows and their slices (sqt_page_free). */
void sqt_on_page(void *arg, store_err err, store_result *v, size_t n);
void sqt_page_free(sqt_page *p);
/* read_results, waited for and asserted successful. */
void sqt_read_page(sqt_ctx *t, sqt_page *p, const char *id, uint32_t from, int by_seq, int state, uint32_t limit);
/* Straight SQLite on the file, bypassing the store. */
int64_t sqt_raw_int(const char *path, const char *sql);
void sqt_raw_exec(const char *path, const char *sql);
store_sqlite_stats_t sqt_stats(sqt_ctx *t);
/* put_batch, waited for. */
void sqt_put_batch_durable(sqt_ctx *t, batch *b);

#endif
