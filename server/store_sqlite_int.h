/* Internals of the SQLite store, shared by store_sqlite.c (open, the loop side, close),
 * store_sqlite_write.c (the writer thread) and store_sqlite_read.c (reads, recovery, the
 * background check). Nothing else includes this file.
 *
 * Threads and what each owns:
 *   loop thread   submits jobs, runs every callback (completion queue + ev_async).
 *   writer        the only writable connection (wdb) and the jobs it has taken (wlist).
 *   reader        a read-only connection (rdb) for read_results pages.
 *   checker       a read-only connection (cdb) for one PRAGMA quick_check after open.
 * They meet only in three mutex-protected queues: wq (to the writer), rq (to the reader),
 * cq (back to the loop). */
#ifndef BATCHD_STORE_SQLITE_INT_H
#define BATCHD_STORE_SQLITE_INT_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>

#include "list.h"
#include "store.h"
#include "store_sqlite.h"

#define SQ_SCHEMA_VERSION 1
/* Rows per write transaction (notes pitfall 2: uncapped groups built 1M-row transactions). */
#define SQ_TX_ROWS 5000
/* How long a connection waits for a lock. Only the writer writes, so this only matters
 * against a checkpoint or an outside sqlite3 shell. */
#define SQ_BUSY_MS 5000
#define SQ_RETRY_MS 500
/* While closing, a failing writer gives up after this long (the writes were never
 * acknowledged: their callbacks get STORE_ECLOSED, the work runs again after a restart). */
#define SQ_CLOSE_GIVEUP_MS 5000
/* Rows one read_results page may hold; limit 0 also means this. */
#define SQ_READ_MAX 10000

/* batches.phase: a batch row is live (0), still being written in chunks (1) or being
 * deleted in chunks (2). Rows not live at open were never acknowledged (1) or were
 * meant to go (2): both are deleted then. */
enum { SQ_LIVE = 0, SQ_LOADING = 1, SQ_DELETING = 2 };

typedef enum sq_kind {
    SQ_PUT_BATCH,
    SQ_PUT_RESULT,
    SQ_PUT_SUMMARY,
    SQ_DELETE,
    SQ_READ,
    SQ_HEALTH,
} sq_kind;

/* One unit of work. Created on the loop thread with copies (or references) of what it
 * needs, handed to a thread, handed back through cq, freed on the loop thread. */
typedef struct sq_job {
    list_node link;
    sq_kind kind;
    store_err err;
    char *id;                  /* batch id (owned) */
    store_done_fn done;
    void *arg;
    /* Writer only. Bulk jobs (put_batch, delete) are written over several transactions:
     * prog counts what is committed, prog_tx what the open transaction added on top. */
    uint64_t prog, prog_tx;
    int touched, finished_tx;
    union {
        struct {
            batch *b;          /* b->refs held: items[i].op is read on the writer */
            uint32_t total;
            int state;
            int64_t created_ns, end_ns;
            grpc_slice snapshot;
            char *request_id;
            uint8_t fingerprint[32];
            store_result *ended; /* items already ended at submit (reused results) */
            size_t n_ended;
        } put;
        struct {
            store_result r;
            char *key;         /* NULL unless remembered (a success with a key) */
            int64_t key_ns;
        } result;
        struct {
            int state;
            int64_t end_ns;
            grpc_slice snapshot;
        } summary;
        struct {
            int64_t keys_before_ns;
        } del;
        struct {
            uint32_t from, limit;
            int by_seq, state;
            store_read_fn fn;
            void *arg;
            store_result *v;
            size_t n;
        } read;
        struct {
            int healthy;
        } health;
    } u;
} sq_job;

/* Writer statements, prepared at open on wdb. */
enum {
    W_BEGIN, W_COMMIT, W_ROLLBACK, W_INS_BATCH, W_FIND, W_SET_PHASE, W_MARK_DELETE, W_INS_OP,
    W_INS_RESULT, W_INS_RESULT_ID, W_INS_KEY, W_SUMMARY, W_DEL_OPS, W_DEL_RESULTS, W_DEL_KEYS,
    W_DEL_BATCH, W_COUNT
};
/* The reader's statements; a read job's mode (u.read.by_seq) is one of them. */
enum { R_BY_INDEX, R_BY_SEQ, R_OPS, R_COUNT };

typedef struct sq_store {
    store base;
    struct ev_loop *loop;
    char *path;                     /* DIR/batchd.db */
    int synchronous;                /* as read back from the writer's connection */
    void (*health_changed)(void *arg, int healthy);
    void *health_arg;

    /* Loop thread only. */
    ev_async wake;
    size_t outstanding;             /* jobs submitted, callbacks not yet run */
    int healthy;                    /* as last told to the loop */
    int closed;

    /* Writer. wq and wclosing under wmu; the rest belongs to the writer thread. */
    pthread_t writer;
    int writer_started;
    sqlite3 *wdb;
    sqlite3_stmt *wst[W_COUNT];
    pthread_mutex_t wmu;
    pthread_cond_t wcv;
    list_node wq;
    int wclosing;
    list_node wlist;                /* taken from wq, not yet durable; submission order */
    size_t n_bulk, n_small;         /* jobs of each kind in wlist */
    int wfailing;
    int64_t wal_warn_ns;            /* next time a WAL warning may be logged */
    const char **blocked;           /* open addressing set of ids held back this tx */
    size_t blocked_cap, blocked_n;

    /* Reader. rq and rclosing under rmu. */
    pthread_t reader;
    int reader_started;
    sqlite3 *rdb;
    sqlite3_stmt *rst[R_COUNT];
    pthread_mutex_t rmu;
    pthread_cond_t rcv;
    list_node rq;
    int rclosing;

    /* Checker: cdb and checking under kmu (close interrupts a running check). */
    pthread_t checker;
    int checker_started;
    sqlite3 *cdb;
    pthread_mutex_t kmu;
    int checking;

    /* Completions: cq under cmu. */
    pthread_mutex_t cmu;
    list_node cq;

    _Atomic uint64_t n_commits, n_rows, n_max_rows, n_retries, n_rejected;
} sq_store;

/* store_sqlite.c */
/* Any thread: hands finished jobs (a list, emptied) back to the loop thread. */
void sq_complete(sq_store *s, list_node *jobs);
/* "path: message (what)" from the connection's last error. */
void sq_errf(char *err, size_t errlen, const char *path, sqlite3 *db, int rc, const char *what);
store_err sq_store_err(int rc);
int sq_exec(sqlite3 *db, const char *sql);
int sq_step_done(sqlite3_stmt *st);
void sq_bind_slice(sqlite3_stmt *st, int i, grpc_slice sl);
grpc_slice sq_column_slice(sqlite3_stmt *st, int col);
void sq_job_free(sq_job *j);

/* store_sqlite_write.c */
void *sq_writer_main(void *arg);
int sq_writer_prepare(sq_store *s);

/* store_sqlite_read.c */
void *sq_reader_main(void *arg);
void *sq_checker_main(void *arg);
int sq_reader_prepare(sq_store *s);
store_err sq_load(store *st, store_load_fn fn, void *arg, char *err, size_t errlen);
store_err sq_load_keys(store *st, int64_t newer_than_ns, store_key_fn fn, void *arg, char *err, size_t errlen);

#endif
