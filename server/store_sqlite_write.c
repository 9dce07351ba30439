/* The SQLite store's writer thread: the only writable connection. It takes every queued
 * write, writes as many as fit into one BEGIN IMMEDIATE transaction, commits, and hands
 * the finished ones back to the loop; a failed transaction is rolled back and retried,
 * never dropped.
 *
 * Grouping. A transaction holds at most SQ_TX_ROWS rows (pitfall 2). Bulk jobs (put_batch
 * and delete_batch, up to max_items operations and results each) get at most half of that
 * while small jobs (results, summaries) wait behind them, so a 100,000-op batch is
 * written 2,500 ops at a time with everyone else's results in the same commits instead
 * of after it (pitfall 1: it held results back 260-370 ms). Until its last chunk
 * commits, the batch row says phase=LOADING and open() deletes it: a batch exists only
 * once all of it is durable.
 *
 * Ordering. Jobs of one batch are written and completed in submission order: once a
 * bulk job of a batch cannot finish in this transaction, every later job with the same
 * id waits too (the "blocked" set). Jobs of other batches go on, so their callbacks may
 * run before an earlier, still loading, put_batch's callback. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "pbtime.h"
#include "store_sqlite_int.h"

/* A WAL this many checkpoint intervals long (~256 MB) is worth a warning. */
#define SQ_WAL_WARN_FACTOR 64

static const char *const wsql[W_COUNT] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_INS_BATCH] = "INSERT INTO batches(id, created_ns, state, end_ns, request_id, fingerprint, snapshot,"
                    " total, phase) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [W_FIND] = "SELECT bno FROM batches WHERE id = ?1",
    [W_SET_PHASE] = "UPDATE batches SET phase = ?2 WHERE bno = ?1",
    /* request_id goes with the first chunk: from then on the batch is gone as far as
     * request_id replays are concerned, whichever order later chunks and other batches'
     * writes take (today a later put_batch waits for the delete's last chunk anyway). */
    [W_MARK_DELETE] = "UPDATE batches SET phase = 2, request_id = NULL WHERE bno = ?1",
    [W_INS_OP] = "INSERT INTO ops(bno, idx, op) VALUES(?1, ?2, ?3)",
    [W_INS_RESULT] = "INSERT OR REPLACE INTO results(bno, idx, seq, state, result) VALUES(?1, ?2, ?3, ?4, ?5)",
    [W_INS_KEY] = "INSERT OR REPLACE INTO keys(key, batch_id, idx, created_ns) VALUES(?1, ?2, ?3, ?4)",
    [W_SUMMARY] = "UPDATE batches SET state = ?2, end_ns = ?3, snapshot = ?4 WHERE id = ?1",
    [W_DEL_OPS] = "DELETE FROM ops WHERE rowid IN (SELECT rowid FROM ops WHERE bno = ?1 LIMIT ?2)",
    [W_DEL_RESULTS] = "DELETE FROM results WHERE rowid IN (SELECT rowid FROM results WHERE bno = ?1 LIMIT ?2)",
    [W_DEL_KEYS] = "DELETE FROM keys WHERE rowid IN (SELECT rowid FROM keys WHERE created_ns < ?1 LIMIT ?2)",
    [W_DEL_BATCH] = "DELETE FROM batches WHERE bno = ?1",
};

