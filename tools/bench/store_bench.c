/* store_bench: the SQLite store measured through its interface, as the executor uses it.
 *   1. results: put_result with B-byte results (default 1 KB) for S seconds, either offered
 *      as fast as the store takes them (a window of W writes in flight, topped up from
 *      each callback), or at a steady R results/s (--rate: the executor's case, where
 *      items finish at the upstream's pace whatever the store does), a few per loop turn;
 *      reported: results/s, submit-to-callback latency p50/p99/max, commits, rows/commit,
 *      bytes per result appended to the WAL and written by the process (WAL and
 *      checkpoints, /proc/self/io), and CPU time per result of the store's threads
 *      (process minus the loop thread: what a loop sharing its core with them loses) and
 *      of the loop thread (the store's loop side plus this benchmark's own work).
 *   2. put_batch of P-op batches (default 1,000 ops of 300 bytes; --put-ops, --op-bytes),
 *      one after another: latency p50/p99 (a SubmitBatch is answered only after it).
 * Under synchronous=FULL and NORMAL (--sync), each in a fresh database.
 *
 * --linger MS sets the group-commit wait (store_sqlite_set_linger; default 2 ms, 0: none).
 *
 * usage: store_bench [--dir PARENT] [--seconds S] [--window W] [--rate R] [--bytes B]
 *                    [--batches N] [--put-ops P] [--op-bytes B] [--sync full|normal|both]
 *                    [--linger MS] */
#include <ev.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    uint64_t window;            /* results kept in flight (rate 0) */
    double rate;                /* results offered per second (0: window) */
    int64_t t0;
    ev_timer tick;
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
    if (b->rate == 0)
        offer(b);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents) { offer(w->data); }

