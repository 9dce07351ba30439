/* Benchmark client for batchd: submits batches of GET operations and measures how fast
 * they run (items per second, from SubmitBatch until the batch ended) or how long
 * SubmitBatch takes to be acknowledged (latency percentiles).
 *
 *   bench_client throughput SERVER ITEMS CONCURRENCY PATH
 *   bench_client latency SERVER ITEMS SUBMITS
 *
 * Prints one line of key=value figures for tools/bench/run to collect. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch/v1/batch.pb-c.h"
#include "pbtime.h"
#include "rpcclient.h"

#define M_SUBMIT "/batch.v1.BatchService/SubmitBatch"
#define M_WATCH "/batch.v1.BatchService/WatchBatch"

/* A request of n GETs to path, async, at the given concurrency. Storage is static per
 * process: the bench builds one request shape and reuses it. */
typedef struct request {
    Batch__V1__SubmitBatchRequest req;
    Batch__V1__BatchOptions options;
    Batch__V1__Operation *ops;
    Batch__V1__Operation **op_ptrs;
    char *ids;
} request;

static void request_build(request *r, unsigned n, unsigned concurrency, const char *path)
{
    batch__v1__submit_batch_request__init(&r->req);
    batch__v1__batch_options__init(&r->options);
    r->options.mode = BATCH__V1__MODE__MODE_ASYNC;
    r->options.max_concurrency = concurrency;
    r->ops = calloc(n, sizeof *r->ops);
    r->op_ptrs = calloc(n, sizeof *r->op_ptrs);
    r->ids = calloc(n, 16);
    if (!r->ops || !r->op_ptrs || !r->ids) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (unsigned i = 0; i < n; i++) {
        batch__v1__operation__init(&r->ops[i]);
        snprintf(r->ids + 16 * i, 16, "i%u", i);
        r->ops[i].id = r->ids + 16 * i;
        r->ops[i].method = "GET";
        r->ops[i].path = (char *)path;
        r->op_ptrs[i] = &r->ops[i];
    }
    r->req.n_operations = n;
    r->req.operations = r->op_ptrs;
    r->req.options = &r->options;
}

static Batch__V1__SubmitBatchResponse *submit(rpcclient *c, request *r)
{
    ProtobufCMessage *m = NULL;
    rpcclient_status st = {0};
    if (rpcclient_unary(c, M_SUBMIT, &r->req.base, &batch__v1__submit_batch_response__descriptor, &m, 120, &st) !=
        GRPC_STATUS_OK) {
        fprintf(stderr, "SubmitBatch: %s\n", st.message);
        exit(1);
    }
    rpcclient_status_clear(&st);
    return (Batch__V1__SubmitBatchResponse *)m;
}

/* Follows the batch to its end (progress only); returns its final counts' succeeded. */
static uint32_t wait_end(rpcclient *c, const char *id)
{
    Batch__V1__WatchBatchRequest req = BATCH__V1__WATCH_BATCH_REQUEST__INIT;
    req.batch_id = (char *)id;
    rpcclient_stream *s = rpcclient_stream_open(c, M_WATCH, &req.base, 600);
    ProtobufCMessage *m;
    uint32_t ok = 0;
    while (rpcclient_stream_next(s, &batch__v1__batch_event__descriptor, &m, 0) == 1) {
        Batch__V1__BatchEvent *ev = (Batch__V1__BatchEvent *)m;
        if (ev->batch)
            ok = ev->batch->counts->succeeded;
        batch__v1__batch_event__free_unpacked(ev, NULL);
    }
    rpcclient_stream_finish(s, NULL);
    return ok;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "throughput") == 0) {
        unsigned n = (unsigned)atoi(argv[3]), conc = (unsigned)atoi(argv[4]);
        rpcclient *c = rpcclient_new(argv[2]);
        request r;
        request_build(&r, n, conc, argv[5]);
        int64_t t0 = pbtime_mono_ns();
        Batch__V1__SubmitBatchResponse *resp = submit(c, &r);
        int64_t t1 = pbtime_mono_ns();
        uint32_t ok = wait_end(c, resp->batch->id);
        int64_t t2 = pbtime_mono_ns();
        printf("items=%u succeeded=%u submit_ms=%.1f total_s=%.3f items_per_s=%.0f\n", n, ok, (t1 - t0) / 1e6,
               (t2 - t0) / 1e9, n / ((t2 - t0) / 1e9));
        batch__v1__submit_batch_response__free_unpacked(resp, NULL);
        rpcclient_free(c);
        return ok == n ? 0 : 1;
    }
    if (argc == 5 && strcmp(argv[1], "latency") == 0) {
        unsigned n = (unsigned)atoi(argv[3]), submits = (unsigned)atoi(argv[4]);
        rpcclient *c = rpcclient_new(argv[2]);
        request r;
        /* max_concurrency 1 and a path that fails fast keep the batches out of the way of
         * the submissions being timed. */
        request_build(&r, n, 1, "/bench-latency");
        int64_t *lat = calloc(submits, sizeof *lat);
        for (unsigned i = 0; i < submits; i++) {
            int64_t t0 = pbtime_mono_ns();
            Batch__V1__SubmitBatchResponse *resp = submit(c, &r);
            lat[i] = pbtime_mono_ns() - t0;
            batch__v1__submit_batch_response__free_unpacked(resp, NULL);
        }
        qsort(lat, submits, sizeof *lat, cmp_i64);
        printf("items=%u submits=%u p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n", n, submits,
               lat[submits / 2] / 1e6, lat[(size_t)floor(submits * 0.99)] / 1e6, lat[submits - 1] / 1e6);
        free(lat);
        rpcclient_free(c);
        return 0;
    }
    fprintf(stderr, "usage: bench_client throughput SERVER ITEMS CONCURRENCY PATH\n"
                    "       bench_client latency SERVER ITEMS SUBMITS\n");
    return 2;
}
