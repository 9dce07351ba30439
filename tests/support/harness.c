/* The end-to-end harness (see harness.h). */
#include "harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pbjson.h"

void h_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *loop_main(void *arg)
{
    harness *h = arg;
    ev_run(h->loop, 0);
    return NULL;
}

static void start_app(harness *h)
{
    char err[256];
    h->loop = ev_loop_new(EVFLAG_AUTO);
    h->app = app_new(h->loop, &h->cfg, err, sizeof err);
    cr_assert_not_null(h->app, "batchd did not start: %s", err);
    snprintf(h->addr, sizeof h->addr, "127.0.0.1:%d", app_port(h->app));
    cr_assert_eq(pthread_create(&h->thread, NULL, loop_main, h), 0);
    h->running = 1;
    h->client = rpcclient_new(h->addr);
}

static void stop_app(harness *h)
{
    rpcclient_free(h->client);
    h->client = NULL;
    if (h->running) {
        app_request_stop(h->app);
        pthread_join(h->thread, NULL);
        h->running = 0;
    }
    app_free(h->app);
    h->app = NULL;
    ev_loop_destroy(h->loop);
    h->loop = NULL;
}

void h_restart(harness *h)
{
    stop_app(h);
    start_app(h);
}

char *h_tempdir(void)
{
    char *d = strdup("/tmp/batchd-test-XXXXXX");
    cr_assert_not_null(mkdtemp(d));
    return d;
}

void h_rmdir(char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", dir);
    free(dir);
}

