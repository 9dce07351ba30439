/* Crash safety: a real batchd process is killed with SIGKILL while it accepts a
 * 10,000-item batch, mid-run and during its final writes, and started again on the same
 * data directory each time. At the end every item has exactly one result, the batch
 * ended, each item reached the upstream at most twice (only those in flight at a kill
 * twice), and a watcher that resumed with after_sequence saw every item exactly once. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define ITEMS 10000
#define CONCURRENCY 64

typedef struct server {
    pid_t pid;
    int port;
    char addr[64];
    char tflag[96];
    char *dir;
} server;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static int listening(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void server_start(server *s)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    s->pid = fork();
    cr_assert_neq(s->pid, -1);
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed assertion must not leave batchd running */
        /* Warnings (e.g. recovery renumbering) go to a log kept for a failure's report. */
        char log[512];
        snprintf(log, sizeof log, "%s.log", s->dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 2);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        execl(BATCHD_BINARY_DIR "/server/batchd", "batchd", "--listen", listen, "--target", s->tflag,
              "--data-dir", s->dir, "--max-items", "10000", "--max-concurrency", "64", "--log-level", "warn",
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000 && !listening(s->port); i++) {
        cr_assert_eq(waitpid(s->pid, NULL, WNOHANG), 0, "batchd exited at start");
        h_sleep_ms(10);
    }
}

static void server_kill(server *s)
{
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
}

/* The watcher: follows the batch across every restart, resuming after the last sequence
 * it saw. It records how many times it saw each sequence and each item index. */
typedef struct watcher {
    char addr[64];
    char batch_id[32];
    atomic_int stop;
    uint8_t seen_seq[ITEMS + 1];
    uint8_t seen_index[ITEMS];
    uint64_t last;
    int ended;
    int reconnects;
    char history[4096];  /* "after->first" per connection, for a failure's report */
    size_t hlen;
} watcher;

static void *watch_main(void *arg)
{
    watcher *w = arg;
    rpcclient *c = rpcclient_new(w->addr);
    while (!w->ended && !atomic_load(&w->stop)) {
        Batch__V1__WatchBatchRequest req = BATCH__V1__WATCH_BATCH_REQUEST__INIT;
        req.batch_id = w->batch_id;
        req.include_items = 1;
        req.after_sequence = w->last;
        rpcclient_stream *s = rpcclient_stream_open(c, M_WATCH, &req.base, 0);
        ProtobufCMessage *m;
        int r, first = 1, terminal = 0;
        while ((r = rpcclient_stream_next(s, &batch__v1__batch_event__descriptor, &m, 0.5)) != 0) {
            if (atomic_load(&w->stop))
                break;
            if (r == -1 && w->hlen < sizeof w->history - 32)
                w->hlen += (size_t)snprintf(w->history + w->hlen, sizeof w->history - w->hlen, " undecodable");
            if (r != 1)
                continue; /* a read timed out: look at stop, then wait again */
            Batch__V1__BatchEvent *ev = (Batch__V1__BatchEvent *)m;
            if (ev->item && ev->sequence <= ITEMS && ev->item->index < ITEMS) {
                if (first && w->hlen < sizeof w->history - 32)
                    w->hlen += (size_t)snprintf(w->history + w->hlen, sizeof w->history - w->hlen, " %lu->%lu",
                                                (unsigned long)w->last, (unsigned long)ev->sequence);
                else if (ev->sequence != w->last + 1 && w->hlen < sizeof w->history - 32)
                    w->hlen += (size_t)snprintf(w->history + w->hlen, sizeof w->history - w->hlen,
                                                " gap:%lu->%lu", (unsigned long)w->last, (unsigned long)ev->sequence);
                first = 0;
                w->seen_seq[ev->sequence]++;
                w->seen_index[ev->item->index]++;
                w->last = ev->sequence;
            } else if (ev->batch) {
                /* A snapshot of an ended batch is terminal too, with replayed items still to
                 * come: only the stream's end (OK) says the last event was the final one. */
                terminal = ev->batch->state >= BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED;
            }
            batch__v1__batch_event__free_unpacked(ev, NULL);
        }
        if (r != 0)
            rpcclient_stream_cancel(s);
        if (rpcclient_stream_finish(s, NULL) == GRPC_STATUS_OK && r == 0 && terminal)
            w->ended = 1;
        if (!w->ended) {
            w->reconnects++;
            h_sleep_ms(50); /* the server is restarting */
        }
    }
    rpcclient_free(c);
    return NULL;
}

