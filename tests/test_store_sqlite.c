/* The SQLite store engine: durability across reopen, grouping, ordering, paged reads,
 * deletes and idempotency keys. The failure modes are in test_store_sqlite_fail.c; the
 * harness (temp dir, own ev loop driven until the awaited callbacks arrive) in
 * support/store_harness.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pbtime.h"
#include "store_harness.h"

/* ---- durability ------------------------------------------------------------------------ */

Test(store_sqlite, batch_survives_reopen)
{
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 1);
    batch *b = sqt_make_batch(&t, 3, "req-1");
    sqt_put_batch_durable(&t, b);
    grpc_slice snap = batch_snapshot(b);
    sqt_close(&t);

    /* One file, 4 KB pages, WAL mode (the WAL is checkpointed away at close). */
    cr_assert_eq(sqt_raw_int(t.path, "PRAGMA page_size"), 4096);
    cr_assert_eq(sqt_raw_int(t.path, "PRAGMA user_version"), 1);
    cr_assert_eq(access(t.path, F_OK), 0);

    sqt_open(&t, 1);
    sqt_loaded L;
    sqt_load_all(&t, &L);
    cr_assert_eq(L.n, 1);
    sqt_loaded_batch *lb = &L.v[0];
    cr_assert_str_eq(lb->snap->id, b->id);
    cr_assert_eq(GRPC_SLICE_LENGTH(lb->snapshot), GRPC_SLICE_LENGTH(snap));
    cr_assert_eq(memcmp(GRPC_SLICE_START_PTR(lb->snapshot), GRPC_SLICE_START_PTR(snap), GRPC_SLICE_LENGTH(snap)), 0);
    cr_assert_str_eq(lb->request_id, "req-1");
    cr_assert_eq(memcmp(lb->fp, b->fingerprint, 32), 0);
    cr_assert_eq(lb->ended, 0);
    cr_assert_eq(lb->n_ops, 3);
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert_eq(lb->op_lens[i], b->items[i].op_len);
        cr_assert_eq(memcmp(lb->ops[i], b->items[i].op, b->items[i].op_len), 0, "op %u differs", i);
    }
    cr_assert_eq(lb->n_results, 0);
    grpc_slice_unref(snap);
    sqt_loaded_free(&L);
    sqt_free(&t);
}

Test(store_sqlite, results_survive_reopen)
{
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 1);
    batch *b = sqt_make_batch(&t, 5, NULL);
    sqt_put_batch_durable(&t, b);
    /* Items end out of index order: 2 (seq 1), 0 (seq 2), 4 (seq 3). */
    const uint32_t idx[3] = {2, 0, 4};
    const int state[3] = {BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED,
                          BATCH__V1__ITEM_STATE__ITEM_STATE_CANCELLED};
    sqt_done d[3];
    for (int k = 0; k < 3; k++) {
        d[k] = (sqt_done){.t = &t};
        sqt_finish_item(b, idx[k], state[k], 100 + idx[k]);
        store_put_result(t.st, b, idx[k], NULL, sqt_on_done, &d[k]);
    }
    cr_assert(sqt_run_until(&t, &t.n_done, 4, 10));
    sqt_close(&t);

    sqt_open(&t, 1);
    sqt_loaded L;
    sqt_load_all(&t, &L);
    cr_assert_eq(L.n, 1);
    cr_assert_eq(L.v[0].n_results, 3);
    const store_result *r = L.v[0].results; /* index order: 0, 2, 4 */
    cr_assert_eq(r[0].index, 0);
    cr_assert_eq(r[0].seq, 2);
    cr_assert_eq(r[0].state, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED);
    cr_assert(sqt_blob_ok(r[0].result, 0, 100));
    cr_assert_eq(r[1].index, 2);
    cr_assert_eq(r[1].seq, 1);
    cr_assert_eq(r[1].state, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED);
    cr_assert(sqt_blob_ok(r[1].result, 2, 102));
    cr_assert_eq(r[2].index, 4);
    cr_assert_eq(r[2].seq, 3);
    cr_assert_eq(r[2].state, BATCH__V1__ITEM_STATE__ITEM_STATE_CANCELLED);
    cr_assert(sqt_blob_ok(r[2].result, 4, 104));
    sqt_loaded_free(&L);
    sqt_free(&t);
}