/* Replaces SQLite's own autocheckpoint (same PASSIVE checkpoint, run inside COMMIT on
 * this thread) so that a checkpoint that fails, or a WAL that a long read keeps from
 * being reset, is logged: SQLite's own ignores both (pitfall 4). */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    sq_store *s = arg;
    /* Frames this commit appended; fewer than last time means the WAL started over
     * after a checkpoint. */
    int added = pages >= s->wal_last ? pages - s->wal_last : pages;
    s->wal_last = pages;
    atomic_fetch_add_explicit(&s->n_wal_frames, (uint64_t)added, memory_order_relaxed);
    if (pages < s->checkpoint_pages)
        return SQLITE_OK;
    int wal = 0, copied = 0;
    int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &wal, &copied);
    int64_t now = pbtime_mono_ns();
    if (((rc != SQLITE_OK && rc != SQLITE_BUSY) || wal >= SQ_WAL_WARN_FACTOR * s->checkpoint_pages) &&
        now >= s->wal_warn_ns) {
        s->wal_warn_ns = now + 60 * PBTIME_NS_PER_SEC;
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("%s: checkpoint failed: %s", s->path, sqlite3_errmsg(db));
        else
            log_warn("%s: the WAL holds %d pages (%d checkpointed); a long read keeps it from being reset",
                     s->path, wal, copied);
    }
    return SQLITE_OK; /* the commit itself is durable either way */
}

int sq_writer_prepare(sq_store *s)
{
    for (int i = 0; i < W_COUNT; i++)
        if (sqlite3_prepare_v3(s->wdb, wsql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->wst[i], NULL) != SQLITE_OK)
            return -1;
    char sql[128 + SQ_OPS_PER_STMT * 16 + SQ_RESULTS_PER_STMT * 24];
    int n = snprintf(sql, sizeof sql, "INSERT INTO ops(bno, idx, op) VALUES(?, ?, ?)");
    for (int i = 1; i < SQ_OPS_PER_STMT; i++)
        n += snprintf(sql + n, sizeof sql - (size_t)n, ", (?, ?, ?)");
    if (sqlite3_prepare_v3(s->wdb, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->wops, NULL) != SQLITE_OK)
        return -1;
    /* Rows of one INSERT are written in order, so a later result for the same item still
     * replaces an earlier one. */
    n = snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO results(bno, idx, seq, state, result) VALUES(?, ?, ?, ?, ?)");
    for (int i = 1; i < SQ_RESULTS_PER_STMT; i++)
        n += snprintf(sql + n, sizeof sql - (size_t)n, ", (?, ?, ?, ?, ?)");
    if (sqlite3_prepare_v3(s->wdb, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->wresults, NULL) != SQLITE_OK)
        return -1;
    sqlite3_wal_hook(s->wdb, on_wal_commit, s);
    return 0;
}

/* ---- ids held back in the open transaction ------------------------------------------- */

static size_t id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *id; id++)
        h = (h ^ (uint8_t)*id) * 1099511628211ULL;
    return (size_t)h;
}

static int blocked_has(const sq_store *s, const char *id)
{
    if (s->blocked_n == 0)
        return 0;
    for (size_t k = id_hash(id) & (s->blocked_cap - 1); s->blocked[k]; k = (k + 1) & (s->blocked_cap - 1))
        if (strcmp(s->blocked[k], id) == 0)
            return 1;
    return 0;
}

static int blocked_add(sq_store *s, const char *id)
{
    if (blocked_has(s, id))
        return 0;
    if (2 * (s->blocked_n + 1) > s->blocked_cap) {
        size_t cap = s->blocked_cap ? 2 * s->blocked_cap : 16;
        const char **v = calloc(cap, sizeof *v);
        if (v == NULL)
            return -1;
        for (size_t i = 0; i < s->blocked_cap; i++) {
            if (s->blocked[i] == NULL)
                continue;
            size_t k = id_hash(s->blocked[i]) & (cap - 1);
            while (v[k])
                k = (k + 1) & (cap - 1);
            v[k] = s->blocked[i];
        }
        free(s->blocked);
        s->blocked = v;
        s->blocked_cap = cap;
    }
    size_t k = id_hash(id) & (s->blocked_cap - 1);
    while (s->blocked[k])
        k = (k + 1) & (s->blocked_cap - 1);
    s->blocked[k] = id;
    s->blocked_n++;
    return 0;
}

static void blocked_clear(sq_store *s)
{
    if (s->blocked_n)
        memset(s->blocked, 0, s->blocked_cap * sizeof *s->blocked);
    s->blocked_n = 0;
}

