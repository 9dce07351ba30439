/* store_bench: the SQLite store measured through its interface, as the executor uses it.
 *   1. results: put_result with 1 KB results offered as fast as the store takes them (a
 *      window of W writes in flight, topped up from each callback) for S seconds;
 *      reported: results/s, submit-to-callback latency p50/p99/max, commits, rows/commit.
 *   2. put_batch of 1,000-op batches (300-byte ops), one after another: latency p50/p99.
 * Both under synchronous=FULL and NORMAL, each in a fresh database.
 *
 * usage: store_bench [--dir PARENT] [--seconds S] [--window W] [--batches N] */
#include <ev.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "pbtime.h"
#include "store.h"
#include "store_sqlite.h"

typedef struct bench {
    struct ev_loop *loop;
    batch_registry reg;
    store *st;
    grpc_slice body;            /* the 1 KB result every item shares */

    /* results phase */
    batch **batches;            /* pre-stored batches whose items get results */
    size_t n_batches;
    uint32_t per_batch;
    uint64_t next;              /* next item to finish, across batches */
    uint64_t capacity;
    int64_t *submit_ns;         /* per result */
    double *lat_ms;
    uint64_t n_lat;
    int offering;               /* 0 once the time is up */
    uint64_t window;            /* results kept in flight */
    uint64_t in_flight;
    int failed;

    /* put_batch phase */
    int waiting;
} bench;

typedef struct result_tag {
    bench *b;
    uint64_t k;
} result_tag;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static void pack_op(uint32_t i, size_t pad, uint8_t **out, uint32_t *len)
{
    char id[32], path[512];
    Batch__V1__Operation op = BATCH__V1__OPERATION__INIT;
    snprintf(id, sizeof id, "item-%u", i);
    snprintf(path, sizeof path, "/things/%u?pad=%0*u", i, (int)pad, i);
    op.id = id;
    op.method = "POST";
    op.path = path;
    *out = malloc(batch__v1__operation__get_packed_size(&op));
    *len = (uint32_t)batch__v1__operation__pack(&op, *out);
}

static batch *make_batch(bench *b, uint32_t n, size_t pad)
{
    batch *x = batch_new(&b->reg, n);
    if (x == NULL)
        return NULL;
    x->options = batch__v1__batch_options__unpack(NULL, 0, (const uint8_t *)"");
    for (uint32_t i = 0; i < n; i++)
        pack_op(i, pad, &x->items[i].op, &x->items[i].op_len);
    batch_register(&b->reg, x);
    return x;
}

static void on_batch_done(void *arg, store_err err)
{
    bench *b = arg;
    if (err)
        b->failed = 1;
    b->waiting = 0;
}

static int put_batch_wait(bench *b, batch *x)
{
    b->waiting = 1;
    store_put_batch(b->st, x, on_batch_done, b);
    while (b->waiting)
        ev_run(b->loop, EVRUN_ONCE);
    return b->failed ? -1 : 0;
}

static void offer(bench *b);

static void on_result_done(void *arg, store_err err)
{
    result_tag *t = arg;
    bench *b = t->b;
    if (err)
        b->failed = 1;
    b->lat_ms[b->n_lat++] = (double)(pbtime_mono_ns() - b->submit_ns[t->k]) / 1e6;
    b->in_flight--;
    free(t);
    offer(b);
}

/* Keeps `window` results in flight until the time is up or the items run out. */
static void offer(bench *b)
{
    while (b->offering && b->in_flight < b->window && b->next < b->capacity) {
        uint64_t k = b->next++;
        batch *x = b->batches[k / b->per_batch];
        uint32_t idx = (uint32_t)(k % b->per_batch);
        result_tag *t = malloc(sizeof *t);
        t->b = b;
        t->k = k;
        batch_item_finish(x, idx, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, grpc_slice_ref(b->body));
        b->submit_ns[k] = pbtime_mono_ns();
        b->in_flight++;
        store_put_result(b->st, x, idx, NULL, on_result_done, t);
    }
}

static void on_time_up(struct ev_loop *loop, ev_timer *w, int revents)
{
    ((bench *)w->data)->offering = 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) { return remove(p); }

typedef struct row {
    const char *mode;
    double results_per_s, r_p50, r_p99, r_max, rows_per_commit;
    uint64_t commits, results;
    double pb_p50, pb_p99, pb_max;
    uint64_t wal_max;
} row;

