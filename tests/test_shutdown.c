/* Graceful shutdown: new batches refused, running items finish within the grace period,
 * watchers get their final event or UNAVAILABLE, waiting SubmitBatch calls get their batch,
 * and the real binary exits 0 on SIGTERM. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "harness.h"
#include "pbtime.h"

static int running_at_least(const Batch__V1__Batch *b, void *arg)
{
    return b->counts->running >= *(unsigned *)arg;
}

Test(shutdown, draining_refuses_new_batches_and_lets_running_items_finish)
{
    harness *h = h_start(NULL);
    Batch__V1__SubmitBatchResponse *r = h_submit_async(h, 4, "/s/%u?delay_ms=700", "\"maxConcurrency\":4");
    unsigned four = 4;
    batch__v1__batch__free_unpacked(h_wait_until(h, r->batch->id, 10, running_at_least, &four), NULL);
    /* Watched from before the stop: the listener closes as soon as the drain is over, so
     * only an open stream can observe the end. */
    Batch__V1__WatchBatchRequest wreq = BATCH__V1__WATCH_BATCH_REQUEST__INIT;
    wreq.batch_id = r->batch->id;
    rpcclient_stream *ws = rpcclient_stream_open(h->client, M_WATCH, &wreq.base, 30);
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpcclient_stream_next(ws, &batch__v1__batch_event__descriptor, &m, 0), 1);
    protobuf_c_message_free_unpacked(m, NULL);
    h_request_stop(h);
    h_sleep_ms(50);

    Batch__V1__SubmitBatchRequest *req = h_request_n(1, "/late/%u", NULL);
    rpcclient_status st = {0};
    cr_assert_null(h_submit(h, req, &st));
    cr_assert_eq(st.code, GRPC_STATUS_UNAVAILABLE);
    char reason[64];
    cr_assert_str_eq(h_reason(&st, reason, sizeof reason), "SHUTTING_DOWN");
    Google__Rpc__RetryInfo *ri = h_detail(&st, &google__rpc__retry_info__descriptor);
    cr_assert_not_null(ri, "UNAVAILABLE while draining says when to retry");
    google__rpc__retry_info__free_unpacked(ri, NULL);
    rpcclient_status_clear(&st);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);

    /* The running items end normally during the grace period: the watcher gets the end. */
    int last_state = 0;
    uint32_t succeeded = 0;
    while (rpcclient_stream_next(ws, &batch__v1__batch_event__descriptor, &m, 0) == 1) {
        Batch__V1__BatchEvent *ev = (Batch__V1__BatchEvent *)m;
        if (ev->batch) {
            last_state = ev->batch->state;
            succeeded = ev->batch->counts->succeeded;
        }
        batch__v1__batch_event__free_unpacked(ev, NULL);
    }
    cr_assert_eq(rpcclient_stream_finish(ws, NULL), GRPC_STATUS_OK);
    cr_assert_eq(last_state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED);
    cr_assert_eq(succeeded, 4);
    upstream_stats us;
    upstream_get_stats(h->up, &us);
    cr_assert_eq(us.requests, 4, "the refused batch never ran");
    batch__v1__submit_batch_response__free_unpacked(r, NULL);
    h_stop(h);
}

static rpcclient_stream *watch_open(harness *h, const char *id)
{
    Batch__V1__WatchBatchRequest req = BATCH__V1__WATCH_BATCH_REQUEST__INIT;
    req.batch_id = (char *)id;
    req.include_items = 1;
    return rpcclient_stream_open(h->client, M_WATCH, &req.base, 60);
}

/* Reads to the end; returns the status and the last event's batch state (0 if none). */
static grpc_status_code watch_drain(rpcclient_stream *s, int *last_state, char *reason, size_t len)
{
    ProtobufCMessage *m;
    *last_state = 0;
    while (rpcclient_stream_next(s, &batch__v1__batch_event__descriptor, &m, 0) == 1) {
        Batch__V1__BatchEvent *ev = (Batch__V1__BatchEvent *)m;
        if (ev->batch)
            *last_state = ev->batch->state;
        batch__v1__batch_event__free_unpacked(ev, NULL);
    }
    rpcclient_status st = {0};
    grpc_status_code code = rpcclient_stream_finish(s, &st);
    h_reason(&st, reason, len);
    rpcclient_status_clear(&st);
    return code;
}