/* ---- one job's rows ------------------------------------------------------------------ */

static int is_bulk(const sq_job *j) { return j->kind == SQ_PUT_BATCH || j->kind == SQ_DELETE; }

static uint64_t small_rows(const sq_job *j)
{
    return j->kind == SQ_PUT_RESULT && j->u.result.key ? 2 : 1;
}

size_t sq_job_rows(const sq_job *j)
{
    if (j->kind == SQ_PUT_BATCH)
        return 1 + j->u.put.n_ended + j->u.put.total;
    return (size_t)small_rows(j); /* a delete counts 1: nobody waits for it */
}

/* Errors caused by one job's content rather than by the disk: retrying cannot help, so
 * that job alone fails (a bug elsewhere; logged) and the others go on. */
static int rejected(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
    case SQLITE_MISUSE:
    case SQLITE_NOTFOUND: return 1;
    default: return 0;
    }
}

/* ---- batch numbers (see SQ_BNO_SLOTS) ---------------------------------------------- */

static sq_bno *bno_slot(sq_store *s, const char *id)
{
    return strlen(id) > BATCH_ID_LEN ? NULL : &s->bnos[id_hash(id) & (SQ_BNO_SLOTS - 1)];
}

static void bno_remember(sq_store *s, const char *id, int64_t bno)
{
    sq_bno *e = bno_slot(s, id);
    if (e) {
        snprintf(e->id, sizeof e->id, "%s", id);
        e->bno = bno;
    }
}

static void bno_forget(sq_store *s, const char *id)
{
    sq_bno *e = bno_slot(s, id);
    if (e && strcmp(e->id, id) == 0)
        e->id[0] = '\0';
}

static void bno_forget_all(sq_store *s)
{
    for (size_t i = 0; i < SQ_BNO_SLOTS; i++)
        s->bnos[i].id[0] = '\0';
}

/* The batch's number, 0 if there is no such batch (any more). */
static int find_bno(sq_store *s, const char *id, int64_t *bno)
{
    const sq_bno *e = bno_slot(s, id);
    if (e && e->id[0] && strcmp(e->id, id) == 0) {
        *bno = e->bno;
        return SQLITE_OK;
    }
    sqlite3_stmt *st = s->wst[W_FIND];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *bno = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (*bno)
        bno_remember(s, id, *bno);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int put_row(sq_store *s, sq_job *j, int phase)
{
    sqlite3_stmt *st = s->wst[W_INS_BATCH];
    sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, j->u.put.created_ns);
    sqlite3_bind_int(st, 3, j->u.put.state);
    sqlite3_bind_int64(st, 4, j->u.put.end_ns);
    if (j->u.put.request_id)
        sqlite3_bind_text(st, 5, j->u.put.request_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, j->u.put.fingerprint, sizeof j->u.put.fingerprint, SQLITE_STATIC);
    sq_bind_slice(st, 7, j->u.put.snapshot);
    sqlite3_bind_int64(st, 8, j->u.put.total);
    sqlite3_bind_int(st, 9, phase);
    return sq_step_done(st);
}

static void bind_result(sqlite3_stmt *st, int at, int64_t bno, const store_result *r)
{
    sqlite3_bind_int64(st, at + 1, bno);
    sqlite3_bind_int64(st, at + 2, r->index);
    sqlite3_bind_int64(st, at + 3, r->seq);
    sqlite3_bind_int(st, at + 4, r->state);
    sq_bind_slice(st, at + 5, r->result);
}

static int put_result_row(sq_store *s, int64_t bno, const store_result *r)
{
    bind_result(s->wst[W_INS_RESULT], 0, bno, r);
    return sq_step_done(s->wst[W_INS_RESULT]);
}

/* Inserts the buffered results of put_result jobs: a full buffer as one statement (if
 * it fails, *bad stays NULL: the row is not known), the rest one by one. */