/* Items finished before the batch is stored (reused results) are stored with it. */
Test(store_sqlite, put_batch_stores_results_already_finished)
{
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 1);
    batch *b = sqt_make_batch(&t, 4, NULL);
    sqt_finish_item(b, 3, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 50);
    sqt_put_batch_durable(&t, b);
    sqt_close(&t);
    sqt_open(&t, 1);
    sqt_loaded L;
    sqt_load_all(&t, &L);
    cr_assert_eq(L.n, 1);
    cr_assert_eq(L.v[0].n_results, 1);
    cr_assert_eq(L.v[0].results[0].index, 3);
    cr_assert_eq(L.v[0].results[0].seq, 1);
    cr_assert(sqt_blob_ok(L.v[0].results[0].result, 3, 50));
    sqt_loaded_free(&L);
    sqt_free(&t);
}

static void sync_mode_round_trip(int full)
{
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, full);
    cr_assert_eq(sqt_stats(&t).synchronous, full ? 2 : 1);
    batch *b = sqt_make_batch(&t, 10, NULL);
    sqt_put_batch_durable(&t, b);
    sqt_done d[10];
    for (uint32_t i = 0; i < 10; i++) {
        d[i] = (sqt_done){.t = &t};
        sqt_finish_item(b, i, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 1024);
        store_put_result(t.st, b, i, NULL, sqt_on_done, &d[i]);
    }
    cr_assert(sqt_run_until(&t, &t.n_done, 11, 10));
    sqt_close(&t);
    sqt_open(&t, full);
    sqt_loaded L;
    sqt_load_all(&t, &L);
    cr_assert_eq(L.n, 1);
    cr_assert_eq(L.v[0].n_results, 10);
    sqt_loaded_free(&L);
    sqt_free(&t);
}

Test(store_sqlite, sync_full_works) { sync_mode_round_trip(1); }
Test(store_sqlite, sync_normal_works) { sync_mode_round_trip(0); }

/* ---- ordering and grouping --------------------------------------------------------------- */

Test(store_sqlite, completions_in_submission_order)
{
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 0);
    batch *a = sqt_make_batch(&t, 100, NULL), *b = sqt_make_batch(&t, 100, NULL);
    sqt_done pa = {.t = &t}, pb = {.t = &t}, sum = {.t = &t};
    sqt_done *d = calloc(200, sizeof *d);
    store_put_batch(t.st, a, sqt_on_done, &pa);
    store_put_batch(t.st, b, sqt_on_done, &pb);
    for (uint32_t i = 0; i < 100; i++) { /* interleaved results of both batches */
        d[2 * i] = (sqt_done){.t = &t};
        d[2 * i + 1] = (sqt_done){.t = &t};
        sqt_finish_item(a, i, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 64);
        store_put_result(t.st, a, i, NULL, sqt_on_done, &d[2 * i]);
        sqt_finish_item(b, 99 - i, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED, 64);
        store_put_result(t.st, b, 99 - i, NULL, sqt_on_done, &d[2 * i + 1]);
    }
    batch_end(a, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED, 0, NULL);
    store_put_summary(t.st, a, sqt_on_done, &sum);
    cr_assert(sqt_run_until(&t, &t.n_done, 203, 20));
    cr_assert_eq(pa.order, 0);
    cr_assert_eq(pb.order, 1);
    for (int k = 0; k < 200; k++) {
        cr_assert_eq(d[k].calls, 1);
        cr_assert_eq(d[k].err, STORE_OK);
        cr_assert_eq(d[k].order, k + 2, "write %d completed as %d", k + 2, d[k].order);
    }
    cr_assert_eq(sum.order, 202);
    free(d);
    sqt_free(&t);
}

