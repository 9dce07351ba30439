/* gRPC core server bridged onto libev. The drain thread blocks in
 * grpc_completion_queue_next and hands {tag, ok} to the loop through a mutex-protected
 * queue and ev_async; everything else happens on the loop thread. */
#include "rpc.h"

#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pbtime.h"

/* Calls requested from gRPC ahead of time per method, so bursts do not wait for the
 * loop to ask for the next one. */
#define PREREQUESTED_CALLS 2

typedef struct completion {
    rpc_tag *tag;
    int ok;
} completion;

typedef struct registered {
    const rpc_method *method;
    void *handle; /* from grpc_server_register_method */
} registered;

struct rpc_server {
    struct ev_loop *loop;
    grpc_server *server;
    grpc_completion_queue *cq;
    int port;
    registered *methods;
    size_t n_methods;
    int shutting_down;

    pthread_t drain_thread;
    int drain_started;
    pthread_mutex_t mu;      /* guards queue and drained */
    completion *queue;
    size_t queue_len, queue_cap;
    int drained;             /* the drain thread saw GRPC_QUEUE_SHUTDOWN */
    ev_async wake;
    completion *work;        /* the loop's swap buffer */
    size_t work_cap;

    list_node calls;         /* ACTIVE and FINISHING calls */
    size_t n_calls;
    size_t n_requested;      /* REQUESTED calls (owned by gRPC until they complete) */

    rpc_tag shutdown_tag;
    int shutdown_notified;
    int cq_shutdown;         /* grpc_completion_queue_shutdown was called */
    ev_timer cancel_timer;
    void (*done)(void *);
    void *done_arg;
};

static void request_call(rpc_server *s, const registered *r);

static void *drain_main(void *arg)
{
    rpc_server *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        pthread_mutex_lock(&s->mu);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            s->drained = 1;
        } else if (ev.type == GRPC_OP_COMPLETE) {
            if (s->queue_len == s->queue_cap) {
                size_t cap = s->queue_cap ? s->queue_cap * 2 : 256;
                completion *q = realloc(s->queue, cap * sizeof *q);
                if (q == NULL) {
                    /* Dropping a tag would leak or hang a call forever: nothing sane is left. */
                    log_error("out of memory queueing a gRPC completion");
                    abort();
                }
                s->queue = q;
                s->queue_cap = cap;
            }
            s->queue[s->queue_len++] = (completion){ev.tag, ev.success};
        }
        int last = s->drained;
        pthread_mutex_unlock(&s->mu);
        ev_async_send(s->loop, &s->wake);
        if (last)
            return NULL;
    }
}

static void maybe_done(rpc_server *s);

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    rpc_server *s = container_of(w, rpc_server, wake);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        /* Swap buffers so that handlers run without the lock held. */
        completion *batch = s->queue;
        size_t n = s->queue_len;
        size_t cap = s->queue_cap;
        s->queue = s->work;
        s->queue_cap = s->work_cap;
        s->queue_len = 0;
        int drained = s->drained;
        pthread_mutex_unlock(&s->mu);
        s->work = batch;
        s->work_cap = cap;
        for (size_t i = 0; i < n; i++)
            batch[i].tag->fn(batch[i].tag, batch[i].ok);
        if (n == 0) {
            if (drained)
                maybe_done(s);
            return;
        }
    }
}

/* ---- calls ---------------------------------------------------------------------- */

static void call_reap(rpc_call *c)
{
    rpc_server *s = c->srv;
    if (c->method && c->method->destroy)
        c->method->destroy(c);
    list_remove(&c->link);
    s->n_calls--;
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->recv_bb)
        grpc_byte_buffer_destroy(c->recv_bb);
    if (c->send_bb) /* only when torn down with a send in flight */
        grpc_byte_buffer_destroy(c->send_bb);
    if (c->finish_bb)
        grpc_byte_buffer_destroy(c->finish_bb);
    free(c->finish_details);
    free(c->finish_message);
    grpc_metadata_array_destroy(&c->request_md);
    if (c->method == NULL)
        grpc_call_details_destroy(&c->details);
    if (c->call)
        grpc_call_unref(c->call);
    free(c);
    maybe_done(s);
}

static void call_maybe_reap(rpc_call *c)
{
    if (c->state == RPC_CALL_FINISHING && c->pending == 0 && c->holds == 0)
        call_reap(c);
}

