/* The SQLite store (--data-dir): opening and checking the database, the loop thread's
 * side (submitting jobs, running their callbacks) and close. The writer thread lives in
 * store_sqlite_write.c, reads and recovery in store_sqlite_read.c; the threading is
 * described in store_sqlite_int.h, the measurements behind it in
 * /work/shared/docs/sqlite-store-notes.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "pbtime.h"
#include "store_sqlite_int.h"

const char *store_strerror(store_err e)
{
    switch (e) {
    case STORE_OK: return "ok";
    case STORE_EIO: return "the store cannot write (disk full or I/O error)";
    case STORE_ECORRUPT: return "the stored data is damaged";
    case STORE_ENOMEM: return "out of memory";
    case STORE_ECLOSED: return "the store is shutting down";
    }
    return "unknown store error";
}

/* ---- small SQLite helpers shared by the three files ------------------------------- */

void sq_errf(char *err, size_t errlen, const char *path, sqlite3 *db, int rc, const char *what)
{
    /* The connection's message when it describes rc; SQLite's generic one for errors
     * found by our own checks (e.g. an operation missing: SQLITE_CORRUPT). */
    const char *msg = db && (sqlite3_errcode(db) & 0xff) == (rc & 0xff) ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    const char *hint = "";
    switch (rc & 0xff) {
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM: hint = "; the directory and the file must be writable by batchd"; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: hint = "; the file is damaged: restore it from a backup or move it aside"; break;
    case SQLITE_FULL: hint = "; the disk is full"; break;
    default: break;
    }
    snprintf(err, errlen, "%s: %s (%s, SQLite error %d)%s", path, msg, what, rc, hint);
}

store_err sq_store_err(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK: return STORE_OK;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return STORE_ECORRUPT;
    case SQLITE_NOMEM: return STORE_ENOMEM;
    default: return STORE_EIO;
    }
}

int sq_exec(sqlite3 *db, const char *sql) { return sqlite3_exec(db, sql, NULL, NULL, NULL); }

/* Steps a statement that returns no rows and resets it at once, so that it never holds a
 * read snapshot (pitfall 5). Returns SQLITE_OK or the step's error. */
int sq_step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Binds a slice's bytes, which must stay put until the statement is reset. An empty
 * slice becomes an empty blob, not NULL. */
void sq_bind_slice(sqlite3_stmt *st, int i, grpc_slice sl)
{
    if (GRPC_SLICE_LENGTH(sl) == 0)
        sqlite3_bind_zeroblob(st, i, 0);
    else
        sqlite3_bind_blob(st, i, GRPC_SLICE_START_PTR(sl), (int)GRPC_SLICE_LENGTH(sl), SQLITE_STATIC);
}

grpc_slice sq_column_slice(sqlite3_stmt *st, int col)
{
    const void *p = sqlite3_column_blob(st, col);
    int n = sqlite3_column_bytes(st, col);
    return n > 0 && p ? grpc_slice_from_copied_buffer(p, (size_t)n) : grpc_empty_slice();
}

void sq_job_free(sq_job *j)
{
    switch (j->kind) {
    case SQ_PUT_BATCH:
        grpc_slice_unref(j->u.put.snapshot);
        for (size_t i = 0; i < j->u.put.n_ended; i++)
            grpc_slice_unref(j->u.put.ended[i].result);
        free(j->u.put.ended);
        free(j->u.put.request_id);
        break;
    case SQ_PUT_RESULT:
        grpc_slice_unref(j->u.result.r.result);
        free(j->u.result.key);
        break;
    case SQ_PUT_SUMMARY: grpc_slice_unref(j->u.summary.snapshot); break;
    case SQ_READ:
        /* Slices not handed to a callback (the job failed after reading some rows). */
        for (size_t i = 0; i < j->u.read.n; i++)
            grpc_slice_unref(j->u.read.v[i].result);
        free(j->u.read.v);
        break;
    default: break;
    }
    free(j->id);
    free(j);
}