typedef struct progress_arg {
    uint64_t at_least;
} progress_arg;

/* Polls until the batch recorded at least n results (the server may be starting up). */
static void wait_recorded(rpcclient *c, const char *id, uint64_t n)
{
    for (int i = 0; i < 6000; i++) {
        Batch__V1__GetBatchRequest req = BATCH__V1__GET_BATCH_REQUEST__INIT;
        req.batch_id = (char *)id;
        ProtobufCMessage *m = NULL;
        if (rpcclient_unary(c, M_GET, &req.base, &batch__v1__batch__descriptor, &m, 5, NULL) == GRPC_STATUS_OK) {
            Batch__V1__Batch *b = (Batch__V1__Batch *)m;
            int done = b->last_sequence >= n || b->state >= BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED;
            batch__v1__batch__free_unpacked(b, NULL);
            if (done)
                return;
        }
        h_sleep_ms(10);
    }
    cr_assert_fail("batch %s did not reach %lu results", id, (unsigned long)n);
}

typedef struct submitter {
    char addr[64];
    grpc_status_code code;
    char batch_id[32];
} submitter;

static Batch__V1__SubmitBatchRequest *the_request(void)
{
    return h_request_n(ITEMS, "/item/%u?delay_ms=15",
                       "{\"mode\":\"MODE_ASYNC\",\"maxConcurrency\":64,\"maxAttempts\":3}");
}

