/* Internals of the SQLite store, shared by store_sqlite.c (open, the loop side, close),
 * store_sqlite_write.c (the writer thread) and store_sqlite_read.c (reads, recovery, the
 * background check). Nothing else includes this file.
 *
 * Threads and what each owns:
 *   loop thread   submits jobs, runs every callback (completion queue + ev_async). Writes
 *                 of one loop turn are collected and handed to the writer together, at
 *                 the end of the turn (one lock, at most one wakeup per turn).
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
#include "pbtime.h"
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
/* Group commit. A writer woken with fewer than SQ_LINGER_ROWS rows waits for more until
 * the oldest of them has waited SQ_LINGER_NS, unless a put_batch is among them (a
 * SubmitBatch waits for its ack); after a commit it stays on call that long (see
 * wait_for_work). Results trickle in a few per loop turn; committing each trickle costs
 * a WAL write of every page it touches (pages, not rows: most of a small commit's
 * bytes), an fsync under FULL, and context switches on a core the loop thread needs.
 * Measured (store_bench, 20k results/s of 200 B, FULL; linger 0 / 1 / 2 ms): 25 / 38 /
 * 58 rows per commit, 1,420 / 1,070 / 870 WAL bytes and 10.1 / 9.2 / 7.1-7.8 us of the
 * store's CPU per result; through batchd (tools/bench/run shape, FULL) 2 ms gave 5 % more
 * items/s than 1 ms. A write waits at most SQ_LINGER_NS plus what is left of the commit
 * under way when it came. store_sqlite_set_linger changes both (tests, benchmarks). */
#define SQ_LINGER_ROWS 512
#define SQ_LINGER_NS (2 * PBTIME_NS_PER_MS)
/* Page size of a new database. Existing ones keep theirs (it changes only with VACUUM).
 * A commit writes every page it touches to the WAL, whole: results come a few dozen per
 * commit, and with 16 KB pages (pitfall 7's choice, made for bulk inserts) that was 2.3x
 * the WAL bytes of 4 KB pages (2,300 vs 1,000 per 200-byte result) for the same CPU;
 * bulk put_batch is ~10 % slower with 4 KB (measured: tools/bench/store_bench). */
#ifndef SQ_PAGE_SIZE /* -DSQ_PAGE_SIZE=16384 builds the alternative for store_bench */
#define SQ_PAGE_SIZE 4096
#endif
/* Checkpoint once the WAL holds this many bytes (notes pitfall 4: 1,000 x 4 KB pages,
 * WAL 4-13 MB, 6.5 ms p50 per checkpoint). 16 MB measured no cheaper per result and
 * doubled the p99 of result acks. */
#ifndef SQ_CHECKPOINT_BYTES /* -D for measuring alternatives */
#define SQ_CHECKPOINT_BYTES (4 * 1024 * 1024)
#endif

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
    W_INS_RESULT, W_INS_KEY, W_SUMMARY, W_DEL_OPS, W_DEL_RESULTS, W_DEL_KEYS, W_DEL_BATCH, W_COUNT
};

/* Operations one INSERT writes while a put_batch has that many left: 2.4x fewer CPU per
 * row than one INSERT each (measured: 0.64 vs 1.51 us for 20-byte ops), and SubmitBatch
 * waits for all of them. */
#define SQ_OPS_PER_STMT 32
/* Results one INSERT writes, the same way (results arrive a few dozen per commit):
 * 16 % fewer CPU per row than singly (measured, 200-byte results). */
#define SQ_RESULTS_PER_STMT 8

/* The writer's memory of batch numbers (batches.bno by id), so that a result is one
 * INSERT rather than an INSERT ... SELECT through the id index: the lookup, and the
 * cursors it opens per row, were about a third of the writer's SQLite time. Exact, as
 * only the writer changes batches: entries come from its own inserts and lookups, go
 * with the batch row, and all go when a transaction rolls back (a rolled-back bno can
 * be handed out again). Direct-mapped: a collision costs one lookup. */
#define SQ_BNO_SLOTS 64
typedef struct sq_bno {
    char id[BATCH_ID_LEN + 1];  /* "" when free */
    int64_t bno;
} sq_bno;
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
    ev_check handover;              /* never started: fed when a turn's first write comes */
    list_node turn;                 /* writes submitted this loop turn, not handed over */
    size_t turn_rows;
    int turn_urgent;
    size_t outstanding;             /* jobs submitted, callbacks not yet run */
    int healthy;                    /* as last told to the loop */
    int closed;

    /* Writer. wq and wclosing under wmu; the rest belongs to the writer thread. */
    pthread_t writer;
    int writer_started;
    sqlite3 *wdb;
    sqlite3_stmt *wst[W_COUNT];
    sqlite3_stmt *wops;             /* SQ_OPS_PER_STMT operations in one INSERT */
    sqlite3_stmt *wresults;         /* SQ_RESULTS_PER_STMT results in one INSERT */
    struct {
        sq_job *j;
        int64_t bno;
    } wrbuf[SQ_RESULTS_PER_STMT];   /* results of the open transaction not yet inserted */
    int wrbuf_n;
    int wsingle;                    /* one row per INSERT: finds the row SQLite refused */
    pthread_mutex_t wmu;
    pthread_cond_t wcv;
    list_node wq;
    size_t wq_rows;                 /* rows the jobs in wq will write */
    int wq_urgent;                  /* wq holds a put_batch: no lingering */
    int64_t wq_since_ns;            /* monotonic: when wq last stopped being empty */
    int wlingering;                 /* the writer waits for more rows: wake it only for enough */
    int64_t linger_ns;              /* SQ_LINGER_NS unless set otherwise */
    size_t linger_rows;
    int wclosing;
    list_node wlist;                /* taken from wq, not yet durable; submission order */
    size_t n_bulk, n_small;         /* jobs of each kind in wlist */
    int wfailing;
    int checkpoint_pages;           /* SQ_CHECKPOINT_BYTES in pages of this database */
    int wal_last;                   /* WAL frames after the previous commit */
    int64_t wal_warn_ns;            /* next time a WAL warning may be logged */
    sq_bno bnos[SQ_BNO_SLOTS];
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

    int page_size;
    _Atomic uint64_t n_commits, n_rows, n_max_rows, n_retries, n_rejected, n_wal_frames;
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

/* store_sqlite_schema.c: at open, on the opening thread. */
/* Creates dir if missing; it must be a directory. */
int sq_open_dir(const char *dir, char *err, size_t errlen);
/* The writer's connection (s->wdb, open): schema, settings (s->synchronous, page size,
 * checkpoint interval), a probe write, and the removal of batches never acknowledged. */
int sq_setup(sq_store *s, int sync_full, char *err, size_t errlen);
/* A read-only connection to s->path. */
int sq_open_reader(sq_store *s, sqlite3 **db, char *err, size_t errlen);

/* store_sqlite_write.c */
void *sq_writer_main(void *arg);
/* Rows a write job will add or change (an estimate for deletes); loop thread. */
size_t sq_job_rows(const sq_job *j);
int sq_writer_prepare(sq_store *s);

/* store_sqlite_read.c */
void *sq_reader_main(void *arg);
void *sq_checker_main(void *arg);
int sq_reader_prepare(sq_store *s);
store_err sq_load(store *st, store_load_fn fn, void *arg, char *err, size_t errlen);
store_err sq_load_keys(store *st, int64_t newer_than_ns, store_key_fn fn, void *arg, char *err, size_t errlen);

#endif