static int flush_results(sq_store *s, sq_job **bad)
{
    int rc = SQLITE_OK;
    if (s->wrbuf_n == SQ_RESULTS_PER_STMT) {
        for (int i = 0; i < SQ_RESULTS_PER_STMT; i++)
            bind_result(s->wresults, 5 * i, s->wrbuf[i].bno, &s->wrbuf[i].j->u.result.r);
        rc = sqlite3_step(s->wresults);
        sqlite3_reset(s->wresults);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    } else {
        for (int i = 0; i < s->wrbuf_n && rc == SQLITE_OK; i++)
            if ((rc = put_result_row(s, s->wrbuf[i].bno, &s->wrbuf[i].j->u.result.r)) != SQLITE_OK)
                *bad = s->wrbuf[i].j;
    }
    s->wrbuf_n = 0;
    return rc;
}

/* Binds operation i of b as the row whose first parameter follows parameter at. */
static void bind_op(sqlite3_stmt *st, int at, int64_t bno, const batch *b, uint32_t i)
{
    sqlite3_bind_int64(st, at + 1, bno);
    sqlite3_bind_int64(st, at + 2, i);
    if (b->items[i].op_len)
        sqlite3_bind_blob(st, at + 3, b->items[i].op, (int)b->items[i].op_len, SQLITE_STATIC);
    else
        sqlite3_bind_zeroblob(st, at + 3, 0);
}

/* A put_batch is a sequence of rows: the batch row, the results of items that had
 * already ended, then the operations in index order. prog counts them. */
static int write_put(sq_store *s, sq_job *j, uint64_t budget, uint64_t *used)
{
    const uint64_t rows = 1 + j->u.put.n_ended + j->u.put.total;
    uint64_t p = j->prog_tx, end = p + budget < rows ? p + budget : rows;
    int64_t bno = 0;
    int rc;
    *used = 0;
    if (end == p)
        return SQLITE_OK;
    if (p == 0) {
        if ((rc = put_row(s, j, end == rows ? SQ_LIVE : SQ_LOADING)) != SQLITE_OK)
            return rc;
        bno = sqlite3_last_insert_rowid(s->wdb);
        bno_remember(s, j->id, bno);
        p = 1;
    } else if ((rc = find_bno(s, j->id, &bno)) != SQLITE_OK) {
        return rc;
    } else if (bno == 0) {
        log_error("%s: batch %s vanished while being written", s->path, j->id);
        return SQLITE_NOTFOUND;
    }
    for (; p < end && p - 1 < j->u.put.n_ended; p++)
        if ((rc = put_result_row(s, bno, &j->u.put.ended[p - 1])) != SQLITE_OK)
            return rc;
    /* Operations SQ_OPS_PER_STMT to a statement while that many are left, then singly. */
    for (; p < end; p += (uint64_t)(end - p >= SQ_OPS_PER_STMT ? SQ_OPS_PER_STMT : 1)) {
        uint32_t i = (uint32_t)(p - 1 - j->u.put.n_ended);
        if (end - p >= SQ_OPS_PER_STMT) {
            for (int r = 0; r < SQ_OPS_PER_STMT; r++)
                bind_op(s->wops, 3 * r, bno, j->u.put.b, i + (uint32_t)r);
            rc = sqlite3_step(s->wops);
            sqlite3_reset(s->wops);
            rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        } else {
            bind_op(s->wst[W_INS_OP], 0, bno, j->u.put.b, i);
            rc = sq_step_done(s->wst[W_INS_OP]);
        }
        if (rc != SQLITE_OK)
            return rc;
    }
    if (end == rows && j->prog_tx > 0) { /* written as LOADING in an earlier chunk */
        sqlite3_stmt *st = s->wst[W_SET_PHASE];
        sqlite3_bind_int64(st, 1, bno);
        sqlite3_bind_int(st, 2, SQ_LIVE);
        if ((rc = sq_step_done(st)) != SQLITE_OK)
            return rc;
    }
    *used = end - j->prog_tx;
    j->prog_tx = end;
    j->finished_tx = end == rows;
    return SQLITE_OK;
}