Test(store_sqlite, many_results_grouped_into_few_commits)
{
    enum { N = 10000 };
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 1);
    batch *b = sqt_make_batch(&t, N, NULL);
    sqt_put_batch_durable(&t, b);
    store_sqlite_stats_t before = sqt_stats(&t);
    sqt_done *d = calloc(N, sizeof *d);
    for (uint32_t i = 0; i < N; i++) {
        d[i] = (sqt_done){.t = &t};
        sqt_finish_item(b, i, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 1024);
        store_put_result(t.st, b, i, NULL, sqt_on_done, &d[i]);
    }
    cr_assert(sqt_run_until(&t, &t.n_done, N + 1, 60));
    store_sqlite_stats_t after = sqt_stats(&t);
    uint64_t commits = after.commits - before.commits;
    cr_log_info("%d results in %lu commits, at most %lu rows per commit", N, (unsigned long)commits,
                (unsigned long)after.max_rows);
    cr_assert_geq(commits, 2, "the cap of 5,000 rows per transaction was not applied");
    cr_assert_lt(commits, N / 20, "%lu commits for %d results: not grouped", (unsigned long)commits, N);
    cr_assert_leq(after.max_rows, 5000);
    cr_assert_eq(after.rows - before.rows, N);
    for (uint32_t i = 0; i < N; i++)
        cr_assert_eq(d[i].order, (int)i + 1);
    free(d);
    sqt_free(&t);
}

/* ---- group commit ------------------------------------------------------------------------ */

typedef struct timed_done {
    sqt_done d;
    int64_t at_ns;   /* monotonic, when the callback ran */
} timed_done;

static void on_timed_done(void *arg, store_err err)
{
    timed_done *td = arg;
    td->at_ns = pbtime_mono_ns();
    sqt_on_done(&td->d, err);
}

static void finish_and_put(sqt_ctx *t, batch *b, uint32_t idx, store_done_fn fn, void *arg)
{
    sqt_finish_item(b, idx, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 64);
    store_put_result(t->st, b, idx, NULL, fn, arg);
}

/* A result waits up to the linger for others to share its commit: one that comes alone
 * is not acknowledged before then, and those that come meanwhile go in the same commit. */
Test(store_sqlite, a_lone_result_waits_the_linger_for_company)
{
    enum { N = 10 };
    const int64_t linger = 300 * PBTIME_NS_PER_MS;
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 1);
    batch *b = sqt_make_batch(&t, N, NULL);
    sqt_put_batch_durable(&t, b);
    store_sqlite_set_linger(t.st, linger, 512);
    store_sqlite_stats_t before = sqt_stats(&t);
    timed_done d[N];
    memset(d, 0, sizeof d);
    for (int i = 0; i < N; i++)
        d[i].d.t = &t;
    int64_t t0 = pbtime_mono_ns();
    finish_and_put(&t, b, 0, on_timed_done, &d[0]);
    int never = 0;
    sqt_run_until(&t, &never, 1, 0.05); /* a few loop turns: the first is handed over */
    cr_assert_eq(d[0].d.calls, 0, "acknowledged before the linger was up");
    for (uint32_t i = 1; i < N; i++)
        finish_and_put(&t, b, i, on_timed_done, &d[i]);
    cr_assert(sqt_run_until(&t, &t.n_done, 1 + N, 20));
    store_sqlite_stats_t after = sqt_stats(&t);
    cr_assert_eq(after.commits - before.commits, 1, "%lu commits for results within one linger",
                 (unsigned long)(after.commits - before.commits));
    cr_assert_geq(d[0].at_ns - t0, linger, "the first result was acknowledged after %lld ms",
                  (long long)((d[0].at_ns - t0) / PBTIME_NS_PER_MS));
    for (int i = 0; i < N; i++) {
        cr_assert_eq(d[i].d.err, STORE_OK);
        cr_assert_eq(d[i].d.order, 1 + i);
    }
    sqt_free(&t);
}

/* A put_batch (a SubmitBatch waits for it) is not held back by the linger, nor is a
 * queue that holds enough rows already. */