static void *submit_main(void *arg)
{
    submitter *sub = arg;
    rpcclient *c = rpcclient_new(sub->addr);
    Batch__V1__SubmitBatchRequest *req = the_request();
    req->request_id = strdup("crash-test-1");
    ProtobufCMessage *m = NULL;
    sub->code = rpcclient_unary(c, M_SUBMIT, &req->base, &batch__v1__submit_batch_response__descriptor, &m, 30, NULL);
    if (sub->code == GRPC_STATUS_OK) {
        snprintf(sub->batch_id, sizeof sub->batch_id, "%s", ((Batch__V1__SubmitBatchResponse *)m)->batch->id);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    rpcclient_free(c);
    return NULL;
}

Test(crash, kill_9_at_any_point_loses_nothing_and_runs_nothing_more_than_twice, .timeout = 300)
{
    upstream *up = upstream_start(NULL);
    server s = {0};
    s.port = free_port();
    s.dir = h_tempdir();
    snprintf(s.addr, sizeof s.addr, "127.0.0.1:%d", s.port);
    snprintf(s.tflag, sizeof s.tflag, "api=http://127.0.0.1:%d", upstream_port(up));
    server_start(&s);
    int kills = 0;

    /* 1. Killed while it accepts the batch: the call may or may not have been answered. */
    submitter sub = {0};
    snprintf(sub.addr, sizeof sub.addr, "%s", s.addr);
    pthread_t t;
    pthread_create(&t, NULL, submit_main, &sub);
    h_sleep_ms(30);
    server_kill(&s);
    kills++;
    pthread_join(t, NULL);
    server_start(&s);
    /* The client retries with the same request_id: the original batch if it was stored,
     * else a new one; never two. */
    rpcclient *c = rpcclient_new(s.addr);
    Batch__V1__SubmitBatchRequest *req = the_request();
    req->request_id = strdup("crash-test-1");
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpcclient_unary(c, M_SUBMIT, &req->base, &batch__v1__submit_batch_response__descriptor, &m, 60,
                                 NULL), GRPC_STATUS_OK);
    char id[32];
    snprintf(id, sizeof id, "%s", ((Batch__V1__SubmitBatchResponse *)m)->batch->id);
    protobuf_c_message_free_unpacked(m, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    if (sub.code == GRPC_STATUS_OK)
        cr_assert_str_eq(id, sub.batch_id, "an acknowledged batch is the one the retry gets");

    watcher *w = calloc(1, sizeof *w);
    snprintf(w->addr, sizeof w->addr, "%s", s.addr);
    snprintf(w->batch_id, sizeof w->batch_id, "%s", id);
    pthread_t wt;
    pthread_create(&wt, NULL, watch_main, w);

    /* 2. Mid-run, twice; 3. during the final writes. */
    uint64_t points[] = {ITEMS * 3 / 10, ITEMS * 6 / 10, ITEMS * 99 / 100};
    for (size_t k = 0; k < sizeof points / sizeof points[0]; k++) {
        wait_recorded(c, id, points[k]);
        server_kill(&s);
        kills++;
        server_start(&s);
    }
    wait_recorded(c, id, ITEMS);
    for (int i = 0; i < 3000 && !w->ended; i++)
        h_sleep_ms(10);
    atomic_store(&w->stop, 1);
    pthread_join(wt, NULL);

    /* The batch ended with one result per item. */
    Batch__V1__GetBatchRequest greq = BATCH__V1__GET_BATCH_REQUEST__INIT;
    greq.batch_id = id;
    m = NULL;
    cr_assert_eq(rpcclient_unary(c, M_GET, &greq.base, &batch__v1__batch__descriptor, &m, 10, NULL), GRPC_STATUS_OK);
    Batch__V1__Batch *b = (Batch__V1__Batch *)m;
    cr_assert_eq(b->state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    cr_assert_eq(b->counts->succeeded, ITEMS);
    cr_assert_eq(b->last_sequence, ITEMS);
    batch__v1__batch__free_unpacked(b, NULL);
    Batch__V1__ListResultsRequest lreq = BATCH__V1__LIST_RESULTS_REQUEST__INIT;
    lreq.batch_id = id;
    rpcclient_stream *rs = rpcclient_stream_open(c, M_RESULTS, &lreq.base, 120);
    static uint8_t got[ITEMS];
    memset(got, 0, sizeof got);
    uint32_t n = 0;
    while (rpcclient_stream_next(rs, &batch__v1__item_result__descriptor, &m, 0) == 1) {
        Batch__V1__ItemResult *it = (Batch__V1__ItemResult *)m;
        cr_assert_lt(it->index, ITEMS);
        got[it->index]++;
        n++;
        batch__v1__item_result__free_unpacked(it, NULL);
    }
    cr_assert_eq(rpcclient_stream_finish(rs, NULL), GRPC_STATUS_OK);
    cr_assert_eq(n, ITEMS);
    for (uint32_t i = 0; i < ITEMS; i++)
        cr_assert_eq(got[i], 1, "item %u has %u results", i, got[i]);

    /* Upstream side: at most twice each, and only what was in flight at a kill (at most
     * the concurrency, plus results finished but not yet durable) twice. */
    unsigned twice = 0;
    for (uint32_t i = 0; i < ITEMS; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s/i%u", id, i);
        uint64_t cnt = upstream_key_count(up, key);
        cr_assert(cnt == 1 || cnt == 2, "item %u reached the upstream %lu times", i, (unsigned long)cnt);
        twice += cnt == 2;
    }
    cr_assert_leq(twice, (unsigned)(kills * CONCURRENCY * 2), "%u items ran twice after %d kills", twice, kills);
    cr_log_info("%d kills, %u items ran twice, the watcher reconnected %d times", kills, twice, w->reconnects);

    /* The watcher saw every sequence and every item exactly once across the restarts. */
    char log[512], cmd[1200];
    snprintf(log, sizeof log, "%s.log", s.dir);
    snprintf(cmd, sizeof cmd, "tail -n 20 '%s' 1>&2; rm -f '%s'", log, log);
    int complete = w->ended;
    for (uint32_t q = 1; q <= ITEMS; q++)
        complete &= w->seen_seq[q] == 1;
    if (!complete) {
        cr_log_error("watcher connections (after_sequence->first sequence received):%s", w->history);
        if (system(cmd) != 0)
            cr_log_error("no batchd log");
    }
    cr_assert(w->ended, "the watcher saw the final state");
    for (uint32_t q = 1; q <= ITEMS; q++)
        cr_assert_eq(w->seen_seq[q], 1, "sequence %u seen %u times", q, w->seen_seq[q]);
    for (uint32_t i = 0; i < ITEMS; i++)
        cr_assert_eq(w->seen_index[i], 1, "item %u seen %u times", i, w->seen_index[i]);

    free(w);
    rpcclient_free(c);
    kill(s.pid, SIGTERM);
    waitpid(s.pid, NULL, 0);
    unlink(log);
    h_rmdir(s.dir);
    upstream_stop(up);
}
