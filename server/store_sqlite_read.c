/* The SQLite store's reads: read_results pages on the reader thread, the recovery reads
 * at start (load, load_keys) and the background quick_check. Every statement is reset
 * as soon as its rows are copied out: an open read pins the WAL, which then cannot be
 * reset by checkpoints (pitfall 5). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_sqlite_int.h"

static const char *const rsql[R_COUNT] = {
    [R_BY_INDEX] = "SELECT idx, seq, state, result FROM results"
                   " WHERE bno = (SELECT bno FROM batches WHERE id = ?1) AND idx >= ?2"
                   " AND (?3 = 0 OR state = ?3) ORDER BY idx LIMIT ?4",
    [R_BY_SEQ] = "SELECT idx, seq, state, result FROM results"
                 " WHERE bno = (SELECT bno FROM batches WHERE id = ?1) AND seq > ?2"
                 " AND (?3 = 0 OR state = ?3) ORDER BY seq LIMIT ?4",
    /* Operations with their item's recorded state (0 while it has none), shaped like the
     * result rows so that one reader serves both. */
    [R_OPS] = "SELECT o.idx, 0, COALESCE(r.state, 0), o.op FROM ops o"
              " LEFT JOIN results r ON r.bno = o.bno AND r.idx = o.idx"
              " WHERE o.bno = (SELECT bno FROM batches WHERE id = ?1) AND o.idx >= ?2"
              " AND (?3 = 0 OR r.state = ?3) ORDER BY o.idx LIMIT ?4",
};

/* Steps st while rc says the previous step (or the prepare) went well: for loops that
 * prepare, bind and read with one error variable. */
static int next_row(sqlite3_stmt *st, int *rc)
{
    if (*rc != SQLITE_OK && *rc != SQLITE_ROW)
        return 0;
    return (*rc = sqlite3_step(st)) == SQLITE_ROW;
}

int sq_reader_prepare(sq_store *s)
{
    for (int i = 0; i < R_COUNT; i++)
        if (sqlite3_prepare_v3(s->rdb, rsql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->rst[i], NULL) != SQLITE_OK)
            return -1;
    return 0;
}

/* Appends one row to a growing result array. */
static int push_result(store_result **v, size_t *n, size_t *cap, sqlite3_stmt *st)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        store_result *nv = realloc(*v, c * sizeof *nv);
        if (nv == NULL)
            return -1;
        *v = nv;
        *cap = c;
    }
    store_result *r = &(*v)[(*n)++];
    r->index = (uint32_t)sqlite3_column_int64(st, 0);
    r->seq = (uint32_t)sqlite3_column_int64(st, 1);
    r->state = sqlite3_column_int(st, 2);
    r->result = sq_column_slice(st, 3);
    return 0;
}