void rpc_call_hold(rpc_call *c) { c->holds++; }

void rpc_call_release(rpc_call *c)
{
    c->holds--;
    call_maybe_reap(c);
}

int rpc_call_active(const rpc_call *c) { return c->state == RPC_CALL_ACTIVE; }

static int start_batch(rpc_call *c, const grpc_op *ops, size_t n, rpc_tag *tag)
{
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        log_error("grpc_call_start_batch: %s", grpc_call_error_to_string(e));
        return -1;
    }
    c->pending++;
    return 0;
}

/* The call died under the handler: tell it, then let the rpc layer own the call. */
static void call_abandon(rpc_call *c)
{
    if (c->state != RPC_CALL_ACTIVE)
        return;
    c->state = RPC_CALL_FINISHING;
    if (c->method && c->method->cancelled)
        c->method->cancelled(c);
}

static void on_close(rpc_tag *tag, int ok)
{
    rpc_call *c = container_of(tag, rpc_call, close_tag);
    c->pending--;
    c->closed = 1;
    if (c->close_cancelled)
        call_abandon(c);
    call_maybe_reap(c);
}

static void start_status(rpc_call *c);

static void on_send(rpc_tag *tag, int ok)
{
    rpc_call *c = container_of(tag, rpc_call, send_tag);
    c->pending--;
    grpc_byte_buffer_destroy(c->send_bb);
    c->send_bb = NULL;
    if (c->finish_queued) {
        c->finish_queued = 0;
        if (ok)
            start_status(c);
    } else if (c->state == RPC_CALL_ACTIVE && c->method && c->method->sent) {
        c->method->sent(c, ok);
    }
    call_maybe_reap(c);
}

static void on_recv(rpc_tag *tag, int ok)
{
    rpc_call *c = container_of(tag, rpc_call, recv_tag);
    c->pending--;
    grpc_byte_buffer *bb = c->recv_bb;
    c->recv_bb = NULL;
    if (c->state == RPC_CALL_ACTIVE && c->method && c->method->received)
        c->method->received(c, ok ? bb : NULL);
    else if (bb)
        grpc_byte_buffer_destroy(bb);
    call_maybe_reap(c);
}

static void on_status(rpc_tag *tag, int ok)
{
    rpc_call *c = container_of(tag, rpc_call, status_tag);
    c->pending--;
    call_maybe_reap(c);
}

static void begin_call(rpc_call *c)
{
    rpc_server *s = c->srv;
    s->n_requested--;
    c->state = RPC_CALL_ACTIVE;
    list_push_back(&s->calls, &c->link);
    s->n_calls++;

    gpr_timespec now = gpr_now(c->deadline.clock_type);
    if (gpr_time_cmp(c->deadline, gpr_inf_future(c->deadline.clock_type)) == 0) {
        c->deadline_mono_ns = INT64_MAX;
    } else {
        gpr_timespec left = gpr_time_sub(c->deadline, now);
        c->deadline_mono_ns = pbtime_mono_ns() + left.tv_sec * PBTIME_NS_PER_SEC + left.tv_nsec;
    }

    /* Close first, in its own batch: it is how a client's cancellation is learned. */
    grpc_op op = {0};
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    if (start_batch(c, &op, 1, &c->close_tag) < 0) {
        c->state = RPC_CALL_FINISHING;
        call_maybe_reap(c);
        return;
    }
    if (c->method == NULL) {
        char *m = grpc_slice_to_c_string(c->details.method);
        rpc_call_fail(c, GRPC_STATUS_UNIMPLEMENTED, "UNKNOWN_METHOD", "unknown method %s", m);
        gpr_free(m);
        return;
    }
    grpc_byte_buffer *req = c->payload;
    c->payload = NULL;
    c->method->start(c, req);
    if (req)
        grpc_byte_buffer_destroy(req);
}

