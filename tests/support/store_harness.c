/* Test harness for the SQLite store suites; see store_harness.h. */
#include "store_harness.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

/* ---- harness ------------------------------------------------------------------------ */



void sqt_on_done(void *arg, store_err err)
{
    sqt_done *d = arg;
    d->calls++;
    d->err = err;
    d->order = d->t->n_done++;
}

static void sqt_on_health(void *arg, int healthy)
{
    sqt_ctx *t = arg;
    if (t->n_health < 16)
        t->health[t->n_health] = healthy;
    t->n_health++;
}

static void sqt_on_timeout(struct ev_loop *loop, ev_timer *w, int revents) { *(int *)w->data = 1; }

/* Runs the loop until *counter reaches want or secs pass. */
int sqt_run_until(sqt_ctx *t, const int *counter, int want, double secs)
{
    int timed_out = 0;
    ev_timer tm;
    ev_timer_init(&tm, sqt_on_timeout, secs, 0.);
    tm.data = &timed_out;
    ev_timer_start(t->loop, &tm);
    while (*counter < want && !timed_out)
        ev_run(t->loop, EVRUN_ONCE);
    ev_timer_stop(t->loop, &tm);
    return *counter >= want;
}

void sqt_init(sqt_ctx *t)
{
    memset(t, 0, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "/tmp/store-test-XXXXXX");
    cr_assert_not_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/batchd.db", t->dir);
    t->loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_eq(batch_registry_init(&t->reg), 0);
}

store *sqt_try_open(sqt_ctx *t, int sync_full, char *err, size_t errlen)
{
    store_sqlite_opts o = {.dir = t->dir, .sync_full = sync_full, .health_changed = sqt_on_health, .health_arg = t};
    return store_sqlite_open(t->loop, &o, err, errlen);
}

void sqt_open(sqt_ctx *t, int sync_full)
{
    char err[512] = "";
    t->st = sqt_try_open(t, sync_full, err, sizeof err);
    cr_assert_not_null(t->st, "open: %s", err);
}

void sqt_close(sqt_ctx *t)
{
    if (t->st)
        store_close(t->st);
    t->st = NULL;
}

static int sqt_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) { return remove(p); }