Test(store_sqlite, put_batch_and_enough_rows_end_the_linger)
{
    enum { ROWS = 64 };
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 0);
    store_sqlite_set_linger(t.st, 30 * PBTIME_NS_PER_SEC, ROWS);
    batch *a = sqt_make_batch(&t, 1, NULL), *b = sqt_make_batch(&t, ROWS, NULL);
    sqt_done pa = {.t = &t};
    store_put_batch(t.st, a, sqt_on_done, &pa);
    cr_assert(sqt_run_until(&t, &pa.calls, 1, 10), "put_batch waited for the linger");
    sqt_put_batch_durable(&t, b);
    sqt_done d[ROWS];
    for (uint32_t i = 0; i < ROWS; i++) {
        d[i] = (sqt_done){.t = &t};
        finish_and_put(&t, b, i, sqt_on_done, &d[i]);
    }
    cr_assert(sqt_run_until(&t, &t.n_done, 2 + ROWS, 10), "%d rows waited for the linger", ROWS);
    for (uint32_t i = 0; i < ROWS; i++)
        cr_assert_eq(d[i].err, STORE_OK);
    sqt_free(&t);
}

typedef struct chain {
    sqt_ctx *t;
    batch *b;
    uint32_t next, n;
    sqt_done last;
} chain;

static void on_chained(void *arg, store_err err)
{
    chain *c = arg;
    cr_assert_eq(err, STORE_OK);
    if (c->next == c->n)
        return;
    uint32_t i = c->next++;
    if (c->next == c->n)
        finish_and_put(c->t, c->b, i, sqt_on_done, &c->last);
    else
        finish_and_put(c->t, c->b, i, on_chained, c);
}

/* Writes submitted from a completion callback reach the writer in the same loop turn:
 * nothing else happens in this loop, so a write left behind would wait forever. */
Test(store_sqlite, writes_from_callbacks_are_handed_over)
{
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 0);
    chain c = {.t = &t, .n = 30};
    c.b = sqt_make_batch(&t, c.n, NULL);
    c.last.t = &t;
    sqt_put_batch_durable(&t, c.b);
    c.next = 1;
    finish_and_put(&t, c.b, 0, on_chained, &c);
    cr_assert(sqt_run_until(&t, &c.last.calls, 1, 20), "the chain stalled after %u writes", c.next);
    cr_assert_eq(c.last.err, STORE_OK);
    sqt_free(&t);
}

/* The counters group commit is judged by: WAL pages written and the page size. */
Test(store_sqlite, stats_count_wal_pages)
{
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 1);
    store_sqlite_stats_t s0 = sqt_stats(&t);
    batch *b = sqt_make_batch(&t, 100, NULL);
    sqt_put_batch_durable(&t, b);
    store_sqlite_stats_t s1 = sqt_stats(&t);
    cr_assert_eq(s1.page_size, 4096);
    /* 100 ops of ~300 bytes: at least 30 KB of pages. */
    cr_assert_geq(s1.wal_frames - s0.wal_frames, 8, "%lu WAL pages", (unsigned long)(s1.wal_frames - s0.wal_frames));
    cr_assert_eq(s1.commits - s0.commits, 1);
    sqt_free(&t);
}

/* A 100,000-op batch is written in several transactions, and results of another batch
 * submitted after it do not wait for it: they complete (are durable and acknowledged)
 * while it is still being written. Completions stay in submission order per batch only:
 * a result of the big batch itself still comes after the big batch. */