static int run_mode(const char *parent, int full, double seconds, uint64_t window, int n_put, row *out)
{
    bench b = {0};
    char dir[512], err[512];
    snprintf(dir, sizeof dir, "%s/store-bench-XXXXXX", parent);
    if (mkdtemp(dir) == NULL) {
        perror(dir);
        return -1;
    }
    b.loop = ev_loop_new(EVFLAG_AUTO);
    b.window = window;
    batch_registry_init(&b.reg);
    store_sqlite_opts o = {.dir = dir, .sync_full = full};
    if ((b.st = store_sqlite_open(b.loop, &o, err, sizeof err)) == NULL) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    b.body = grpc_slice_malloc(1024);
    memset(GRPC_SLICE_START_PTR(b.body), 'x', 1024);

    /* Results: enough pre-stored items for a generous 120k results/s (small ops: the
     * op size does not matter here and the setup stays short). */
    b.per_batch = 50000;
    b.capacity = (uint64_t)(120000 * seconds) + window;
    b.n_batches = (size_t)((b.capacity + b.per_batch - 1) / b.per_batch);
    b.capacity = b.n_batches * b.per_batch;
    b.batches = calloc(b.n_batches, sizeof *b.batches);
    b.submit_ns = calloc(b.capacity, sizeof *b.submit_ns);
    b.lat_ms = calloc(b.capacity, sizeof *b.lat_ms);
    for (size_t i = 0; i < b.n_batches; i++) {
        if ((b.batches[i] = make_batch(&b, b.per_batch, 8)) == NULL || put_batch_wait(&b, b.batches[i]) != 0) {
            fprintf(stderr, "setup failed\n");
            return -1;
        }
    }
    store_sqlite_stats_t s0, s1;
    store_sqlite_stats(b.st, &s0);
    ev_timer up;
    ev_timer_init(&up, on_time_up, seconds, 0.);
    up.data = &b;
    ev_timer_start(b.loop, &up);
    b.offering = 1;
    uint64_t wal_max = 0;
    int64_t t0 = pbtime_mono_ns();
    offer(&b);
    while (b.offering || b.in_flight) {
        ev_run(b.loop, EVRUN_ONCE);
        store_sqlite_stats(b.st, &s1);
        if (s1.wal_bytes > wal_max)
            wal_max = s1.wal_bytes;
    }
    double elapsed = (double)(pbtime_mono_ns() - t0) / 1e9;
    store_sqlite_stats(b.st, &s1);
    qsort(b.lat_ms, b.n_lat, sizeof *b.lat_ms, cmp_double);
    out->mode = full ? "FULL" : "NORMAL";
    out->results = b.n_lat;
    out->results_per_s = (double)b.n_lat / elapsed;
    out->r_p50 = pct(b.lat_ms, b.n_lat, 0.50);
    out->r_p99 = pct(b.lat_ms, b.n_lat, 0.99);
    out->r_max = b.n_lat ? b.lat_ms[b.n_lat - 1] : 0;
    out->commits = s1.commits - s0.commits;
    out->rows_per_commit = out->commits ? (double)(s1.rows - s0.rows) / (double)out->commits : 0;
    out->wal_max = wal_max;

    /* put_batch of 1,000 x 300-byte ops, one at a time. */
    double *pb = calloc((size_t)n_put, sizeof *pb);
    for (int i = 0; i < n_put; i++) {
        batch *x = make_batch(&b, 1000, 250);
        int64_t p0 = pbtime_mono_ns();
        if (x == NULL || put_batch_wait(&b, x) != 0) {
            fprintf(stderr, "put_batch failed\n");
            return -1;
        }
        pb[i] = (double)(pbtime_mono_ns() - p0) / 1e6;
    }
    qsort(pb, (size_t)n_put, sizeof *pb, cmp_double);
    out->pb_p50 = pct(pb, (size_t)n_put, 0.50);
    out->pb_p99 = pct(pb, (size_t)n_put, 0.99);
    out->pb_max = pb[n_put - 1];
    int failed = b.failed;

    store_close(b.st);
    grpc_slice_unref(b.body);
    batch_registry_free(&b.reg);
    ev_loop_destroy(b.loop);
    free(pb);
    free(b.batches);
    free(b.submit_ns);
    free(b.lat_ms);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failed ? -1 : 0;
}

int main(int argc, char **argv)
{
    const char *parent = "/tmp";
    double seconds = 5;
    int n_put = 200;
    uint64_t window = 20000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0)
            parent = argv[i + 1];
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--window") == 0)
            window = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--batches") == 0)
            n_put = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s [--dir PARENT] [--seconds S] [--window W] [--batches N]\n", argv[0]);
            return 2;
        }
    }
    if (seconds <= 0 || window == 0 || n_put <= 0) {
        fprintf(stderr, "--seconds, --window and --batches must be positive\n");
        return 2;
    }
    row rows[2];
    for (int full = 1; full >= 0; full--)
        if (run_mode(parent, full, seconds, window, n_put, &rows[1 - full]) != 0)
            return 1;
    printf("store_bench: %s, %.0f s of results (1 KB, window %llu), %d put_batch of 1,000 x 300 B ops\n\n", parent,
           seconds, (unsigned long long)window, n_put);
    printf("%-7s %11s %9s %9s %9s %8s %10s %8s | %14s %14s %14s\n", "sync", "results/s", "p50 ms", "p99 ms",
           "max ms", "commits", "rows/tx", "WAL MB", "put_batch p50", "p99 ms", "max ms");
    for (int i = 0; i < 2; i++) {
        const row *r = &rows[i];
        printf("%-7s %11.0f %9.2f %9.2f %9.2f %8llu %10.0f %8.1f | %14.2f %14.2f %14.2f\n", r->mode,
               r->results_per_s, r->r_p50, r->r_p99, r->r_max, (unsigned long long)r->commits, r->rows_per_commit,
               (double)r->wal_max / 1e6, r->pb_p50, r->pb_p99, r->pb_max);
    }
    return 0;
}