/* A delete goes in steps (prog): mark the row DELETING, its ops, its results, the row,
 * then the expired keys; each DELETE takes what is left of the budget. */
enum { DEL_MARK, DEL_OPS, DEL_RESULTS, DEL_ROW, DEL_KEYS, DEL_DONE };

static int write_delete(sq_store *s, sq_job *j, uint64_t budget, uint64_t *used)
{
    uint64_t step = j->prog_tx, n = 0;
    int64_t bno = 0;
    int rc;
    *used = 0;
    if (budget == 0)
        return SQLITE_OK;
    if ((rc = find_bno(s, j->id, &bno)) != SQLITE_OK)
        return rc;
    while (step < DEL_DONE && n < budget) {
        sqlite3_stmt *st = NULL;
        int64_t limit = (int64_t)(budget - n);
        switch (step) {
        case DEL_MARK: st = bno ? s->wst[W_MARK_DELETE] : NULL; break;
        case DEL_OPS: st = bno ? s->wst[W_DEL_OPS] : NULL; break;
        case DEL_RESULTS: st = bno ? s->wst[W_DEL_RESULTS] : NULL; break;
        case DEL_ROW: st = bno ? s->wst[W_DEL_BATCH] : NULL; break;
        default: st = s->wst[W_DEL_KEYS]; break;
        }
        if (st == NULL) { /* the batch is not (or no longer) there */
            step++;
            continue;
        }
        if (step == DEL_KEYS)
            sqlite3_bind_int64(st, 1, j->u.del.keys_before_ns);
        else
            sqlite3_bind_int64(st, 1, bno);
        if (step == DEL_OPS || step == DEL_RESULTS || step == DEL_KEYS)
            sqlite3_bind_int64(st, 2, limit);
        if ((rc = sq_step_done(st)) != SQLITE_OK)
            return rc;
        if (step == DEL_ROW)
            bno_forget(s, j->id);
        int64_t changed = sqlite3_changes64(s->wdb);
        n += (uint64_t)(changed > 0 ? changed : 1);
        /* A LIMITed delete that came short means nothing of that kind is left. */
        if (!(step == DEL_OPS || step == DEL_RESULTS || step == DEL_KEYS) || changed < limit)
            step++;
    }
    *used = n;
    j->prog_tx = step;
    j->finished_tx = step == DEL_DONE;
    return SQLITE_OK;
}

/* A summary, or a result (and its key): the result row goes to the buffer when
 * buffered (flush_results), else straight into the table. */
static int write_small(sq_store *s, sq_job *j, int buffered)
{
    sqlite3_stmt *st;
    int rc;
    if (j->kind == SQ_PUT_SUMMARY) {
        st = s->wst[W_SUMMARY];
        sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, j->u.summary.state);
        sqlite3_bind_int64(st, 3, j->u.summary.end_ns);
        sq_bind_slice(st, 4, j->u.summary.snapshot);
        return sq_step_done(st);
    }
    const store_result *r = &j->u.result.r;
    int64_t bno = 0;
    if ((rc = find_bno(s, j->id, &bno)) != SQLITE_OK)
        return rc;
    /* No row when the batch is gone (deleted while an item was finishing): nothing to keep. */
    if (bno == 0) {
        log_debug("%s: result %u of batch %s not stored: the batch is gone", s->path, r->index, j->id);
    } else if (buffered) {
        s->wrbuf[s->wrbuf_n].j = j;
        s->wrbuf[s->wrbuf_n++].bno = bno;
    } else if ((rc = put_result_row(s, bno, r)) != SQLITE_OK) {
        return rc;
    }
    if (j->u.result.key == NULL)
        return SQLITE_OK;
    st = s->wst[W_INS_KEY];
    sqlite3_bind_text(st, 1, j->u.result.key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, r->index);
    sqlite3_bind_int64(st, 4, j->u.result.key_ns);
    return sq_step_done(st);
}