Test(store_sqlite, big_batch_chunked_and_other_results_pass_it, .timeout = 300)
{
    enum { BIG = 100000, SMALL = 10 };
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 1);
    batch *a = sqt_make_batch(&t, SMALL, NULL);
    sqt_put_batch_durable(&t, a);
    batch *big = sqt_make_batch(&t, BIG, NULL);
    store_sqlite_stats_t before = sqt_stats(&t);
    sqt_done pbig = {.t = &t}, rbig = {.t = &t}, ra[SMALL];
    store_put_batch(t.st, big, sqt_on_done, &pbig);
    for (uint32_t i = 0; i < SMALL; i++) {
        ra[i] = (sqt_done){.t = &t};
        sqt_finish_item(a, i, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 1024);
        store_put_result(t.st, a, i, NULL, sqt_on_done, &ra[i]);
    }
    sqt_finish_item(big, 0, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 1024);
    store_put_result(t.st, big, 0, NULL, sqt_on_done, &rbig);

    cr_assert(sqt_run_until(&t, &t.n_done, 2 + SMALL + 1, 240));
    store_sqlite_stats_t after = sqt_stats(&t);
    uint64_t commits = after.commits - before.commits;
    cr_log_info("100,000 ops in %lu commits, at most %lu rows per commit", (unsigned long)commits,
                (unsigned long)after.max_rows);
    cr_assert_geq(commits, BIG / 5000, "not written in chunks");
    cr_assert_leq(after.max_rows, 5000);
    for (uint32_t i = 0; i < SMALL; i++)
        cr_assert_lt(ra[i].order, pbig.order, "result %u of the other batch waited for the big one", i);
    cr_assert_gt(rbig.order, pbig.order, "a result of the big batch completed before the batch");
    cr_assert_eq(pbig.err, STORE_OK);
    sqt_close(&t);

    sqt_open(&t, 1);
    sqt_loaded L;
    sqt_load_all(&t, &L);
    cr_assert_eq(L.n, 2);
    sqt_loaded_batch *lb = strcmp(L.v[0].snap->id, big->id) == 0 ? &L.v[0] : &L.v[1];
    cr_assert_str_eq(lb->snap->id, big->id);
    cr_assert_eq(lb->n_ops, BIG);
    for (uint32_t i = 0; i < BIG; i++)
        cr_assert(lb->op_lens[i] == big->items[i].op_len && memcmp(lb->ops[i], big->items[i].op, lb->op_lens[i]) == 0,
                  "op %u differs", i);
    cr_assert_eq(lb->n_results, 1);
    sqt_loaded_free(&L);
    sqt_free(&t);
}

/* ---- reads, ended batches, deletes, keys -------------------------------------------------- */

Test(store_sqlite, ended_batch_loads_without_items)
{
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 1);
    batch *b = sqt_make_batch(&t, 3, NULL);
    sqt_put_batch_durable(&t, b);
    for (uint32_t i = 0; i < 3; i++) {
        sqt_finish_item(b, i, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 10);
        store_put_result(t.st, b, i, NULL, NULL, NULL);
    }
    sqt_done d = {.t = &t};
    batch_end(b, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED, 0, NULL);
    store_put_summary(t.st, b, sqt_on_done, &d);
    cr_assert(sqt_run_until(&t, &d.calls, 1, 10));
    sqt_close(&t);

    sqt_open(&t, 1);
    sqt_loaded L;
    sqt_load_all(&t, &L);
    cr_assert_eq(L.n, 1);
    cr_assert_eq(L.v[0].ended, 1);
    cr_assert_eq(L.v[0].n_ops, 0);
    cr_assert_eq(L.v[0].n_results, 0);
    cr_assert_eq(L.v[0].snap->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    sqt_loaded_free(&L);
    /* Its results are still there for reads. */
    sqt_page p;
    sqt_read_page(&t, &p, b->id, 0, 0, 0, 100);
    cr_assert_eq(p.n, 3);
    sqt_page_free(&p);
    sqt_free(&t);
}

Test(store_sqlite, read_results_pages)
{
    enum { N = 20 };
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 0);
    batch *b = sqt_make_batch(&t, N, NULL);
    sqt_put_batch_durable(&t, b);
    /* End in reverse index order (seq s is item N - s); odd items fail. */
    for (int i = N - 1; i >= 0; i--) {
        int st = i % 2 ? BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED : BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED;
        sqt_finish_item(b, (uint32_t)i, st, 32);
        store_put_result(t.st, b, (uint32_t)i, NULL, NULL, NULL);
    }
    sqt_done d = {.t = &t};
    store_put_summary(t.st, b, sqt_on_done, &d); /* completes after every result */
    cr_assert(sqt_run_until(&t, &d.calls, 1, 10));

    sqt_page p;
    uint32_t next = 0, seen = 0;
    while (seen < N) { /* index order, pages of 7 */
        sqt_read_page(&t, &p, b->id, next, 0, 0, 7);
        cr_assert_gt(p.n, 0);
        cr_assert_leq(p.n, 7);
        for (size_t k = 0; k < p.n; k++) {
            cr_assert_eq(p.v[k].index, seen + k);
            cr_assert_eq(p.v[k].seq, N - (seen + k));
            cr_assert(sqt_blob_ok(p.v[k].result, p.v[k].index, 32));
        }
        seen += (uint32_t)p.n;
        next = p.v[p.n - 1].index + 1;
        sqt_page_free(&p);
    }
    sqt_read_page(&t, &p, b->id, next, 0, 0, 7);
    cr_assert_eq(p.n, 0, "past the end: an empty sqt_page");
    sqt_page_free(&p);

    sqt_read_page(&t, &p, b->id, 4, 0, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED, 3);
    cr_assert_eq(p.n, 3);
    for (size_t k = 0; k < 3; k++) {
        cr_assert_eq(p.v[k].index, 5 + 2 * k);
        cr_assert_eq(p.v[k].state, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED);
    }
    sqt_page_free(&p);

    sqt_read_page(&t, &p, b->id, 5, 1, 0, 4); /* by sequence, after 5 */
    cr_assert_eq(p.n, 4);
    for (size_t k = 0; k < 4; k++) {
        cr_assert_eq(p.v[k].seq, 6 + k);
        cr_assert_eq(p.v[k].index, N - (6 + k));
    }
    sqt_page_free(&p);

    sqt_read_page(&t, &p, "01NOSUCHBATCH0000000000000", 0, 0, 0, 10);
    cr_assert_eq(p.n, 0);
    sqt_page_free(&p);
    sqt_free(&t);
}