/* ---- the loop side ---------------------------------------------------------------- */

/* Moves every node of from (left empty) to the end of to. */
static void splice_back(list_node *to, list_node *from)
{
    if (list_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    list_init(from);
}

void sq_complete(sq_store *s, list_node *jobs)
{
    if (list_empty(jobs))
        return;
    pthread_mutex_lock(&s->cmu);
    list_node *pos, *tmp;
    list_foreach_safe(pos, tmp, jobs) {
        list_remove(pos);
        list_push_back(&s->cq, pos);
    }
    pthread_mutex_unlock(&s->cmu);
    ev_async_send(s->loop, &s->wake);
}

/* The async watcher keeps the loop running only while some callback is still owed
 * (outstanding > 0): an idle store must not keep ev_run alive, a busy one must. */
static void outstanding_add(sq_store *s)
{
    if (s->outstanding++ == 0)
        ev_ref(s->loop);
}

static void outstanding_done(sq_store *s)
{
    if (--s->outstanding == 0)
        ev_unref(s->loop);
}

static sq_job *job_new(sq_kind kind, const char *id, store_done_fn done, void *arg)
{
    sq_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->kind = kind;
    j->done = done;
    j->arg = arg;
    list_init(&j->link);
    if (id && (j->id = strdup(id)) == NULL) {
        free(j);
        return NULL;
    }
    return j;
}

static void deliver(sq_store *s, sq_job *j)
{
    switch (j->kind) {
    case SQ_HEALTH:
        if (s->healthy != j->u.health.healthy) {
            s->healthy = j->u.health.healthy;
            if (s->health_changed)
                s->health_changed(s->health_arg, s->healthy);
        }
        sq_job_free(j);
        return; /* not a submitted job: not outstanding */
    case SQ_READ: {
        /* The callback takes the slices; v is ours to free afterwards. */
        store_result *v = j->u.read.v;
        size_t n = j->u.read.n;
        j->u.read.v = NULL;
        j->u.read.n = 0;
        j->u.read.fn(j->u.read.arg, j->err, v, n);
        free(v);
        break;
    }
    case SQ_PUT_BATCH:
        if (j->done)
            j->done(j->arg, j->err);
        batch_unref(j->u.put.b); /* after done: the batch stays valid during it */
        break;
    default:
        if (j->done)
            j->done(j->arg, j->err);
        break;
    }
    sq_job_free(j);
    outstanding_done(s);
}

/* Runs every completion queued so far, in queue order (= commit order). */
static void drain(sq_store *s)
{
    for (;;) {
        list_node batch_list;
        list_init(&batch_list);
        pthread_mutex_lock(&s->cmu);
        splice_back(&batch_list, &s->cq);
        pthread_mutex_unlock(&s->cmu);
        if (list_empty(&batch_list))
            return;
        list_node *pos, *tmp;
        list_foreach_safe(pos, tmp, &batch_list) {
            list_remove(pos);
            deliver(s, container_of(pos, sq_job, link));
        }
    }
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    drain(container_of(w, sq_store, wake));
}

/* Queues a job for the writer or the reader. Once close began, nothing reaches the
 * threads: the job goes straight back with STORE_ECLOSED (its callback runs from
 * close's final drain, never from inside this call). */
static void submit(sq_store *s, sq_job *j, pthread_mutex_t *mu, pthread_cond_t *cv, list_node *q)
{
    outstanding_add(s);
    if (s->closed) {
        j->err = STORE_ECLOSED;
        pthread_mutex_lock(&s->cmu);
        list_push_back(&s->cq, &j->link);
        pthread_mutex_unlock(&s->cmu);
        return;
    }
    pthread_mutex_lock(mu);
    list_push_back(q, &j->link);
    pthread_cond_signal(cv);
    pthread_mutex_unlock(mu);
}

/* Writes are collected during a loop turn and handed to the writer in one go at its end
 * (on_handover), not one lock and wakeup per write: results come a few per turn, and
 * each wakeup of the writer used to become a commit of its own (0.8 context switches
 * and up to 16 KB of WAL per result, measured). */
static void submit_write(sq_store *s, sq_job *j)
{
    if (s->closed)
        return submit(s, j, &s->wmu, &s->wcv, &s->wq); /* straight back with ECLOSED */
    outstanding_add(s);
    /* The watcher has the lowest priority, so it runs after every other callback of
     * this turn; fed from a callback it still runs in this turn (libev invokes what
     * becomes pending while it invokes), fed outside ev_run at the start of the next. */
    if (list_empty(&s->turn))
        ev_feed_event(s->loop, &s->handover, EV_CUSTOM);
    list_push_back(&s->turn, &j->link);
    s->turn_rows += sq_job_rows(j);
    s->turn_urgent |= j->kind == SQ_PUT_BATCH;
}

static void handover(sq_store *s)
{
    if (list_empty(&s->turn))
        return;
    pthread_mutex_lock(&s->wmu);
    if (list_empty(&s->wq))
        s->wq_since_ns = pbtime_mono_ns();
    splice_back(&s->wq, &s->turn);
    s->wq_rows += s->turn_rows;
    s->wq_urgent |= s->turn_urgent;
    /* A lingering writer wakes by itself when its time is up: only enough rows or a
     * put_batch are worth an early wakeup. */
    if (!s->wlingering || s->wq_urgent || s->wq_rows >= s->linger_rows)
        pthread_cond_signal(&s->wcv);
    pthread_mutex_unlock(&s->wmu);
    s->turn_rows = 0;
    s->turn_urgent = 0;
}

static void on_handover(struct ev_loop *loop, ev_check *w, int revents)
{
    handover(container_of(w, sq_store, handover));
}

/* Allocation failures are reported at once: there is nothing to queue them with. They
 * do not happen on Linux short of a ulimit, so callers need not expect reentrancy. */
static void fail_nomem(store_done_fn done, void *arg)
{
    log_error("store: out of memory queueing a write");
    if (done)
        done(arg, STORE_ENOMEM);
}

static void sq_put_batch(store *st, batch *b, store_done_fn done, void *arg)
{
    sq_store *s = (sq_store *)st;
    sq_job *j = job_new(SQ_PUT_BATCH, b->id, done, arg);
    if (j == NULL)
        return fail_nomem(done, arg);
    /* Items finished before the batch is stored (reused results) are stored with it.
     * outcome, not state: an item is finished before clients see it ended. */
    size_t n_ended = 0;
    for (uint32_t i = 0; i < b->total; i++)
        n_ended += b->items[i].outcome != 0;
    if ((b->request_id && (j->u.put.request_id = strdup(b->request_id)) == NULL) ||
        (n_ended && (j->u.put.ended = calloc(n_ended, sizeof *j->u.put.ended)) == NULL)) {
        sq_job_free(j);
        return fail_nomem(done, arg);
    }
    /* Everything that may change later is copied now; the operations are immutable, so
     * the writer reads them in place under a batch reference instead of copying up to
     * max_items of them on the loop thread. */
    j->u.put.b = b;
    b->refs++;
    j->u.put.total = b->total;
    j->u.put.state = b->state;
    j->u.put.created_ns = b->create_ns;
    j->u.put.end_ns = b->end_ns;
    j->u.put.snapshot = batch_snapshot(b);
    memcpy(j->u.put.fingerprint, b->fingerprint, sizeof j->u.put.fingerprint);
    for (uint32_t i = 0; i < b->total; i++) {
        const item *it = &b->items[i];
        if (it->outcome == 0)
            continue;
        store_result *r = &j->u.put.ended[j->u.put.n_ended++];
        r->index = i;
        r->seq = it->seq;
        r->state = it->outcome;
        r->result = grpc_slice_ref(it->result);
    }
    submit_write(s, j);
}

static void sq_put_result(store *st, batch *b, uint32_t index, const char *key, store_done_fn done, void *arg)
{
    sq_store *s = (sq_store *)st;
    /* The item is finished (outcome, seq, result set) but not yet recorded: its state
     * changes for clients only once this write is durable. */
    const item *it = &b->items[index];
    sq_job *j = job_new(SQ_PUT_RESULT, b->id, done, arg);
    int remember = key && it->outcome == BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED;
    if (j == NULL || (remember && (j->u.result.key = strdup(key)) == NULL)) {
        if (j)
            sq_job_free(j);
        return fail_nomem(done, arg);
    }
    j->u.result.r.index = index;
    j->u.result.r.seq = it->seq;
    j->u.result.r.state = it->outcome;
    j->u.result.r.result = grpc_slice_ref(it->result);
    j->u.result.key_ns = pbtime_wall_ns();
    submit_write(s, j);
}

static void sq_put_summary(store *st, batch *b, store_done_fn done, void *arg)
{
    sq_store *s = (sq_store *)st;
    sq_job *j = job_new(SQ_PUT_SUMMARY, b->id, done, arg);
    if (j == NULL)
        return fail_nomem(done, arg);
    j->u.summary.state = b->state;
    j->u.summary.end_ns = b->end_ns;
    j->u.summary.snapshot = batch_snapshot(b);
    submit_write(s, j);
}

static void sq_delete_batch(store *st, const char *batch_id, int64_t keys_before_ns, store_done_fn done, void *arg)
{
    sq_store *s = (sq_store *)st;
    sq_job *j = job_new(SQ_DELETE, batch_id, done, arg);
    if (j == NULL)
        return fail_nomem(done, arg);
    j->u.del.keys_before_ns = keys_before_ns;
    submit_write(s, j);
}

/* Queues a page read; mode is R_BY_INDEX, R_BY_SEQ or R_OPS. */
static void queue_read(sq_store *s, const char *batch_id, uint32_t from, int mode, int state, uint32_t limit,
                       store_read_fn fn, void *arg)
{
    sq_job *j = job_new(SQ_READ, batch_id, NULL, NULL);
    if (j == NULL) {
        log_error("store: out of memory queueing a read");
        fn(arg, STORE_ENOMEM, NULL, 0);
        return;
    }
    j->u.read.from = from;
    j->u.read.by_seq = mode;
    j->u.read.state = state;
    j->u.read.limit = limit == 0 || limit > SQ_READ_MAX ? SQ_READ_MAX : limit;
    j->u.read.fn = fn;
    j->u.read.arg = arg;
    submit(s, j, &s->rmu, &s->rcv, &s->rq);
}

static void sq_read_results(store *st, const char *batch_id, uint32_t from, int by_seq, int state,
                            uint32_t limit, store_read_fn fn, void *arg)
{
    queue_read((sq_store *)st, batch_id, from, by_seq ? R_BY_SEQ : R_BY_INDEX, state, limit, fn, arg);
}

static void sq_read_ops(store *st, const char *batch_id, uint32_t from, int state, uint32_t limit,
                        store_read_fn fn, void *arg)
{
    queue_read((sq_store *)st, batch_id, from, R_OPS, state, limit, fn, arg);
}

static int sq_healthy(const store *st) { return ((const sq_store *)st)->healthy; }
static int sq_durable(const store *st) { return 1; }

static void stop_threads(sq_store *s)
{
    pthread_mutex_lock(&s->wmu);
    s->wclosing = 1;
    pthread_cond_signal(&s->wcv);
    pthread_mutex_unlock(&s->wmu);
    pthread_mutex_lock(&s->rmu);
    s->rclosing = 1;
    pthread_cond_signal(&s->rcv);
    pthread_mutex_unlock(&s->rmu);
    /* A quick_check of a large cold file takes close to a minute; it only logs. Under
     * kmu, so the interrupt cannot hit the connection after the check finished. */
    pthread_mutex_lock(&s->kmu);
    if (s->checking)
        sqlite3_interrupt(s->cdb);
    pthread_mutex_unlock(&s->kmu);
    if (s->writer_started)
        pthread_join(s->writer, NULL);
    if (s->reader_started)
        pthread_join(s->reader, NULL);
    if (s->checker_started)
        pthread_join(s->checker, NULL);
    s->writer_started = s->reader_started = s->checker_started = 0;
}

static void free_store(sq_store *s)
{
    for (int i = 0; i < W_COUNT; i++)
        sqlite3_finalize(s->wst[i]);
    sqlite3_finalize(s->wops);
    sqlite3_finalize(s->wresults);
    for (int i = 0; i < R_COUNT; i++)
        sqlite3_finalize(s->rst[i]);
    /* The writer's connection last: closing the last connection checkpoints the WAL into
     * the database and removes it, so the next start finds one file. */
    sqlite3_close_v2(s->cdb);
    sqlite3_close_v2(s->rdb);
    sqlite3_close_v2(s->wdb);
    pthread_mutex_destroy(&s->wmu);
    pthread_cond_destroy(&s->wcv);
    pthread_mutex_destroy(&s->rmu);
    pthread_cond_destroy(&s->rcv);
    pthread_mutex_destroy(&s->kmu);
    pthread_mutex_destroy(&s->cmu);
    free(s->blocked);
    free(s->path);
    free(s);
}

static void sq_close(store *st)
{
    sq_store *s = (sq_store *)st;
    /* This turn's writes go to the writer first, as the turn's end would have sent them. */
    handover(s);
    ev_clear_pending(s->loop, &s->handover);
    /* From here on new jobs come back with STORE_ECLOSED; the threads finish what they
     * hold (the writer gives up only if writes keep failing, see SQ_CLOSE_GIVEUP_MS). */
    s->closed = 1;
    stop_threads(s);
    drain(s);
    /* What this run's writes cost: rows per commit is what group commit is about. */
    uint64_t commits = atomic_load(&s->n_commits), rows = atomic_load(&s->n_rows);
    log_info("%s: closed; %llu commits of %llu rows (%.1f per commit), %llu WAL pages of %d bytes", s->path,
             (unsigned long long)commits, (unsigned long long)rows, commits ? (double)rows / (double)commits : 0.0,
             (unsigned long long)atomic_load(&s->n_wal_frames), s->page_size);
    if (s->outstanding == 0) /* the watcher is unref'd whenever nothing is outstanding */
        ev_ref(s->loop);
    ev_async_stop(s->loop, &s->wake);
    free_store(s);
}

void store_sqlite_stats(const store *st, store_sqlite_stats_t *out)
{
    sq_store *s = (sq_store *)st;
    memset(out, 0, sizeof *out);
    out->commits = atomic_load_explicit(&s->n_commits, memory_order_relaxed);
    out->rows = atomic_load_explicit(&s->n_rows, memory_order_relaxed);
    out->max_rows = atomic_load_explicit(&s->n_max_rows, memory_order_relaxed);
    out->retries = atomic_load_explicit(&s->n_retries, memory_order_relaxed);
    out->rejected = atomic_load_explicit(&s->n_rejected, memory_order_relaxed);
    out->wal_frames = atomic_load_explicit(&s->n_wal_frames, memory_order_relaxed);
    out->page_size = s->page_size;
    out->synchronous = s->synchronous;
    char wal[4096];
    struct stat stt;
    snprintf(wal, sizeof wal, "%s-wal", s->path);
    if (stat(wal, &stt) == 0)
        out->wal_bytes = (uint64_t)stt.st_size;
}

void store_sqlite_set_linger(store *st, int64_t linger_ns, size_t rows)
{
    sq_store *s = (sq_store *)st;
    pthread_mutex_lock(&s->wmu);
    s->linger_ns = linger_ns > 0 ? linger_ns : 0;
    s->linger_rows = rows;
    pthread_cond_signal(&s->wcv); /* a writer waiting on the old deadline looks again */
    pthread_mutex_unlock(&s->wmu);
}

static const store_ops sqlite_ops = {
    .name = "sqlite",
    .load = sq_load,
    .load_keys = sq_load_keys,
    .put_batch = sq_put_batch,
    .put_result = sq_put_result,
    .put_summary = sq_put_summary,
    .delete_batch = sq_delete_batch,
    .read_results = sq_read_results,
    .read_ops = sq_read_ops,
    .healthy = sq_healthy,
    .durable = sq_durable,
    .close = sq_close,
};

/* ---- open ------------------------------------------------------------------------- */

/* Process-wide SQLite settings, before its first use (sqlite3_config refuses them after
 * that, harmlessly: a test that opened a database itself just keeps the defaults).
 * Memory statistics put a global mutex around every SQLite allocation: 6 % of the
 * writer's time per row, for counters batchd never reads. */
static void sq_global_init(void) { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }

store *store_sqlite_open(struct ev_loop *loop, const store_sqlite_opts *o, char *err, size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sq_global_init);
    sq_store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->base.ops = &sqlite_ops;
    s->loop = loop;
    s->healthy = 1;
    s->linger_ns = SQ_LINGER_NS;
    s->linger_rows = SQ_LINGER_ROWS;
    s->health_changed = o->health_changed;
    s->health_arg = o->health_arg;
    list_init(&s->turn);
    list_init(&s->wq);
    list_init(&s->wlist);
    list_init(&s->rq);
    list_init(&s->cq);
    pthread_mutex_init(&s->wmu, NULL);
    /* Monotonic: the writer's group-commit wait must not stretch with a clock step. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wcv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->rmu, NULL);
    pthread_cond_init(&s->rcv, NULL);
    pthread_mutex_init(&s->kmu, NULL);
    pthread_mutex_init(&s->cmu, NULL);
    ev_async_init(&s->wake, on_wake);
    ev_check_init(&s->handover, on_handover);
    ev_set_priority(&s->handover, EV_MINPRI);

    if (sq_open_dir(o->dir, err, errlen) != 0)
        goto fail;
    size_t len = strlen(o->dir) + sizeof "/batchd.db";
    if ((s->path = malloc(len)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    snprintf(s->path, len, "%s/batchd.db", o->dir);
    /* NOMUTEX: each connection is used by one thread at a time (pitfall 3's one-writer
     * shape), so SQLite's per-connection mutex would be pure overhead. */
    int rc = sqlite3_open_v2(s->path, &s->wdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        sq_errf(err, errlen, s->path, s->wdb, rc, "opening");
        goto fail;
    }
    if (sq_setup(s, o->sync_full, err, errlen) != 0)
        goto fail;
    if (sq_open_reader(s, &s->rdb, err, errlen) != 0 || sq_open_reader(s, &s->cdb, err, errlen) != 0)
        goto fail;
    if (sq_writer_prepare(s) != 0) {
        sq_errf(err, errlen, s->path, s->wdb, sqlite3_errcode(s->wdb), "preparing writes");
        goto fail;
    }
    if (sq_reader_prepare(s) != 0) {
        sq_errf(err, errlen, s->path, s->rdb, sqlite3_errcode(s->rdb), "preparing reads");
        goto fail;
    }
    ev_async_start(loop, &s->wake);
    ev_unref(loop); /* nothing outstanding yet */
    s->writer_started = pthread_create(&s->writer, NULL, sq_writer_main, s) == 0;
    if (s->writer_started)
        s->reader_started = pthread_create(&s->reader, NULL, sq_reader_main, s) == 0;
    if (s->reader_started)
        s->checker_started = pthread_create(&s->checker, NULL, sq_checker_main, s) == 0;
    if (!s->checker_started) {
        snprintf(err, errlen, "%s: cannot start the store's threads", s->path);
        stop_threads(s); /* nothing was queued yet: they exit at once */
        ev_ref(loop);
        ev_async_stop(loop, &s->wake);
        free_store(s);
        return NULL;
    }
    return &s->base;

fail:
    free_store(s);
    return NULL;
}