/* ---- one transaction ----------------------------------------------------------------- */

static void stat_max(_Atomic uint64_t *v, uint64_t x)
{
    uint64_t cur = atomic_load_explicit(v, memory_order_relaxed);
    while (x > cur && !atomic_compare_exchange_weak_explicit(v, &cur, x, memory_order_relaxed,
                                                             memory_order_relaxed))
        ;
}

static void wlist_move(sq_store *s, sq_job *j, list_node *to)
{
    if (is_bulk(j))
        s->n_bulk--;
    else
        s->n_small--;
    list_remove(&j->link);
    list_push_back(to, &j->link);
}

/* Writes what fits of wlist in one transaction, in two passes:
 *   1. small jobs in list order, up to half the rows while bulk jobs wait (all of them
 *      otherwise), skipping batches with a bulk job earlier in the list, since their
 *      later jobs must follow it; stops at the first small job that does not fit.
 *   2. up to that point, bulk jobs in list order with every row left, and small jobs
 *      held back in pass 1 whose bulk job finished meanwhile.
 * So results are never starved by a big batch nor a big batch by a flood of results,
 * and a big batch gets all the rows nobody else needs. On success the jobs it finished
 * move to *done (in list order). On failure everything is rolled back, *bad names the
 * job whose statement failed (NULL if BEGIN or COMMIT did), why holds SQLite's message. */
static int write_group_once(sq_store *s, list_node *done, sq_job **bad, char *why, size_t whylen)
{
    uint64_t rows = 0, rows_left = SQ_TX_ROWS, small_left = s->n_bulk ? SQ_TX_ROWS / 2 : SQ_TX_ROWS;
    list_node *pos, *tmp, *stop = &s->wlist;
    int rc;
    *bad = NULL;
    if ((rc = sq_step_done(s->wst[W_BEGIN])) != SQLITE_OK)
        goto fail;

    blocked_clear(s);
    for (pos = s->wlist.next; pos != &s->wlist; pos = pos->next) {
        sq_job *j = container_of(pos, sq_job, link);
        uint64_t need = small_rows(j);
        if (is_bulk(j) || blocked_has(s, j->id)) {
            if (is_bulk(j) && blocked_add(s, j->id) != 0) {
                stop = pos; /* cannot keep the order of what follows: stop here */
                break;
            }
            continue;
        }
        if (need > small_left) {
            stop = pos;
            break;
        }
        j->touched = 1;
        if ((rc = write_small(s, j, !s->wsingle)) != SQLITE_OK) {
            *bad = j;
            goto fail;
        }
        if (s->wrbuf_n == SQ_RESULTS_PER_STMT && (rc = flush_results(s, bad)) != SQLITE_OK)
            goto fail;
        j->finished_tx = 1;
        small_left -= need;
        rows_left -= need;
        rows += need;
    }
    /* Before the bulk jobs: a delete must find every result written before it. */
    if ((rc = flush_results(s, bad)) != SQLITE_OK)
        goto fail;

    blocked_clear(s);
    for (pos = s->wlist.next; pos != stop && rows_left > 0 && s->n_bulk; pos = pos->next) {
        sq_job *j = container_of(pos, sq_job, link);
        uint64_t used = 0;
        if (j->finished_tx || blocked_has(s, j->id))
            continue;
        j->touched = 1;
        if (j->kind == SQ_PUT_BATCH) {
            rc = write_put(s, j, rows_left, &used);
        } else if (j->kind == SQ_DELETE) {
            rc = write_delete(s, j, rows_left, &used);
        } else if (small_rows(j) <= rows_left) { /* else no room left: it waits */
            used = small_rows(j);
            if ((rc = write_small(s, j, 0)) == SQLITE_OK)
                j->finished_tx = 1;
        }
        if (rc != SQLITE_OK) {
            *bad = j;
            goto fail;
        }
        rows += used;
        rows_left -= used < rows_left ? used : rows_left;
        /* Unfinished: later jobs of this batch wait for the next transaction. */
        if (!j->finished_tx && blocked_add(s, j->id) != 0)
            break;
    }
    if ((rc = sq_step_done(s->wst[W_COMMIT])) != SQLITE_OK)
        goto fail;
    list_foreach_safe(pos, tmp, &s->wlist) {
        sq_job *j = container_of(pos, sq_job, link);
        if (!j->touched)
            continue;
        j->prog = j->prog_tx;
        j->touched = 0;
        if (j->finished_tx)
            wlist_move(s, j, done);
    }
    atomic_fetch_add_explicit(&s->n_commits, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->n_rows, rows, memory_order_relaxed);
    stat_max(&s->n_max_rows, rows);
    return SQLITE_OK;

fail:
    s->wrbuf_n = 0;
    snprintf(why, whylen, "%s", sqlite3_errmsg(s->wdb));
    /* A failed COMMIT under SQLITE_FULL has already rolled back (pitfall 11); other
     * failures leave the transaction open. */
    if (!sqlite3_get_autocommit(s->wdb))
        sq_step_done(s->wst[W_ROLLBACK]);
    bno_forget_all(s);
    for (pos = s->wlist.next; pos != &s->wlist; pos = pos->next) {
        sq_job *j = container_of(pos, sq_job, link);
        j->prog_tx = j->prog;
        j->touched = j->finished_tx = 0;
    }
    return rc;
}