void sqt_free(sqt_ctx *t)
{
    sqt_close(t);
    batch_registry_free(&t->reg);
    ev_loop_destroy(t->loop);
    if (t->mounted)
        umount2(t->dir, MNT_DETACH);
    nftw(t->dir, sqt_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Mounts made by this test stay in this process (Criterion runs each test in its own). */
int sqt_private_mounts(void)
{
    return unshare(CLONE_NEWNS) == 0 && mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 ? 0 : -1;
}

/* ---- batches ------------------------------------------------------------------------ */

static void sqt_pack_op(uint32_t i, uint8_t **out, uint32_t *len)
{
    char id[32], path[300];
    Batch__V1__Operation op = BATCH__V1__OPERATION__INIT;
    snprintf(id, sizeof id, "item-%u", i);
    /* ~300 bytes, like the notes' measurements. */
    snprintf(path, sizeof path, "/things/%u?pad=%0250u", i, i);
    op.id = id;
    op.method = "POST";
    op.path = path;
    size_t n = batch__v1__operation__get_packed_size(&op);
    *out = malloc(n);
    *len = (uint32_t)batch__v1__operation__pack(&op, *out);
}

batch *sqt_make_batch(sqt_ctx *t, uint32_t n, const char *request_id)
{
    batch *b = batch_new(&t->reg, n);
    cr_assert_not_null(b);
    b->options = batch__v1__batch_options__unpack(NULL, 0, (const uint8_t *)"");
    for (uint32_t i = 0; i < n; i++)
        sqt_pack_op(i, &b->items[i].op, &b->items[i].op_len);
    if (request_id)
        b->request_id = strdup(request_id);
    for (int k = 0; k < 32; k++)
        b->fingerprint[k] = (uint8_t)(k * 7 + n);
    batch_register(&t->reg, b); /* so that the store's batch_unref does not free it */
    return b;
}

static uint8_t sqt_blob_byte(uint32_t idx, size_t k) { return (uint8_t)(idx * 31 + k * 7 + 1); }

/* Finishes item idx (outcome, seq, result) as the executor does before put_result. */
void sqt_finish_item(batch *b, uint32_t idx, int state, size_t len)
{
    grpc_slice s = grpc_slice_malloc(len);
    for (size_t k = 0; k < len; k++)
        GRPC_SLICE_START_PTR(s)[k] = sqt_blob_byte(idx, k);
    batch_item_finish(b, idx, state, s);
}

int sqt_blob_ok(grpc_slice s, uint32_t idx, size_t len)
{
    if (GRPC_SLICE_LENGTH(s) != len)
        return 0;
    for (size_t k = 0; k < len; k++)
        if (GRPC_SLICE_START_PTR(s)[k] != sqt_blob_byte(idx, k))
            return 0;
    return 1;
}

/* ---- reading back ------------------------------------------------------------------- */



int sqt_on_loaded(void *arg, const store_loaded *l)
{
    sqt_loaded *L = arg;
    cr_assert_lt(L->n, 8);
    sqt_loaded_batch *lb = &L->v[L->n++];
    lb->snapshot = grpc_slice_ref(l->snapshot); /* borrowed: keep our own */
    lb->snap = batch__v1__batch__unpack(NULL, GRPC_SLICE_LENGTH(l->snapshot), GRPC_SLICE_START_PTR(l->snapshot));
    cr_assert_not_null(lb->snap);
    lb->request_id = l->request_id ? strdup(l->request_id) : NULL;
    memcpy(lb->fp, l->fingerprint, 32);
    lb->ended = l->ended;
    lb->n_ops = l->n_ops;
    lb->ops = calloc(l->n_ops + 1, sizeof *lb->ops);
    lb->op_lens = calloc(l->n_ops + 1, sizeof *lb->op_lens);
    for (uint32_t i = 0; i < l->n_ops; i++) {
        lb->op_lens[i] = l->op_lens[i];
        lb->ops[i] = malloc(l->op_lens[i] + 1);
        memcpy(lb->ops[i], l->ops[i], l->op_lens[i]);
    }
    lb->n_results = l->n_results;
    lb->results = calloc(l->n_results + 1, sizeof *lb->results);
    if (l->n_results) /* we own the slices */
        memcpy(lb->results, l->results, l->n_results * sizeof *lb->results);
    return 0;
}

void sqt_loaded_free(sqt_loaded *L)
{
    for (size_t b = 0; b < L->n; b++) {
        sqt_loaded_batch *lb = &L->v[b];
        batch__v1__batch__free_unpacked(lb->snap, NULL);
        grpc_slice_unref(lb->snapshot);
        free(lb->request_id);
        for (uint32_t i = 0; i < lb->n_ops; i++)
            free(lb->ops[i]);
        free(lb->ops);
        free(lb->op_lens);
        for (size_t i = 0; i < lb->n_results; i++)
            grpc_slice_unref(lb->results[i].result);
        free(lb->results);
    }
    L->n = 0;
}

void sqt_load_all(sqt_ctx *t, sqt_loaded *L)
{
    char err[512] = "";
    memset(L, 0, sizeof *L);
    store_err e = t->st->ops->load(t->st, sqt_on_loaded, L, err, sizeof err);
    cr_assert_eq(e, STORE_OK, "load: %s", err);
}


void sqt_on_page(void *arg, store_err err, store_result *v, size_t n)
{
    sqt_page *p = arg;
    p->calls++;
    p->err = err;
    p->v = calloc(n + 1, sizeof *p->v);
    if (n) /* the slices are ours now */
        memcpy(p->v, v, n * sizeof *v);
    p->n = n;
}

void sqt_page_free(sqt_page *p)
{
    for (size_t i = 0; i < p->n; i++)
        grpc_slice_unref(p->v[i].result);
    free(p->v);
    memset(p, 0, sizeof *p);
}

void sqt_read_page(sqt_ctx *t, sqt_page *p, const char *id, uint32_t from, int by_seq, int state, uint32_t limit)
{
    memset(p, 0, sizeof *p);
    store_read_results(t->st, id, from, by_seq, state, limit, sqt_on_page, p);
    cr_assert(sqt_run_until(t, &p->calls, 1, 10), "read_results never answered");
    cr_assert_eq(p->err, STORE_OK);
}

int64_t sqt_raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

void sqt_raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_close(db);
}

store_sqlite_stats_t sqt_stats(sqt_ctx *t)
{
    store_sqlite_stats_t s;
    store_sqlite_stats(t->st, &s);
    return s;
}

/* put_batch, waited for. */
void sqt_put_batch_durable(sqt_ctx *t, batch *b)
{
    sqt_done d = {.t = t};
    store_put_batch(t->st, b, sqt_on_done, &d);
    cr_assert(sqt_run_until(t, &d.calls, 1, 60), "put_batch never completed");
    cr_assert_eq(d.err, STORE_OK);
}

