/* End-to-end test harness: a real loopback upstream, a real batchd (in this process, on
 * its own loop thread, bound to an ephemeral port) and a real gRPC client. */
#ifndef BATCHD_HARNESS_H
#define BATCHD_HARNESS_H

#include <ev.h>
#include <pthread.h>

#include "app.h"
#include "batch/v1/batch.pb-c.h"
#include "config.h"
#include "google/rpc/error_details.pb-c.h"
#include "rpcclient.h"
#include "upstream.h"

#define M_SUBMIT "/batch.v1.BatchService/SubmitBatch"
#define M_WATCH "/batch.v1.BatchService/WatchBatch"
#define M_GET "/batch.v1.BatchService/GetBatch"
#define M_LIST "/batch.v1.BatchService/ListBatches"
#define M_CANCEL "/batch.v1.BatchService/CancelBatch"
#define M_RESULTS "/batch.v1.BatchService/ListResults"

typedef struct harness {
    upstream *up;
    char upstream_url[64];
    config cfg;
    struct ev_loop *loop;
    app *app;
    pthread_t thread;
    int running;
    char addr[64];
    rpcclient *client;
} harness;

/* Starts an upstream and a batchd with "--target api=<upstream>" and the extra flags in
 * args (NULL-terminated, may be NULL). Fails the test on error. */
harness *h_start(const char *const *args);
/* Starts only batchd, with exactly args after the program name (for config tests). */
harness *h_start_server(const char *const *args);
/* Graceful stop (as SIGTERM), join, free everything. */
void h_stop(harness *h);
/* Stops batchd gracefully and starts it again with the same flags (same --data-dir), on a
 * new port; the upstream stays. h->client is replaced. */
void h_restart(harness *h);
/* A fresh temporary directory (removed by h_rmdir). */
char *h_tempdir(void);
void h_rmdir(char *dir);
/* Asks for a graceful stop and returns at once; h_stop completes it. */
void h_request_stop(harness *h);

/* A SubmitBatchRequest from its JSON mapping; "$U" in json is replaced by nothing (paths are
 * relative to the target). Fails the test if it does not parse. */
Batch__V1__SubmitBatchRequest *h_request(const char *json);
/* Builds a request of n GET operations to path (printf-style, %u gets the index). */
Batch__V1__SubmitBatchRequest *h_request_n(unsigned n, const char *path_fmt, const char *options_json);

/* SubmitBatch; returns the answer, or NULL with st filled (st may be NULL then nothing). */
Batch__V1__SubmitBatchResponse *h_submit(harness *h, const Batch__V1__SubmitBatchRequest *req,
                                         rpcclient_status *st);
/* SubmitBatch, MODE_ASYNC, of n GET operations to path_fmt (as h_request_n) with extra
 * option members in opts (e.g. "\"maxConcurrency\":4", may be NULL). Must succeed. */
Batch__V1__SubmitBatchResponse *h_submit_async(harness *h, unsigned n, const char *path_fmt, const char *opts);
/* SubmitBatch of a JSON request that must succeed. */
Batch__V1__SubmitBatchResponse *h_submit_json(harness *h, const char *json);
Batch__V1__Batch *h_get(harness *h, const char *id, rpcclient_status *st);
/* Polls GetBatch until the batch is in a terminal state (fails the test after timeout_s). */
Batch__V1__Batch *h_wait_end(harness *h, const char *id, double timeout_s);
/* Polls until pred holds on GetBatch's answer. */
Batch__V1__Batch *h_wait_until(harness *h, const char *id, double timeout_s,
                               int (*pred)(const Batch__V1__Batch *b, void *arg), void *arg);
/* Every result of a batch via ListResults (state 0: all). *n receives the count. */
Batch__V1__ItemResult **h_results(harness *h, const char *id, int state, size_t *n);
void h_free_results(Batch__V1__ItemResult **r, size_t n);

/* The detail of type desc in a failed call's status, or NULL. Free with free_unpacked. */
void *h_detail(const rpcclient_status *st, const ProtobufCMessageDescriptor *desc);
/* ErrorInfo.reason of a failed call, copied into buf ("" if none). Checks its domain. */
const char *h_reason(const rpcclient_status *st, char *buf, size_t len);

/* Sleeps for ms milliseconds. */
void h_sleep_ms(int ms);

#endif