/* A group whose multi-row INSERT SQLite refused for its content is written again one row
 * per statement, so that the refused row is found and fails alone (see rejected). */
static int write_group(sq_store *s, list_node *done, sq_job **bad, char *why, size_t whylen)
{
    int rc = write_group_once(s, done, bad, why, whylen);
    if (rc != SQLITE_OK && *bad == NULL && rejected(rc)) {
        s->wsingle = 1;
        rc = write_group_once(s, done, bad, why, whylen);
        s->wsingle = 0;
    }
    return rc;
}

/* ---- the thread ---------------------------------------------------------------------- */

static void post_health(sq_store *s, int healthy)
{
    sq_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return; /* healthy() lags; the next change tells it */
    j->kind = SQ_HEALTH;
    j->u.health.healthy = healthy;
    list_node one;
    list_init(&one);
    list_push_back(&one, &j->link);
    sq_complete(s, &one);
}

/* Under wmu. */
static void take_queue(sq_store *s)
{
    list_node *pos, *tmp;
    s->wq_rows = 0;
    s->wq_urgent = 0;
    list_foreach_safe(pos, tmp, &s->wq) {
        if (is_bulk(container_of(pos, sq_job, link)))
            s->n_bulk++;
        else
            s->n_small++;
        list_remove(pos);
        list_push_back(&s->wlist, pos);
    }
}

static void fail_all(sq_store *s, store_err err)
{
    list_node done, *pos, *tmp;
    list_init(&done);
    pthread_mutex_lock(&s->wmu);
    take_queue(s);
    pthread_mutex_unlock(&s->wmu);
    list_foreach_safe(pos, tmp, &s->wlist) {
        sq_job *j = container_of(pos, sq_job, link);
        j->err = err;
        wlist_move(s, j, &done);
    }
    sq_complete(s, &done);
}

static void wait_until(sq_store *s, int64_t deadline_ns)
{
    struct timespec ts = {(time_t)(deadline_ns / PBTIME_NS_PER_SEC), (long)(deadline_ns % PBTIME_NS_PER_SEC)};
    s->wlingering = 1;
    pthread_cond_timedwait(&s->wcv, &s->wmu, &ts); /* wcv runs on CLOCK_MONOTONIC */
    s->wlingering = 0;
}