Test(shutdown, watchers_get_their_final_event_or_unavailable)
{
    const char *args[] = {"--shutdown-grace", "400ms", NULL};
    harness *h = h_start(args);
    Batch__V1__SubmitBatchResponse *quick = h_submit_async(h, 2, "/q/%u?delay_ms=150", NULL);
    Batch__V1__SubmitBatchResponse *slow = h_submit_async(h, 2, "/s/%u?delay_ms=30000", NULL);
    rpcclient_stream *wq = watch_open(h, quick->batch->id), *ws = watch_open(h, slow->batch->id);
    h_sleep_ms(50);
    h_request_stop(h);
    int state;
    char reason[64];
    cr_assert_eq(watch_drain(wq, &state, reason, sizeof reason), GRPC_STATUS_OK);
    cr_assert_eq(state, BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED, "the batch that ended in the grace period");
    cr_assert_eq(watch_drain(ws, &state, reason, sizeof reason), GRPC_STATUS_UNAVAILABLE);
    cr_assert_str_eq(reason, "SHUTTING_DOWN");
    batch__v1__submit_batch_response__free_unpacked(quick, NULL);
    batch__v1__submit_batch_response__free_unpacked(slow, NULL);
    h_stop(h);
}

typedef struct sync_call {
    harness *h;
    Batch__V1__SubmitBatchResponse *resp;
    grpc_status_code code;
} sync_call;

static void *sync_submit(void *arg)
{
    sync_call *sc = arg;
    Batch__V1__SubmitBatchRequest *req = h_request_n(2, "/s/%u?delay_ms=30000", "{\"mode\":\"MODE_SYNC\"}");
    ProtobufCMessage *m = NULL;
    sc->code = rpcclient_unary(sc->h->client, M_SUBMIT, &req->base, &batch__v1__submit_batch_response__descriptor,
                               &m, 60, NULL);
    sc->resp = (Batch__V1__SubmitBatchResponse *)m;
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    return NULL;
}

Test(shutdown, a_waiting_sync_submit_gets_its_batch_as_it_stands)
{
    const char *args[] = {"--shutdown-grace", "200ms", NULL};
    harness *h = h_start(args);
    sync_call sc = {h, NULL, GRPC_STATUS_UNKNOWN};
    pthread_t t;
    pthread_create(&t, NULL, sync_submit, &sc);
    upstream_stats us = {0};
    for (int i = 0; i < 500 && us.in_flight < 2; i++) {
        h_sleep_ms(10);
        upstream_get_stats(h->up, &us);
    }
    h_request_stop(h);
    pthread_join(t, NULL);
    cr_assert_eq(sc.code, GRPC_STATUS_OK, "an accepted batch is answered, not failed");
    cr_assert_not_null(sc.resp);
    cr_assert_neq(sc.resp->batch->id[0], '\0');
    cr_assert_eq(sc.resp->batch->state, BATCH__V1__BATCH_STATE__BATCH_STATE_RUNNING);
    batch__v1__submit_batch_response__free_unpacked(sc.resp, NULL);
    h_stop(h);
}

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

/* Waits until something accepts TCP connections on 127.0.0.1:port. */
static int wait_listening(int port, pid_t pid)
{
    for (int i = 0; i < 500; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return 1;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return 0; /* it died */
        h_sleep_ms(20);
    }
    return 0;
}

static pid_t spawn_batchd(int port, const char *tflag)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed assertion must not leave batchd running */
        execl(BATCHD_BINARY_DIR "/server/batchd", "batchd", "--listen", listen, "--target", tflag,
              "--log-level", "warn", "--shutdown-grace", "2s", (char *)NULL);
        _exit(127);
    }
    if (!wait_listening(port, pid)) {
        kill(pid, SIGKILL);
        cr_assert_fail("batchd did not start listening on %s", listen);
    }
    return pid;
}