Test(store_sqlite, delete_batch_removes_everything)
{
    enum { N = 6000 };
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 0);
    batch *keep = sqt_make_batch(&t, 2, "keep"), *b = sqt_make_batch(&t, N, "gone");
    sqt_put_batch_durable(&t, keep);
    sqt_put_batch_durable(&t, b);
    for (uint32_t i = 0; i < N; i++) {
        sqt_finish_item(b, i, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 16);
        store_put_result(t.st, b, i, i < 3 ? "old-key" : NULL, NULL, NULL);
    }
    sqt_finish_item(keep, 0, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 16);
    store_put_result(t.st, keep, 0, NULL, NULL, NULL);
    sqt_done d = {.t = &t}, del = {.t = &t};
    store_put_summary(t.st, b, sqt_on_done, &d);
    cr_assert(sqt_run_until(&t, &d.calls, 1, 30));
    int64_t cutoff = pbtime_wall_ns() + 1;
    store_sqlite_stats_t before = sqt_stats(&t);
    store_delete_batch(t.st, b->id, cutoff, sqt_on_done, &del);
    cr_assert(sqt_run_until(&t, &del.calls, 1, 30));
    cr_assert_eq(del.err, STORE_OK);
    /* 6,000 ops + 6,000 results: at least three capped transactions. */
    cr_assert_geq(sqt_stats(&t).commits - before.commits, 3);
    sqt_page p;
    sqt_read_page(&t, &p, b->id, 0, 0, 0, 100);
    cr_assert_eq(p.n, 0);
    sqt_page_free(&p);
    sqt_close(&t);

    cr_assert_eq(sqt_raw_int(t.path, "SELECT count(*) FROM batches"), 1);
    cr_assert_eq(sqt_raw_int(t.path, "SELECT count(*) FROM ops"), 2, "only the kept batch's ops");
    cr_assert_eq(sqt_raw_int(t.path, "SELECT count(*) FROM results"), 1);
    cr_assert_eq(sqt_raw_int(t.path, "SELECT count(*) FROM keys"), 0);
    sqt_open(&t, 0);
    sqt_loaded L;
    sqt_load_all(&t, &L);
    cr_assert_eq(L.n, 1);
    cr_assert_str_eq(L.v[0].snap->id, keep->id);
    sqt_loaded_free(&L);
    sqt_free(&t);
}

typedef struct keys_seen {
    char names[8][32];
    char batch[8][32];
    uint32_t index[8];
    int n;
} keys_seen;

static int on_key(void *arg, const store_key *k)
{
    keys_seen *ks = arg;
    cr_assert_lt(ks->n, 8);
    snprintf(ks->names[ks->n], 32, "%s", k->key);
    snprintf(ks->batch[ks->n], 32, "%s", k->batch_id);
    ks->index[ks->n++] = k->index;
    return 0;
}