static double cpu_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Bytes this process caused to be written to storage so far. */
static uint64_t io_written(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    unsigned long long v = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "write_bytes: %llu", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

/* Keeps `window` results in flight until the time is up or the items run out; at a
 * fixed rate, offers what is due by now instead. */
static void offer(bench *b)
{
    uint64_t due = UINT64_MAX;
    if (b->rate > 0)
        due = (uint64_t)(b->rate * (double)(pbtime_mono_ns() - b->t0) / 1e9);
    while (b->offering && (b->rate > 0 ? b->next < due : b->in_flight < b->window) && b->next < b->capacity) {
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
    double results_per_s, r_p50, r_p99, r_max, rows_per_commit, bytes_per_result, cpu_us_per_result;
    double loop_us_per_result, wal_bytes_per_result;
    uint64_t commits, results;
    double pb_p50, pb_p99, pb_max;
    uint64_t wal_max;
} row;

typedef struct cfg {
    const char *parent;
    double seconds, rate, linger_ms;
    uint64_t window;
    size_t bytes;
    int n_put;
    uint32_t put_ops;
    size_t op_pad;
} cfg;

static int run_mode(const cfg *c, int full, row *out)
{
    const char *parent = c->parent;
    double seconds = c->seconds;
    uint64_t window = c->window;
    int n_put = c->n_put;
    bench b = {0};
    char dir[512], err[512];
    snprintf(dir, sizeof dir, "%s/store-bench-XXXXXX", parent);
    if (mkdtemp(dir) == NULL) {
        perror(dir);
        return -1;
    }
    b.loop = ev_loop_new(EVFLAG_AUTO);
    b.window = window;
    b.rate = c->rate;
    batch_registry_init(&b.reg);
    store_sqlite_opts o = {.dir = dir, .sync_full = full};
    if ((b.st = store_sqlite_open(b.loop, &o, err, sizeof err)) == NULL) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (c->linger_ms >= 0)
        store_sqlite_set_linger(b.st, (int64_t)(c->linger_ms * 1e6), 512);
    b.body = grpc_slice_malloc(c->bytes);
    memset(GRPC_SLICE_START_PTR(b.body), 'x', c->bytes);

    /* Results: enough pre-stored items for a generous 120k results/s (small ops: the
     * op size does not matter here and the setup stays short). */
    b.per_batch = 50000;
    b.capacity = (uint64_t)((b.rate > 0 ? b.rate * 1.05 : 120000) * seconds) + window;
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
    if (b.rate > 0) {
        ev_timer_init(&b.tick, on_tick, 0.001, 0.001);
        b.tick.data = &b;
        ev_timer_start(b.loop, &b.tick);
    }
    b.offering = 1;
    uint64_t wal_max = 0, io0 = io_written();
    double loop0 = cpu_s(CLOCK_THREAD_CPUTIME_ID), cpu0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID) - loop0;
    int64_t t0 = b.t0 = pbtime_mono_ns();
    offer(&b);
    while (b.offering || b.in_flight) {
        ev_run(b.loop, EVRUN_ONCE);
        store_sqlite_stats(b.st, &s1);
        if (s1.wal_bytes > wal_max)
            wal_max = s1.wal_bytes;
    }
    double elapsed = (double)(pbtime_mono_ns() - t0) / 1e9;
    double loop = cpu_s(CLOCK_THREAD_CPUTIME_ID) - loop0;
    double cpu = cpu_s(CLOCK_PROCESS_CPUTIME_ID) - loop - loop0 - cpu0;
    uint64_t io = io_written() - io0;
    if (b.rate > 0)
        ev_timer_stop(b.loop, &b.tick);
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
    out->bytes_per_result = b.n_lat ? (double)io / (double)b.n_lat : 0;
    out->cpu_us_per_result = b.n_lat ? cpu * 1e6 / (double)b.n_lat : 0;
    out->loop_us_per_result = b.n_lat ? loop * 1e6 / (double)b.n_lat : 0;
    out->wal_bytes_per_result =
        b.n_lat ? (double)(s1.wal_frames - s0.wal_frames) * (s1.page_size + 24) / (double)b.n_lat : 0;

    /* put_batch of put_ops ops, one at a time. */
    double *pb = calloc((size_t)n_put, sizeof *pb);
    for (int i = 0; i < n_put; i++) {
        batch *x = make_batch(&b, c->put_ops, c->op_pad);
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
    cfg c = {.parent = "/tmp", .seconds = 5, .window = 20000, .bytes = 1024, .n_put = 200, .linger_ms = -1,
             .put_ops = 1000, .op_pad = 250};
    size_t op_bytes = 300;
    const char *sync = "both";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0)
            c.parent = argv[i + 1];
        else if (strcmp(argv[i], "--seconds") == 0)
            c.seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--window") == 0)
            c.window = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--rate") == 0)
            c.rate = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--bytes") == 0)
            c.bytes = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--batches") == 0)
            c.n_put = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--put-ops") == 0)
            c.put_ops = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--op-bytes") == 0)
            op_bytes = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--linger") == 0)
            c.linger_ms = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--sync") == 0)
            sync = argv[i + 1];
        else {
            fprintf(stderr,
                    "usage: %s [--dir PARENT] [--seconds S] [--window W] [--rate R] [--bytes B] [--batches N]"
                    " [--put-ops P] [--op-bytes B] [--sync full|normal|both] [--linger MS]\n",
                    argv[0]);
            return 2;
        }
    }
    int want_full = strcmp(sync, "normal") != 0, want_normal = strcmp(sync, "full") != 0;
    /* An op is ~50 bytes around its padded path (see pack_op). */
    c.op_pad = op_bytes > 50 ? op_bytes - 50 : 0;
    if (c.op_pad > 400) /* pack_op's path buffer */
        c.op_pad = 400;
    if (c.seconds <= 0 || c.window == 0 || c.n_put <= 0 || c.bytes == 0 || c.rate < 0 || c.put_ops == 0 ||
        (!want_full && !want_normal) || (strcmp(sync, "both") && strcmp(sync, "full") && strcmp(sync, "normal"))) {
        fprintf(stderr, "--seconds, --window, --bytes and --batches must be positive, --rate not negative,"
                        " --sync full, normal or both\n");
        return 2;
    }
    row rows[2];
    int n = 0;
    for (int full = 1; full >= 0; full--)
        if ((full ? want_full : want_normal) && run_mode(&c, full, &rows[n++]) != 0)
            return 1;
    char offered[64];
    if (c.rate > 0)
        snprintf(offered, sizeof offered, "%.0f/s", c.rate);
    else
        snprintf(offered, sizeof offered, "window %llu", (unsigned long long)c.window);
    char linger[32] = "default linger";
    if (c.linger_ms >= 0)
        snprintf(linger, sizeof linger, "linger %.2f ms", c.linger_ms);
    printf("store_bench: %s, %.0f s of results (%zu B, %s, %s), %d put_batch of %u x %zu B ops\n\n", c.parent,
           c.seconds, c.bytes, offered, linger, c.n_put, c.put_ops, op_bytes);
    printf("%-7s %9s %7s %7s %7s %7s %7s %8s %8s %8s %8s %7s | %13s %7s %7s\n", "sync", "results/s", "p50 ms",
           "p99 ms", "max ms", "commits", "rows/tx", "WAL B/r", "wr B/r", "store us", "loop us", "WAL MB",
           "put_batch p50", "p99 ms", "max ms");
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        printf("%-7s %9.0f %7.2f %7.2f %7.2f %7llu %7.1f %8.0f %8.0f %8.2f %8.2f %7.1f | %13.2f %7.2f %7.2f\n",
               r->mode, r->results_per_s, r->r_p50, r->r_p99, r->r_max, (unsigned long long)r->commits,
               r->rows_per_commit, r->wal_bytes_per_result, r->bytes_per_result, r->cpu_us_per_result,
               r->loop_us_per_result, (double)r->wal_max / 1e6, r->pb_p50, r->pb_p99, r->pb_max);
    }
    return 0;
}
