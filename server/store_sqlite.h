/* The SQLite engine's extras beyond store.h: counters for tests and the benchmark.
 * store_sqlite_open() itself is declared in store.h with the other engines. */
#ifndef BATCHD_STORE_SQLITE_H
#define BATCHD_STORE_SQLITE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct store_sqlite_stats_t {
    uint64_t commits;           /* write transactions committed */
    uint64_t rows;              /* rows written or deleted by them */
    uint64_t max_rows;          /* the most rows one commit held */
    uint64_t retries;           /* transactions that failed and were tried again */
    uint64_t rejected;          /* writes SQLite refused for their content (a bug: logged) */
    uint64_t wal_bytes;         /* current size of batchd.db-wal (0 if absent) */
    uint64_t wal_frames;        /* pages appended to the WAL by commits, all told */
    int page_size;              /* of the database (a WAL frame is this + 24 bytes) */
    int synchronous;            /* PRAGMA synchronous read back at open: 2 FULL, 1 NORMAL */
} store_sqlite_stats_t;

/* s must come from store_sqlite_open. Callable on the loop thread at any time; the
 * counters are read without stopping the writer, so they may be one commit apart. */
void store_sqlite_stats(const store *s, store_sqlite_stats_t *out);

/* Group commit (store_sqlite_int.h): small writes wait up to linger_ns for others to
 * share their commit, unless rows rows are queued (defaults 2 ms, 512 rows; 0 ns: each
 * wakeup commits what it finds). For tests and benchmarks; loop thread. */
void store_sqlite_set_linger(store *s, int64_t linger_ns, size_t rows);

#endif