/* Under wmu: waits until there is something to write, grouping small writes (group
 * commit, see SQ_LINGER_NS). Jobs in wq are taken once there are linger_rows rows, a
 * put_batch, or the oldest has waited linger_ns. After a commit the writer stays on call
 * for linger_ns, sleeping with a deadline instead of waiting to be signalled: whatever
 * arrives meanwhile goes at that deadline, without a wakeup from the loop (which signals
 * a lingering writer only for enough rows or a put_batch). So a steady stream costs one
 * timed wakeup per commit; only an idle writer needs a signal. */
static void wait_for_work(sq_store *s, int64_t last_commit_ns)
{
    for (;;) {
        if (s->wclosing || !list_empty(&s->wlist))
            return;
        int64_t now = pbtime_mono_ns(), on_call_until = last_commit_ns + s->linger_ns;
        if (!list_empty(&s->wq)) {
            /* Came during the last commit or the on-call time after it: with the others
             * at the end of that time. */
            int64_t deadline = s->wq_since_ns < on_call_until ? on_call_until : s->wq_since_ns + s->linger_ns;
            if (s->wq_urgent || s->wq_rows >= s->linger_rows || now >= deadline)
                return;
            wait_until(s, deadline);
        } else if (now < on_call_until) {
            wait_until(s, on_call_until);
        } else {
            pthread_cond_wait(&s->wcv, &s->wmu);
        }
    }
}

void *sq_writer_main(void *arg)
{
    sq_store *s = arg;
    int64_t giveup_ns = 0;
    unsigned failures = 0;
    int64_t last_commit_ns = 0;
    pthread_setname_np(pthread_self(), "batchd-sqlwrite");
    for (;;) {
        pthread_mutex_lock(&s->wmu);
        wait_for_work(s, last_commit_ns);
        take_queue(s);
        int closing = s->wclosing;
        pthread_mutex_unlock(&s->wmu);
        if (list_empty(&s->wlist)) {
            if (closing)
                break;
            continue;
        }

        list_node done;
        list_init(&done);
        sq_job *bad = NULL;
        char why[256];
        int rc = write_group(s, &done, &bad, why, sizeof why);
        if (rc == SQLITE_OK) {
            if (s->wfailing) {
                s->wfailing = 0;
                log_info("%s: writes succeed again after %u retr%s", s->path, failures,
                         failures == 1 ? "y" : "ies");
                post_health(s, 1); /* before the completions it made possible */
            }
            failures = 0;
            sq_complete(s, &done);
            last_commit_ns = pbtime_mono_ns();
            continue;
        }
        if (bad && rejected(rc)) {
            log_error("%s: write for batch %s refused: %s (SQLite error %d); the others go on", s->path,
                      bad->id, why, rc);
            atomic_fetch_add_explicit(&s->n_rejected, 1, memory_order_relaxed);
            bad->err = STORE_EIO;
            wlist_move(s, bad, &done);
            sq_complete(s, &done);
            continue;
        }
        atomic_fetch_add_explicit(&s->n_retries, 1, memory_order_relaxed);
        failures++;
        if (!s->wfailing) {
            s->wfailing = 1;
            log_error("%s: writes fail: %s (SQLite error %d); holding them and retrying every %d ms", s->path, why,
                      rc, SQ_RETRY_MS);
            post_health(s, 0);
        } else if (failures % 20 == 0) {
            log_warn("%s: writes still fail after %u retries: %s", s->path, failures, why);
        }
        if (closing) {
            int64_t now = pbtime_mono_ns();
            if (giveup_ns == 0) {
                giveup_ns = now + SQ_CLOSE_GIVEUP_MS * PBTIME_NS_PER_MS;
            } else if (now >= giveup_ns) {
                log_error("%s: closing with writes still failing: their callers are told the store closed",
                          s->path);
                fail_all(s, STORE_ECLOSED);
                continue;
            }
        }
        struct timespec ts = {SQ_RETRY_MS / 1000, (SQ_RETRY_MS % 1000) * PBTIME_NS_PER_MS};
        while (nanosleep(&ts, &ts) != 0)
            ;
    }
    return NULL;
}
