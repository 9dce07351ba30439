/* The SQLite store's database file: the schema, the connection settings, and the checks
 * made at open (store_sqlite_open in store_sqlite.c calls these before any thread starts).
 * The measurements behind the settings are in /work/shared/docs/sqlite-store-notes.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "pbtime.h"
#include "store_sqlite_int.h"

/* Version 1. page_size (SQ_PAGE_SIZE) is set before the first CREATE; a database made
 * with another keeps it. Batches get an integer number (bno)
 * so that the per-row keys of ops and results are a few bytes instead of a 26-byte id;
 * rows stay in rowid tables (pitfall 7: WITHOUT ROWID with 1 KB blobs was 2.4x slower,
 * and a clustered key 2.6-6.6x slower for interleaved inserts). */
static const char schema_sql[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value);"
    "CREATE TABLE batches("
    "  bno INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  created_ns INTEGER NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  end_ns INTEGER NOT NULL DEFAULT 0,"
    "  request_id TEXT,"
    "  fingerprint BLOB,"
    "  snapshot BLOB NOT NULL,"
    "  total INTEGER NOT NULL,"
    "  phase INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX batches_request ON batches(request_id) WHERE request_id IS NOT NULL;"
    "CREATE INDEX batches_created ON batches(created_ns, id);"
    "CREATE TABLE ops(bno INTEGER NOT NULL, idx INTEGER NOT NULL, op BLOB NOT NULL,"
    "  PRIMARY KEY(bno, idx));"
    "CREATE TABLE results(bno INTEGER NOT NULL, idx INTEGER NOT NULL, seq INTEGER NOT NULL,"
    "  state INTEGER NOT NULL, result BLOB NOT NULL, PRIMARY KEY(bno, idx));"
    "CREATE INDEX results_seq ON results(bno, seq);"
    "CREATE TABLE keys(key TEXT PRIMARY KEY, batch_id TEXT NOT NULL, idx INTEGER NOT NULL,"
    "  created_ns INTEGER NOT NULL);"
    "CREATE INDEX keys_created ON keys(created_ns);";

static int query_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_ERROR;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

static int query_text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(out, outlen, "%s", t ? (const char *)t : "");
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* The writer's connection: schema, settings, a probe write, and the removal of batches
 * never acknowledged. Everything that can tell a damaged or unwritable store happens
 * here, so that batchd refuses to start rather than serve an empty or read-only store. */