static void on_new_call(rpc_tag *tag, int ok)
{
    rpc_call *c = container_of(tag, rpc_call, new_tag);
    rpc_server *s = c->srv;
    if (!ok) { /* the server is shutting down: the request is returned unused */
        s->n_requested--;
        grpc_metadata_array_destroy(&c->request_md);
        if (c->method == NULL)
            grpc_call_details_destroy(&c->details);
        if (c->payload)
            grpc_byte_buffer_destroy(c->payload);
        free(c);
        maybe_done(s);
        return;
    }
    /* Ask for the next call of this method before handling this one. */
    if (!s->shutting_down) {
        registered generic = {NULL, NULL};
        const registered *r = &generic;
        for (size_t i = 0; c->method && i < s->n_methods; i++)
            if (s->methods[i].method == c->method)
                r = &s->methods[i];
        request_call(s, r);
    }
    begin_call(c);
}

static void request_call(rpc_server *s, const registered *r)
{
    size_t size = r->method ? r->method->call_size : sizeof(rpc_call);
    rpc_call *c = calloc(1, size);
    if (c == NULL) {
        log_error("out of memory requesting a call");
        return;
    }
    c->srv = s;
    c->method = r->method;
    c->state = RPC_CALL_REQUESTED;
    c->new_tag.fn = on_new_call;
    c->close_tag.fn = on_close;
    c->send_tag.fn = on_send;
    c->recv_tag.fn = on_recv;
    c->status_tag.fn = on_status;
    list_init(&c->link);
    grpc_metadata_array_init(&c->request_md);
    grpc_call_error e;
    if (r->method == NULL) {
        grpc_call_details_init(&c->details);
        e = grpc_server_request_call(s->server, &c->call, &c->details, &c->request_md, s->cq, s->cq,
                                     &c->new_tag);
    } else {
        e = grpc_server_request_registered_call(s->server, r->handle, &c->call, &c->deadline,
                                                &c->request_md,
                                                r->method->client_streaming ? NULL : &c->payload,
                                                s->cq, s->cq, &c->new_tag);
    }
    if (e != GRPC_CALL_OK) {
        log_error("requesting a call: %s", grpc_call_error_to_string(e));
        grpc_metadata_array_destroy(&c->request_md);
        if (r->method == NULL)
            grpc_call_details_destroy(&c->details);
        free(c);
        return;
    }
    if (r->method == NULL)
        c->deadline = c->details.deadline; /* filled when the call arrives; see begin_call */
    s->n_requested++;
}

void *rpc_call_arg(const rpc_call *c) { return c->method ? c->method->arg : NULL; }
int rpc_call_sending(const rpc_call *c) { return c->send_bb != NULL; }

void rpc_call_send(rpc_call *c, grpc_byte_buffer *bb)
{
    if (c->state != RPC_CALL_ACTIVE || c->send_bb != NULL) {
        /* A handler bug: two messages in flight, or a send after the call ended. */
        log_error("rpc_call_send on a call that cannot send (state %d)", c->state);
        grpc_byte_buffer_destroy(bb);
        return;
    }
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!c->initial_md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_md_sent = 1;
    }
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = bb;
    c->send_bb = bb;
    if (start_batch(c, ops, n, &c->send_tag) < 0) {
        c->send_bb = NULL;
        grpc_byte_buffer_destroy(bb);
    }
}

void rpc_call_recv(rpc_call *c)
{
    grpc_op op = {0};
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_bb;
    grpc_op ops[2] = {{0}};
    size_t n = 0;
    if (!c->initial_md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_md_sent = 1;
    }
    ops[n++] = op;
    start_batch(c, ops, n, &c->recv_tag);
}

static void start_status(rpc_call *c)
{
    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!c->initial_md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_md_sent = 1;
    }
    if (c->finish_bb) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->finish_bb;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = c->finish_code;
    if (c->finish_message) {
        c->status_slice = grpc_slice_from_static_string(c->finish_message);
        ops[n].data.send_status_from_server.status_details = &c->status_slice;
    }
    if (c->finish_details) {
        c->trailer.key = grpc_slice_from_static_string("grpc-status-details-bin");
        c->trailer.value = grpc_slice_from_static_buffer(c->finish_details, c->finish_details_len);
        ops[n].data.send_status_from_server.trailing_metadata_count = 1;
        ops[n].data.send_status_from_server.trailing_metadata = &c->trailer;
    }
    n++;
    start_batch(c, ops, n, &c->status_tag);
}