static harness *start(const char *const *args, int with_upstream)
{
    harness *h = calloc(1, sizeof *h);
    cr_assert_not_null(h);
    const char *argv[64];
    int argc = 0;
    argv[argc++] = "batchd";
    argv[argc++] = "--listen";
    argv[argc++] = "127.0.0.1:0";
    argv[argc++] = "--log-level";
    argv[argc++] = "warn";
    char target_flag[96];
    if (with_upstream) {
        h->up = upstream_start(NULL);
        cr_assert_not_null(h->up, "upstream did not start");
        snprintf(h->upstream_url, sizeof h->upstream_url, "http://127.0.0.1:%d", upstream_port(h->up));
        snprintf(target_flag, sizeof target_flag, "api=%s", h->upstream_url);
        argv[argc++] = "--target";
        argv[argc++] = target_flag;
    }
    for (int i = 0; args && args[i]; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;

    config_defaults(&h->cfg);
    cr_assert_eq(config_parse(&h->cfg, argc, (char **)argv), 0, "flags rejected");
    char err[256];
    cr_assert_eq(config_finish(&h->cfg, err, sizeof err), 0, "config: %s", err);
    log_set_level(h->cfg.log_level);
    start_app(h);
    return h;
}

harness *h_start(const char *const *args) { return start(args, 1); }
harness *h_start_server(const char *const *args) { return start(args, 0); }

void h_request_stop(harness *h) { app_request_stop(h->app); }

void h_stop(harness *h)
{
    stop_app(h);
    config_free(&h->cfg);
    if (h->up)
        upstream_stop(h->up);
    free(h);
}

Batch__V1__SubmitBatchRequest *h_request(const char *json)
{
    char *err = NULL;
    ProtobufCMessage *m = pbjson_parse_text(&batch__v1__submit_batch_request__descriptor, json, strlen(json),
                                            NULL, &err, NULL);
    cr_assert_not_null(m, "bad test request %s: %s", json, err ? err : "?");
    return (Batch__V1__SubmitBatchRequest *)m;
}

Batch__V1__SubmitBatchRequest *h_request_n(unsigned n, const char *path_fmt, const char *options_json)
{
    size_t cap = 64 + (size_t)n * (strlen(path_fmt) + 64) + (options_json ? strlen(options_json) : 0);
    char *json = malloc(cap);
    cr_assert_not_null(json);
    size_t len = (size_t)snprintf(json, cap, "{\"operations\":[");
    for (unsigned i = 0; i < n; i++) {
        len += (size_t)snprintf(json + len, cap - len, "%s{\"id\":\"i%u\",\"method\":\"GET\",\"path\":\"",
                                i ? "," : "", i);
        len += (size_t)snprintf(json + len, cap - len, path_fmt, i);
        len += (size_t)snprintf(json + len, cap - len, "\"}");
    }
    snprintf(json + len, cap - len, "]%s%s}", options_json ? ",\"options\":" : "", options_json ? options_json : "");
    Batch__V1__SubmitBatchRequest *r = h_request(json);
    free(json);
    return r;
}

Batch__V1__SubmitBatchResponse *h_submit(harness *h, const Batch__V1__SubmitBatchRequest *req,
                                         rpcclient_status *st)
{
    ProtobufCMessage *resp = NULL;
    rpcclient_unary(h->client, M_SUBMIT, &req->base, &batch__v1__submit_batch_response__descriptor, &resp, 60,
                    st);
    return (Batch__V1__SubmitBatchResponse *)resp;
}

Batch__V1__SubmitBatchResponse *h_submit_async(harness *h, unsigned n, const char *path_fmt, const char *opts)
{
    char options[512];
    snprintf(options, sizeof options, "{\"mode\":\"MODE_ASYNC\"%s%s}", opts ? "," : "", opts ? opts : "");
    Batch__V1__SubmitBatchRequest *req = h_request_n(n, path_fmt, options);
    rpcclient_status st = {0};
    Batch__V1__SubmitBatchResponse *r = h_submit(h, req, &st);
    cr_assert_not_null(r, "submit: %s", st.message);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    return r;
}

Batch__V1__SubmitBatchResponse *h_submit_json(harness *h, const char *json)
{
    Batch__V1__SubmitBatchRequest *req = h_request(json);
    rpcclient_status st = {0};
    Batch__V1__SubmitBatchResponse *r = h_submit(h, req, &st);
    cr_assert_not_null(r, "SubmitBatch failed: %d %s", st.code, st.message);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    return r;
}

Batch__V1__Batch *h_get(harness *h, const char *id, rpcclient_status *st)
{
    Batch__V1__GetBatchRequest req = BATCH__V1__GET_BATCH_REQUEST__INIT;
    req.batch_id = (char *)id;
    ProtobufCMessage *resp = NULL;
    rpcclient_unary(h->client, M_GET, &req.base, &batch__v1__batch__descriptor, &resp, 10, st);
    return (Batch__V1__Batch *)resp;
}

static int is_terminal(const Batch__V1__Batch *b, void *arg)
{
    return b->state >= BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED;
}

Batch__V1__Batch *h_wait_until(harness *h, const char *id, double timeout_s,
                               int (*pred)(const Batch__V1__Batch *b, void *arg), void *arg)
{
    for (int waited = 0;; waited += 5) {
        rpcclient_status st = {0};
        Batch__V1__Batch *b = h_get(h, id, &st);
        cr_assert_not_null(b, "GetBatch %s failed: %s", id, st.message);
        rpcclient_status_clear(&st);
        if (pred(b, arg))
            return b;
        cr_assert_lt(waited, timeout_s * 1000, "batch %s: condition not met in %.1fs (state %d, %u/%u done)",
                     id, timeout_s, b->state, (unsigned)b->last_sequence, b->counts->total);
        batch__v1__batch__free_unpacked(b, NULL);
        h_sleep_ms(5);
    }
}

Batch__V1__Batch *h_wait_end(harness *h, const char *id, double timeout_s)
{
    return h_wait_until(h, id, timeout_s, is_terminal, NULL);
}

Batch__V1__ItemResult **h_results(harness *h, const char *id, int state, size_t *n)
{
    Batch__V1__ListResultsRequest req = BATCH__V1__LIST_RESULTS_REQUEST__INIT;
    req.batch_id = (char *)id;
    req.state = state;
    rpcclient_stream *s = rpcclient_stream_open(h->client, M_RESULTS, &req.base, 60);
    size_t cap = 64;
    Batch__V1__ItemResult **v = malloc(cap * sizeof *v);
    *n = 0;
    ProtobufCMessage *m;
    int r;
    while ((r = rpcclient_stream_next(s, &batch__v1__item_result__descriptor, &m, 0)) == 1) {
        if (*n == cap)
            v = realloc(v, (cap *= 2) * sizeof *v);
        v[(*n)++] = (Batch__V1__ItemResult *)m;
    }
    cr_assert_eq(r, 0, "ListResults: undecodable message");
    rpcclient_status st = {0};
    cr_assert_eq(rpcclient_stream_finish(s, &st), GRPC_STATUS_OK, "ListResults: %s", st.message);
    rpcclient_status_clear(&st);
    return v;
}

void h_free_results(Batch__V1__ItemResult **r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        batch__v1__item_result__free_unpacked(r[i], NULL);
    free(r);
}

void *h_detail(const rpcclient_status *st, const ProtobufCMessageDescriptor *desc)
{
    if (st->details == NULL)
        return NULL;
    for (size_t i = 0; i < st->details->n_details; i++) {
        ProtobufCMessage *m = rpcstatus_unpack_detail(st->details->details[i], desc);
        if (m)
            return m;
    }
    return NULL;
}

const char *h_reason(const rpcclient_status *st, char *buf, size_t len)
{
    Google__Rpc__ErrorInfo *ei = h_detail(st, &google__rpc__error_info__descriptor);
    snprintf(buf, len, "%s", ei ? ei->reason : "");
    if (ei) {
        cr_assert_str_eq(ei->domain, "batchd");
        google__rpc__error_info__free_unpacked(ei, NULL);
    }
    return buf;
}