int sq_setup(sq_store *s, int sync_full, char *err, size_t errlen)
{
    sqlite3 *db = s->wdb;
    int64_t n_schema = 0, version = 0, n_stale = 0;
    char mode[32];
    int rc;
    sqlite3_busy_timeout(db, SQ_BUSY_MS);
    sqlite3_extended_result_codes(db, 1);
    /* open_v2 validates nothing (pitfall 9): the first read of sqlite_schema is what
     * finds an overwritten header (NOTADB) or schema page (CORRUPT), and a read-only
     * directory under an existing WAL file (READONLY_DIRECTORY, pitfall 10). */
    if ((rc = query_int(db, "SELECT count(*) FROM sqlite_schema", &n_schema)) != SQLITE_OK) {
        sq_errf(err, errlen, s->path, db, rc, "reading the schema");
        return -1;
    }
    if ((rc = query_int(db, "PRAGMA user_version", &version)) != SQLITE_OK) {
        sq_errf(err, errlen, s->path, db, rc, "reading the schema version");
        return -1;
    }
    if (version > SQ_SCHEMA_VERSION) {
        snprintf(err, errlen, "%s: schema version %lld was written by a newer batchd (this one knows up to %d)",
                 s->path, (long long)version, SQ_SCHEMA_VERSION);
        return -1;
    }
    if (version == 0 && n_schema > 0) {
        snprintf(err, errlen, "%s: not a batchd database (it has tables but no schema version)", s->path);
        return -1;
    }
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA page_size=%d", SQ_PAGE_SIZE);
    if (version == 0 && (rc = sq_exec(db, pragma)) != SQLITE_OK) {
        sq_errf(err, errlen, s->path, db, rc, "setting the page size");
        return -1;
    }
    if ((rc = query_text(db, "PRAGMA journal_mode=WAL", mode, sizeof mode)) != SQLITE_OK) {
        sq_errf(err, errlen, s->path, db, rc, "switching to WAL mode");
        return -1;
    }
    if (strcmp(mode, "wal") != 0) {
        snprintf(err, errlen, "%s: cannot use WAL mode (journal_mode is %s; is the file or directory read-only?)",
                 s->path, mode);
        return -1;
    }
    /* Checkpoints run on the writer every SQ_CHECKPOINT_BYTES of WAL
     * (store_sqlite_write.c). journal_size_limit shrinks the WAL back after a large
     * transaction (pitfall 6); it is above one checkpoint interval so that the WAL is not
     * truncated and regrown on every checkpoint. */
    char pragmas[256];
    snprintf(pragmas, sizeof pragmas, "PRAGMA synchronous=%s; PRAGMA journal_size_limit=%d;",
             sync_full ? "FULL" : "NORMAL", 2 * SQ_CHECKPOINT_BYTES);
    int64_t sync_level = 0;
    if ((rc = sq_exec(db, pragmas)) != SQLITE_OK ||
        (rc = query_int(db, "PRAGMA synchronous", &sync_level)) != SQLITE_OK) {
        sq_errf(err, errlen, s->path, db, rc, "setting pragmas");
        return -1;
    }
    s->synchronous = (int)sync_level;
    int64_t page_size = 0;
    if ((rc = query_int(db, "PRAGMA page_size", &page_size)) != SQLITE_OK) {
        sq_errf(err, errlen, s->path, db, rc, "reading the page size");
        return -1;
    }
    s->page_size = (int)page_size;
    s->checkpoint_pages = SQ_CHECKPOINT_BYTES / (int)page_size;
    if ((rc = sq_exec(db, "BEGIN IMMEDIATE")) != SQLITE_OK) {
        sq_errf(err, errlen, s->path, db, rc, "probe write at start");
        return -1;
    }
    if (version == 0) {
        rc = sq_exec(db, schema_sql);
        if (rc == SQLITE_OK)
            rc = sq_exec(db, "PRAGMA user_version=1");
        if (rc != SQLITE_OK) {
            sq_errf(err, errlen, s->path, db, rc, "creating the schema");
            goto rollback;
        }
    }
    /* The probe: a real write that must reach the disk, so that a read-only file or mount
     * is refused now (pitfall 10: reads work there, writes fail). */
    char probe[128];
    snprintf(probe, sizeof probe, "INSERT OR REPLACE INTO meta(key, value) VALUES('opened_ns', %lld)",
             (long long)pbtime_wall_ns());
    if ((rc = sq_exec(db, probe)) != SQLITE_OK) {
        sq_errf(err, errlen, s->path, db, rc, "probe write at start");
        goto rollback;
    }
    /* Batches half written (never acknowledged) or half deleted: finish them off. */
    if ((rc = query_int(db, "SELECT count(*) FROM batches WHERE phase<>0", &n_stale)) != SQLITE_OK ||
        (rc = sq_exec(db, "DELETE FROM ops WHERE bno IN (SELECT bno FROM batches WHERE phase<>0);"
                          "DELETE FROM results WHERE bno IN (SELECT bno FROM batches WHERE phase<>0);"
                          "DELETE FROM batches WHERE phase<>0;")) != SQLITE_OK) {
        sq_errf(err, errlen, s->path, db, rc, "removing unfinished batches");
        goto rollback;
    }
    if ((rc = sq_exec(db, "COMMIT")) != SQLITE_OK) {
        sq_errf(err, errlen, s->path, db, rc, "probe write at start");
        goto rollback;
    }
    if (n_stale)
        log_warn("%s: removed %lld batch%s left half written or half deleted by the last run", s->path,
                 (long long)n_stale, n_stale == 1 ? "" : "es");
    return 0;

rollback:
    if (!sqlite3_get_autocommit(db))
        sq_exec(db, "ROLLBACK");
    return -1;
}

int sq_open_dir(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create data directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (stat(dir, &st) != 0) {
        snprintf(err, errlen, "data directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "data directory %s: not a directory", dir);
        return -1;
    }
    return 0;
}

int sq_open_reader(sq_store *s, sqlite3 **db, char *err, size_t errlen)
{
    int rc = sqlite3_open_v2(s->path, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        sq_errf(err, errlen, s->path, *db, rc, "opening a read connection");
        return -1;
    }
    sqlite3_busy_timeout(*db, SQ_BUSY_MS);
    sqlite3_extended_result_codes(*db, 1);
    return 0;
}