/* Ends the call with code and message (may be NULL) and the packed details (taken). */
static void finish(rpc_call *c, grpc_status_code code, const char *message, uint8_t *details,
                   size_t details_len, grpc_byte_buffer *last)
{
    if (c->state != RPC_CALL_ACTIVE) {
        if (last)
            grpc_byte_buffer_destroy(last);
        free(details);
        return;
    }
    c->state = RPC_CALL_FINISHING;
    c->finish_bb = last;
    c->finish_code = code;
    c->finish_details = details;
    c->finish_details_len = details_len;
    if (message) {
        /* Messages travel in a header: one line, short. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", message);
        for (char *p = msg; *p; p++)
            if (*p == '\r' || *p == '\n')
                *p = ' ';
        c->finish_message = strdup(msg);
    }
    if (c->send_bb)
        c->finish_queued = 1;
    else
        start_status(c);
    call_maybe_reap(c);
}

void rpc_call_finish(rpc_call *c, const rpcstatus *st, grpc_byte_buffer *last)
{
    if (st == NULL || rpcstatus_code(st) == GRPC_STATUS_OK) {
        finish(c, GRPC_STATUS_OK, NULL, NULL, 0, last);
        return;
    }
    size_t len = 0;
    uint8_t *details = rpcstatus_pack(st, &len);
    finish(c, rpcstatus_code(st), rpcstatus_message(st), details, len, last);
}

void rpc_call_fail(rpc_call *c, grpc_status_code code, const char *reason, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rpcstatus *st = rpcstatus_new(code, "%s", msg);
    if (st == NULL) { /* no memory for details: the code and message still go out */
        finish(c, code, msg, NULL, 0, NULL);
        return;
    }
    if (reason)
        rpcstatus_error_info(st, reason);
    rpc_call_finish(c, st, NULL);
    rpcstatus_free(st);
}

const char *rpc_call_header(const rpc_call *c, const char *key, size_t *len)
{
    for (size_t i = 0; i < c->request_md.count; i++) {
        const grpc_metadata *m = &c->request_md.metadata[i];
        if (grpc_slice_str_cmp(m->key, key) == 0) {
            *len = GRPC_SLICE_LENGTH(m->value);
            return (const char *)GRPC_SLICE_START_PTR(m->value);
        }
    }
    return NULL;
}

/* ---- server --------------------------------------------------------------------- */

rpc_server *rpc_server_new(struct ev_loop *loop, const rpc_server_opts *o, char *err, size_t errlen)
{
    rpc_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    grpc_init();
    s->loop = loop;
    list_init(&s->calls);
    pthread_mutex_init(&s->mu, NULL);
    ev_async_init(&s->wake, on_wake);
    ev_async_start(loop, &s->wake);
    ev_unref(loop); /* the async watcher alone must not keep the loop alive */

    grpc_arg args[3];
    args[0] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}};
    args[1] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                         {.integer = (int)o->max_receive_bytes}};
    args[2] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = -1}};
    grpc_channel_args cargs = {3, args};
    s->server = grpc_server_create(&cargs, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);

    s->methods = calloc(o->n_methods ? o->n_methods : 1, sizeof *s->methods);
    if (s->methods == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < o->n_methods; i++) {
        const rpc_method *m = o->methods[i];
        void *h = grpc_server_register_method(s->server, m->path, NULL,
                                              m->client_streaming ? GRPC_SRM_PAYLOAD_NONE
                                                                  : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
                                              0);
        if (h == NULL) {
            snprintf(err, errlen, "cannot register method %s", m->path);
            goto fail;
        }
        s->methods[s->n_methods++] = (registered){m, h};
    }

    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    s->port = grpc_server_add_http2_port(s->server, o->listen, creds);
    grpc_server_credentials_release(creds);
    if (s->port == 0) {
        snprintf(err, errlen, "cannot listen on %s (address in use or invalid)", o->listen);
        goto fail;
    }
    grpc_server_start(s->server);
    if (pthread_create(&s->drain_thread, NULL, drain_main, s) != 0) {
        snprintf(err, errlen, "cannot start the completion-queue thread");
        s->shutting_down = 1;
        goto fail;
    }
    s->drain_started = 1;

    for (size_t i = 0; i < s->n_methods; i++)
        for (int k = 0; k < PREREQUESTED_CALLS; k++)
            request_call(s, &s->methods[i]);
    registered generic = {NULL, NULL};
    for (int k = 0; k < PREREQUESTED_CALLS; k++)
        request_call(s, &generic);
    return s;