static void read_page(sq_store *s, sq_job *j)
{
    sqlite3_stmt *st = s->rst[j->u.read.by_seq]; /* R_BY_INDEX, R_BY_SEQ or R_OPS */
    size_t cap = 0;
    int rc;
    sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, j->u.read.from);
    sqlite3_bind_int(st, 3, j->u.read.state);
    sqlite3_bind_int64(st, 4, j->u.read.limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (push_result(&j->u.read.v, &j->u.read.n, &cap, st) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    if (rc != SQLITE_DONE) {
        j->err = sq_store_err(rc);
        log_error("%s: reading results of batch %s: %s", s->path, j->id, sqlite3_errmsg(s->rdb));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    /* A failed page hands back no rows (sq_job_free releases what was read). */
    if (j->err) {
        for (size_t i = 0; i < j->u.read.n; i++)
            grpc_slice_unref(j->u.read.v[i].result);
        j->u.read.n = 0;
    }
}

void *sq_reader_main(void *arg)
{
    sq_store *s = arg;
    pthread_setname_np(pthread_self(), "batchd-sqlread");
    for (;;) {
        pthread_mutex_lock(&s->rmu);
        while (list_empty(&s->rq) && !s->rclosing)
            pthread_cond_wait(&s->rcv, &s->rmu);
        if (list_empty(&s->rq)) { /* closing, and every read answered */
            pthread_mutex_unlock(&s->rmu);
            break;
        }
        sq_job *j = container_of(s->rq.next, sq_job, link);
        list_remove(&j->link);
        pthread_mutex_unlock(&s->rmu);
        read_page(s, j);
        list_node one;
        list_init(&one);
        list_push_back(&one, &j->link);
        sq_complete(s, &one);
    }
    return NULL;
}

/* quick_check reads every page: 2.7 s warm, 54 s cold for 2.4 GB (pitfall 9), so it
 * runs here after start instead of delaying it, and only logs. The damage it finds is
 * what open's reads did not touch (a page of an ended batch, an index). */
void *sq_checker_main(void *arg)
{
    sq_store *s = arg;
    pthread_setname_np(pthread_self(), "batchd-sqlcheck");
    sqlite3_stmt *st = NULL;
    char found[512] = "";
    size_t len = 0;
    int rc;
    pthread_mutex_lock(&s->kmu);
    s->checking = 1;
    pthread_mutex_unlock(&s->kmu);
    rc = sqlite3_prepare_v2(s->cdb, "PRAGMA quick_check(10)", -1, &st, NULL);
    while (next_row(st, &rc)) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (t && strcmp(t, "ok") != 0 && len < sizeof found - 1)
            len += (size_t)snprintf(found + len, sizeof found - len, "%s%s", len ? "; " : "", t);
    }
    const char *msg = rc == SQLITE_DONE ? NULL : sqlite3_errmsg(s->cdb);
    int interrupted = (rc & 0xff) == SQLITE_INTERRUPT;
    int damaged = (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB;
    if (!interrupted && msg)
        log_error("%s: quick_check %s: %s (SQLite error %d)", s->path, damaged ? "found damage" : "could not run",
                  msg, rc);
    else if (!interrupted && len)
        log_error("%s: quick_check found damage: %s", s->path, found);
    else if (!interrupted)
        log_debug("%s: quick_check ok", s->path);
    sqlite3_finalize(st);
    /* Once the flag is clear close will not interrupt: the interrupt must not outlive
     * the check (SQLite would apply it to the connection's next statement). */
    pthread_mutex_lock(&s->kmu);
    s->checking = 0;
    pthread_mutex_unlock(&s->kmu);
    return NULL;
}

/* ---- recovery ------------------------------------------------------------------------ */

typedef struct load_buf {
    uint8_t *bytes;          /* every op of the batch back to back */
    size_t len, cap;
    size_t *off;             /* op i starts at bytes + off[i] */
    uint32_t *lens;
    const uint8_t **ptrs;
    uint32_t n, n_cap;
    store_result *res;
    size_t n_res, res_cap;
} load_buf;

static void load_buf_release(load_buf *lb)
{
    for (size_t i = 0; i < lb->n_res; i++)
        grpc_slice_unref(lb->res[i].result);
    lb->n_res = 0;
    lb->n = 0;
    lb->len = 0;
}

static void load_buf_free(load_buf *lb)
{
    load_buf_release(lb);
    free(lb->bytes);
    free(lb->off);
    free(lb->lens);
    free(lb->ptrs);
    free(lb->res);
}

static int load_op(load_buf *lb, const void *p, uint32_t n)
{
    if (lb->n == lb->n_cap) {
        uint32_t c = lb->n_cap ? lb->n_cap * 2 : 256;
        size_t *off = realloc(lb->off, c * sizeof *off);
        if (off == NULL)
            return -1;
        lb->off = off;
        uint32_t *lens = realloc(lb->lens, c * sizeof *lens);
        if (lens == NULL)
            return -1;
        lb->lens = lens;
        lb->n_cap = c;
    }
    if (lb->len + n > lb->cap) {
        size_t c = lb->cap ? lb->cap : 65536;
        while (c < lb->len + n)
            c *= 2;
        uint8_t *b = realloc(lb->bytes, c);
        if (b == NULL)
            return -1;
        lb->bytes = b;
        lb->cap = c;
    }
    if (n)
        memcpy(lb->bytes + lb->len, p, n);
    lb->off[lb->n] = lb->len;
    lb->lens[lb->n++] = n;
    lb->len += n;
    return 0;
}

/* An unfinished batch's operations (all of them, or it is damaged) and results. */
static int load_items(sqlite3 *db, int64_t bno, uint32_t total, load_buf *lb, const char **what)
{
    sqlite3_stmt *st = NULL;
    int rc;
    *what = "reading operations";
    rc = sqlite3_prepare_v2(db, "SELECT idx, op FROM ops WHERE bno = ?1 ORDER BY idx", -1, &st, NULL);
    if (rc == SQLITE_OK)
        sqlite3_bind_int64(st, 1, bno);
    while (next_row(st, &rc)) {
        if ((uint32_t)sqlite3_column_int64(st, 0) != lb->n) {
            rc = SQLITE_CORRUPT;
            break;
        }
        if (load_op(lb, sqlite3_column_blob(st, 1), (uint32_t)sqlite3_column_bytes(st, 1)) != 0)
            rc = SQLITE_NOMEM;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return rc;
    if (lb->n != total) {
        *what = "operations missing";
        return SQLITE_CORRUPT;
    }
    const uint8_t **ptrs = realloc(lb->ptrs, (total ? total : 1) * sizeof *ptrs);
    if (ptrs == NULL)
        return SQLITE_NOMEM;
    lb->ptrs = ptrs;
    for (uint32_t i = 0; i < total; i++)
        ptrs[i] = lb->bytes + lb->off[i];

    *what = "reading results";
    st = NULL;
    rc = sqlite3_prepare_v2(db, "SELECT idx, seq, state, result FROM results WHERE bno = ?1 ORDER BY idx", -1, &st,
                            NULL);
    if (rc == SQLITE_OK)
        sqlite3_bind_int64(st, 1, bno);
    while (next_row(st, &rc)) {
        if (push_result(&lb->res, &lb->n_res, &lb->res_cap, st) != 0)
            rc = SQLITE_NOMEM;
        else if (lb->res[lb->n_res - 1].index >= total)
            rc = SQLITE_CORRUPT;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Recovery reads use a connection of their own, opened and closed here: the reader's
 * belongs to its thread, and nothing is served yet, so there is nobody to overlap with. */
static int open_load(const sq_store *s, sqlite3 **db, char *err, size_t errlen)
{
    int rc = sqlite3_open_v2(s->path, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(*db, SQ_BUSY_MS);
        sqlite3_extended_result_codes(*db, 1);
        rc = sq_exec(*db, "BEGIN"); /* one snapshot for the whole load */
    }
    if (rc != SQLITE_OK)
        sq_errf(err, errlen, s->path, *db, rc, "opening for recovery");
    return rc;
}

store_err sq_load(store *stp, store_load_fn fn, void *arg, char *err, size_t errlen)
{
    sq_store *s = (sq_store *)stp;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    load_buf lb = {0};
    char what[96] = "reading batches";
    int rc = open_load(s, &db, err, errlen);
    if (rc != SQLITE_OK)
        goto out;
    rc = sqlite3_prepare_v2(db,
                            "SELECT bno, id, state, request_id, fingerprint, snapshot, total FROM batches"
                            " WHERE phase = 0 ORDER BY created_ns, id",
                            -1, &st, NULL);
    while (next_row(st, &rc)) {
        static const uint8_t no_fingerprint[32];
        store_loaded l = {0};
        int64_t bno = sqlite3_column_int64(st, 0);
        uint32_t total = (uint32_t)sqlite3_column_int64(st, 6);
        const char *id = (const char *)sqlite3_column_text(st, 1);
        l.ended = batch_state_terminal((Batch__V1__BatchState)sqlite3_column_int(st, 2));
        if (!l.ended) {
            const char *step;
            if ((rc = load_items(db, bno, total, &lb, &step)) != SQLITE_OK) {
                snprintf(what, sizeof what, "batch %s: %s", id ? id : "?", step);
                load_buf_release(&lb);
                break;
            }
            l.n_ops = total;
            l.ops = lb.ptrs;
            l.op_lens = lb.lens;
            l.results = lb.res;
            l.n_results = lb.n_res;
        }
        /* Column pointers of st stay valid until st steps again. */
        l.request_id = (const char *)sqlite3_column_text(st, 3);
        l.fingerprint = sqlite3_column_bytes(st, 4) == 32 ? sqlite3_column_blob(st, 4) : no_fingerprint;
        l.snapshot = sq_column_slice(st, 5);
        int stop = fn(arg, &l);
        grpc_slice_unref(l.snapshot); /* borrowed by the callback */
        lb.n_res = 0;                 /* the callback took the result slices */
        load_buf_release(&lb);
        if (stop) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        sq_errf(err, errlen, s->path, db, rc, what);
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
out:
    sqlite3_finalize(st);
    sqlite3_close_v2(db);
    load_buf_free(&lb);
    return sq_store_err(rc);
}

store_err sq_load_keys(store *stp, int64_t newer_than_ns, store_key_fn fn, void *arg, char *err, size_t errlen)
{
    sq_store *s = (sq_store *)stp;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = open_load(s, &db, err, errlen);
    if (rc != SQLITE_OK)
        goto out;
    rc = sqlite3_prepare_v2(db,
                            "SELECT key, batch_id, idx, created_ns FROM keys WHERE created_ns > ?1"
                            " ORDER BY created_ns",
                            -1, &st, NULL);
    if (rc == SQLITE_OK)
        sqlite3_bind_int64(st, 1, newer_than_ns);
    while (next_row(st, &rc)) {
        store_key k = {
            .key = (const char *)sqlite3_column_text(st, 0),
            .batch_id = (const char *)sqlite3_column_text(st, 1),
            .index = (uint32_t)sqlite3_column_int64(st, 2),
            .created_ns = sqlite3_column_int64(st, 3),
        };
        if (k.key == NULL || k.batch_id == NULL)
            continue;
        if (fn(arg, &k) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        sq_errf(err, errlen, s->path, db, rc, "reading idempotency keys");
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
out:
    sqlite3_finalize(st);
    sqlite3_close_v2(db);
    return sq_store_err(rc);
}
