/* The gRPC core bridge: one server, one completion queue drained on a dedicated
 * thread, and every completion handled on the libev loop thread, which owns all state.
 *
 * Each incoming call is an rpc_call that moves through one state machine:
 *   REQUESTED --(client arrives)--> ACTIVE --(handler finishes, or the call dies)--> FINISHING
 *   --(no operation of it still in gRPC's hands)--> freed.
 * Handlers embed rpc_call as the first member of their own per-call struct. */
#ifndef BATCHD_RPC_H
#define BATCHD_RPC_H

#include <ev.h>
#include <grpc/grpc.h>
#include <stdint.h>

#include "list.h"
#include "rpcstatus.h"

typedef struct rpc_server rpc_server;
typedef struct rpc_call rpc_call;

/* A completion-queue tag: what gRPC hands back when an operation batch completes. */
typedef struct rpc_tag {
    void (*fn)(struct rpc_tag *tag, int ok);
} rpc_tag;

/* One method served. The table passed to rpc_server_new must outlive the server. */
typedef struct rpc_method {
    const char *path;          /* "/package.Service/Method" */
    int client_streaming;      /* requests are read with rpc_call_recv (bidi/client streams) */
    size_t call_size;          /* size of the handler's struct, which starts with rpc_call */
    void *arg;                 /* handler context, reachable as rpc_call_arg() */
    /* A client called. request is the first message (NULL for client-streaming methods),
     * borrowed for the duration of this callback. The handler must eventually call
     * rpc_call_finish (or learn of the call's death through cancelled). */
    void (*start)(rpc_call *c, grpc_byte_buffer *request);
    /* A message passed to rpc_call_send left (ok) or could not be sent (!ok: the call
     * is dying; cancelled follows). Optional. */
    void (*sent)(rpc_call *c, int ok);
    /* Client-streaming: the next message (NULL at the end of the client's stream). The
     * handler owns msg. Optional. */
    void (*received)(rpc_call *c, grpc_byte_buffer *msg);
    /* The call ended (client cancelled, deadline passed, server shut down) before the
     * handler finished it. The handler must drop every pointer to c; it must not call
     * rpc_call_send/finish afterwards. Optional. */
    void (*cancelled)(rpc_call *c);
    /* Last call before c is freed: release what the handler's struct owns. Optional. */
    void (*destroy)(rpc_call *c);
} rpc_method;

enum rpc_call_state { RPC_CALL_REQUESTED, RPC_CALL_ACTIVE, RPC_CALL_FINISHING };

struct rpc_call {
    rpc_server *srv;
    const rpc_method *method;  /* NULL: a method nobody registered */
    enum rpc_call_state state;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array request_md;
    grpc_call_details details;   /* filled for unregistered methods only */
    grpc_byte_buffer *payload;   /* the request, for registered unary-request methods */
    int64_t deadline_mono_ns;    /* INT64_MAX when the client set none */

    int pending;                 /* operation batches in gRPC's hands */
    int holds;                   /* rpc_call_hold: work elsewhere that will come back to it */
    int close_cancelled;         /* RECV_CLOSE_ON_SERVER said the call was cancelled */
    int closed;                  /* RECV_CLOSE_ON_SERVER completed */
    int initial_md_sent;
    grpc_byte_buffer *send_bb;   /* the message in flight, destroyed on completion */
    grpc_byte_buffer *recv_bb;   /* the message being received */
    uint8_t *finish_details;     /* packed google.rpc.Status waiting to be sent */
    size_t finish_details_len;
    grpc_status_code finish_code;
    char *finish_message;
    grpc_byte_buffer *finish_bb; /* last message sent with the status */
    int finish_queued;           /* finish waits for the message in flight */

    rpc_tag new_tag, close_tag, send_tag, recv_tag, status_tag;
    grpc_slice status_slice;
    grpc_metadata trailer;
    list_node link;              /* rpc_server.calls: every ACTIVE or FINISHING call */
};

typedef struct rpc_server_opts {
    const char *listen;              /* "host:port"; port 0 picks a free one */
    size_t max_receive_bytes;
    const rpc_method *const *methods;
    size_t n_methods;
} rpc_server_opts;

/* Creates, binds and starts the server; its completions are handled on loop. Returns NULL
 * with a message in err on failure (e.g. the port is taken: SO_REUSEPORT is off). */
rpc_server *rpc_server_new(struct ev_loop *loop, const rpc_server_opts *o, char *err, size_t errlen);
int rpc_server_port(const rpc_server *s);
size_t rpc_server_active_calls(const rpc_server *s);

/* Stops taking calls (new ones get UNAVAILABLE from gRPC). Then, after cancel_all_after
 * seconds (0: at once), cancels the calls still open. done(arg) runs on the loop once every
 * call is gone and the completion queue is drained; rpc_server_free may follow. */
void rpc_server_shutdown(rpc_server *s, double cancel_all_after, void (*done)(void *), void *arg);
/* Frees a server that was shut down (or never started serving). */
void rpc_server_free(rpc_server *s);

/* Handler API, loop thread only. */
void *rpc_call_arg(const rpc_call *c);
int rpc_call_sending(const rpc_call *c);
/* Sends one stream message; takes bb. Only one message may be in flight (check
 * rpc_call_sending; method->sent reports completion). */
void rpc_call_send(rpc_call *c, grpc_byte_buffer *bb);
/* Client-streaming: asks for the next message (method->received delivers it). */
void rpc_call_recv(rpc_call *c);
/* Ends the call with st (NULL: OK), after last (may be NULL; taken) if given. If a message
 * is in flight, the status follows it. The call is then the rpc layer's to free. */
void rpc_call_finish(rpc_call *c, const rpcstatus *st, grpc_byte_buffer *last);
/* rpc_call_finish with a fresh status carrying ErrorInfo{reason}. */
void rpc_call_fail(rpc_call *c, grpc_status_code code, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Keeps c allocated while something outside gRPC (e.g. a store read) will call back with
 * it; every hold is paired with a release, after which c may be freed. A held call may
 * have ended meanwhile: check rpc_call_active before using it. */
void rpc_call_hold(rpc_call *c);
void rpc_call_release(rpc_call *c);
int rpc_call_active(const rpc_call *c);

/* Value of a request header (lowercase key), or NULL. */
const char *rpc_call_header(const rpc_call *c, const char *key, size_t *len);

#endif