fail:
    rpc_server_free(s);
    return NULL;
}

int rpc_server_port(const rpc_server *s) { return s->port; }
size_t rpc_server_active_calls(const rpc_server *s) { return s->n_calls; }

static void maybe_done(rpc_server *s)
{
    if (!s->shutdown_notified || s->n_calls > 0 || s->n_requested > 0 || s->done == NULL)
        return;
    int drained;
    pthread_mutex_lock(&s->mu);
    drained = s->drained;
    pthread_mutex_unlock(&s->mu);
    if (!drained) {
        /* Every call is gone: now the queue may shut down (never before the server). */
        if (!s->cq_shutdown) {
            s->cq_shutdown = 1;
            grpc_completion_queue_shutdown(s->cq);
        }
        return; /* the drain thread wakes us once more with drained set */
    }
    if (s->drain_started) {
        pthread_join(s->drain_thread, NULL);
        s->drain_started = 0;
    }
    ev_timer_stop(s->loop, &s->cancel_timer);
    void (*done)(void *) = s->done;
    s->done = NULL;
    done(s->done_arg);
}

static void on_shutdown_notify(rpc_tag *tag, int ok)
{
    rpc_server *s = container_of(tag, rpc_server, shutdown_tag);
    s->shutdown_notified = 1;
    maybe_done(s);
}

static void on_cancel_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    rpc_server *s = container_of(w, rpc_server, cancel_timer);
    grpc_server_cancel_all_calls(s->server);
}

void rpc_server_shutdown(rpc_server *s, double cancel_all_after, void (*done)(void *), void *arg)
{
    if (s->shutting_down)
        return;
    s->shutting_down = 1;
    s->done = done;
    s->done_arg = arg;
    s->shutdown_tag.fn = on_shutdown_notify;
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    ev_timer_init(&s->cancel_timer, on_cancel_timer, cancel_all_after, 0);
    ev_timer_start(s->loop, &s->cancel_timer);
}

void rpc_server_free(rpc_server *s)
{
    if (s == NULL)
        return;
    /* A server that did not finish rpc_server_shutdown (it failed to start, or its loop
     * stopped early) is shut down here synchronously, in the order gRPC requires. */
    if (s->server && !s->shutting_down) {
        s->shutdown_tag.fn = on_shutdown_notify;
        grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
        s->shutting_down = 1;
    }
    if (s->server)
        grpc_server_cancel_all_calls(s->server);
    if (s->cq && !s->cq_shutdown) {
        s->cq_shutdown = 1;
        grpc_completion_queue_shutdown(s->cq);
    }
    if (s->drain_started) {
        pthread_join(s->drain_thread, NULL);
        s->drain_started = 0;
    } else if (s->cq) {
        grpc_event ev;
        do {
            ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        } while (ev.type != GRPC_QUEUE_SHUTDOWN);
    }
    /* Calls still open (the loop stopped before they ended) are torn down here. */
    s->done = NULL;
    list_node *pos, *tmp;
    list_foreach_safe(pos, tmp, &s->calls) {
        rpc_call *c = container_of(pos, rpc_call, link);
        call_abandon(c);
        c->pending = 0;
        c->holds = 0; /* whoever holds it is being torn down too */
        call_reap(c);
    }
    /* Completions still queued belong to requested calls: free them. */
    for (size_t i = 0; i < s->queue_len; i++) {
        rpc_tag *t = s->queue[i].tag;
        if (t->fn == on_new_call) {
            rpc_call *c = container_of(t, rpc_call, new_tag);
            grpc_metadata_array_destroy(&c->request_md);
            if (c->method == NULL)
                grpc_call_details_destroy(&c->details);
            if (c->payload)
                grpc_byte_buffer_destroy(c->payload);
            if (c->call)
                grpc_call_unref(c->call);
            free(c);
        }
    }
    ev_ref(s->loop);
    ev_async_stop(s->loop, &s->wake);
    if (s->server)
        grpc_server_destroy(s->server);
    if (s->cq)
        grpc_completion_queue_destroy(s->cq);
    pthread_mutex_destroy(&s->mu);
    free(s->queue);
    free(s->work);
    free(s->methods);
    free(s);
    grpc_shutdown();
}