Test(store_sqlite, load_keys_filters_by_age)
{
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 0);
    batch *b = sqt_make_batch(&t, 3, NULL);
    sqt_put_batch_durable(&t, b);
    sqt_done d[3] = {{.t = &t}, {.t = &t}, {.t = &t}};
    sqt_finish_item(b, 0, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 8);
    store_put_result(t.st, b, 0, "old", sqt_on_done, &d[0]);
    cr_assert(sqt_run_until(&t, &d[0].calls, 1, 10));
    struct timespec pause = {0, 5 * 1000 * 1000};
    nanosleep(&pause, NULL);
    int64_t cutoff = pbtime_wall_ns();
    nanosleep(&pause, NULL);
    sqt_finish_item(b, 1, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 8);
    store_put_result(t.st, b, 1, "new", sqt_on_done, &d[1]);
    /* A failure is not remembered under its key. */
    sqt_finish_item(b, 2, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED, 8);
    store_put_result(t.st, b, 2, "failed", sqt_on_done, &d[2]);
    cr_assert(sqt_run_until(&t, &d[2].calls, 1, 10));

    char err[256];
    keys_seen ks = {0};
    cr_assert_eq(t.st->ops->load_keys(t.st, cutoff, on_key, &ks, err, sizeof err), STORE_OK);
    cr_assert_eq(ks.n, 1);
    cr_assert_str_eq(ks.names[0], "new");
    cr_assert_str_eq(ks.batch[0], b->id);
    cr_assert_eq(ks.index[0], 1);
    memset(&ks, 0, sizeof ks);
    cr_assert_eq(t.st->ops->load_keys(t.st, 0, on_key, &ks, err, sizeof err), STORE_OK);
    cr_assert_eq(ks.n, 2);
    cr_assert_str_eq(ks.names[0], "old");
    cr_assert_str_eq(ks.names[1], "new");
    sqt_free(&t);
}

/* close() finishes what is queued: every callback runs before it returns. */
Test(store_sqlite, close_finishes_queued_writes)
{
    enum { N = 300 };
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 1);
    batch *b = sqt_make_batch(&t, N, NULL);
    sqt_done pb = {.t = &t}, *d = calloc(N, sizeof *d);
    store_put_batch(t.st, b, sqt_on_done, &pb);
    for (uint32_t i = 0; i < N; i++) {
        d[i] = (sqt_done){.t = &t};
        sqt_finish_item(b, i, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 256);
        store_put_result(t.st, b, i, NULL, sqt_on_done, &d[i]);
    }
    sqt_close(&t); /* without running the loop */
    cr_assert_eq(t.n_done, N + 1);
    cr_assert_eq(pb.err, STORE_OK);
    for (uint32_t i = 0; i < N; i++)
        cr_assert_eq(d[i].err, STORE_OK);
    sqt_open(&t, 1);
    sqt_loaded L;
    sqt_load_all(&t, &L);
    cr_assert_eq(L.n, 1);
    cr_assert_eq(L.v[0].n_results, N);
    sqt_loaded_free(&L);
    free(d);
    sqt_free(&t);
}

/* A batch deleted over several transactions frees its request_id for a batch submitted
 * right after the delete (the unique index must not refuse it). */
Test(store_sqlite, request_id_reusable_after_delete)
{
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 0);
    batch *a = sqt_make_batch(&t, 12000, "again"), *b = sqt_make_batch(&t, 1, "again");
    sqt_put_batch_durable(&t, a);
    sqt_done del = {.t = &t}, pb = {.t = &t};
    store_delete_batch(t.st, a->id, 0, sqt_on_done, &del);
    store_put_batch(t.st, b, sqt_on_done, &pb);
    cr_assert(sqt_run_until(&t, &t.n_done, 3, 30));
    cr_assert_eq(del.err, STORE_OK);
    cr_assert_eq(pb.err, STORE_OK);
    sqt_close(&t);
    sqt_open(&t, 0);
    sqt_loaded L;
    sqt_load_all(&t, &L);
    cr_assert_eq(L.n, 1);
    cr_assert_str_eq(L.v[0].snap->id, b->id);
    cr_assert_str_eq(L.v[0].request_id, "again");
    sqt_loaded_free(&L);
    sqt_free(&t);
}