static int wait_exit(pid_t pid)
{
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "batchd died of signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return WEXITSTATUS(status);
}

Test(shutdown, the_binary_exits_zero_on_sigterm_after_its_items)
{
    upstream *up = upstream_start(NULL);
    char tflag[96], addr[64];
    int port = free_port();
    snprintf(tflag, sizeof tflag, "api=http://127.0.0.1:%d", upstream_port(up));
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    pid_t pid = spawn_batchd(port, tflag);
    rpcclient *c = rpcclient_new(addr);
    Batch__V1__SubmitBatchRequest *req = h_request_n(3, "/s/%u?delay_ms=1000", "{\"mode\":\"MODE_ASYNC\"}");
    ProtobufCMessage *m = NULL;
    rpcclient_status st = {0};
    grpc_status_code code = rpcclient_unary(c, M_SUBMIT, &req->base, &batch__v1__submit_batch_response__descriptor,
                                            &m, 10, &st);
    if (code != GRPC_STATUS_OK)
        kill(pid, SIGKILL);
    cr_assert_eq(code, GRPC_STATUS_OK, "submit: %d %s", code, st.message);
    rpcclient_status_clear(&st);
    upstream_stats us = {0};
    for (int i = 0; i < 500 && us.in_flight < 3; i++) {
        h_sleep_ms(10);
        upstream_get_stats(up, &us);
    }
    kill(pid, SIGTERM);
    cr_assert_eq(us.in_flight, 3, "the items were running when SIGTERM came");
    cr_assert_eq(wait_exit(pid), 0);
    upstream_get_stats(up, &us);
    cr_assert_eq(us.in_flight, 0, "the running items were answered before exit");
    cr_assert_eq(us.requests, 3);
    protobuf_c_message_free_unpacked(m, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    rpcclient_free(c);
    upstream_stop(up);
}

Test(shutdown, the_binary_refuses_bad_flags_with_status_2)
{
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        execl(BATCHD_BINARY_DIR "/server/batchd", "batchd", "--target", "nourl", (char *)NULL);
        _exit(127);
    }
    cr_assert_eq(wait_exit(pid), 2);
    pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        execl(BATCHD_BINARY_DIR "/server/batchd", "batchd", (char *)NULL);
        _exit(127);
    }
    cr_assert_eq(wait_exit(pid), 2, "no target is a usage error");
}

Test(shutdown, a_taken_port_is_an_error_not_a_shared_port)
{
    upstream *up = upstream_start(NULL);
    char listen[64], tflag[96];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", upstream_port(up)); /* taken by the upstream */
    snprintf(tflag, sizeof tflag, "api=http://127.0.0.1:%d", upstream_port(up));
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        execl(BATCHD_BINARY_DIR "/server/batchd", "batchd", "--listen", listen, "--target", tflag, (char *)NULL);
        _exit(127);
    }
    cr_assert_eq(wait_exit(pid), 1);
    upstream_stop(up);
}

Test(shutdown, help_lists_every_flag_within_100_columns)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execl(BATCHD_BINARY_DIR "/server/batchd", "batchd", "--help", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    static char out[16384];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof out - 1 && (n = read(fds[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    cr_assert_eq(wait_exit(pid), 0);
    const char *flags[] = {"--listen", "--target", "--max-items", "--sync-threshold", "--max-inflight",
                           "--max-concurrency", "--max-attempts", "--item-timeout", "--max-response-bytes",
                           "--shutdown-grace", "--no-reflection", "--data-dir", "--sync", "--retention",
                           "--idempotency-ttl", "--version"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        cr_assert(strstr(out, flags[i]), "--help does not mention %s", flags[i]);
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
        cr_assert_leq(strlen(line), 100, "long help line: %s", line);
}
