/* A small synchronous gRPC client over gRPC core: unary calls and server streams with
 * protobuf-c messages, and the rich status (google.rpc.Status details) of failures.
 * Used by batchctl and the tests. Each call has its own completion queue, so different
 * threads may make calls on one client at once. */
#ifndef BATCHD_RPCCLIENT_H
#define BATCHD_RPCCLIENT_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "google/rpc/status.pb-c.h"

typedef struct rpcclient rpcclient;
typedef struct rpcclient_stream rpcclient_stream;

typedef struct rpcclient_status {
    grpc_status_code code;
    char *message;                /* malloc'd, never NULL after a call */
    Google__Rpc__Status *details; /* from grpc-status-details-bin, or NULL */
} rpcclient_status;

/* Frees what a call put in st. */
void rpcclient_status_clear(rpcclient_status *st);

/* A channel to target ("host:port"). Holds its own grpc_init. Never NULL. */
rpcclient *rpcclient_new(const char *target);
void rpcclient_free(rpcclient *c);

/* Calls method ("/pkg.Service/Method") with req. timeout_s <= 0: no deadline. Returns the
 * status code; on OK *resp is the answer (free with protobuf_c_message_free_unpacked).
 * st (optional) receives the status either way. */
grpc_status_code rpcclient_unary(rpcclient *c, const char *method, const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                                 double timeout_s, rpcclient_status *st);

/* rpcclient_unary with the request given as already packed bytes. */
grpc_status_code rpcclient_unary_raw(rpcclient *c, const char *method, const void *req, size_t req_len,
                                     const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                                     double timeout_s, rpcclient_status *st);

/* Starts a server-streaming call. Never NULL; failures show in next/finish. */
rpcclient_stream *rpcclient_stream_open(rpcclient *c, const char *method, const ProtobufCMessage *req,
                                        double timeout_s);
/* Waits for the next message: 1 with *msg set (caller frees), 0 at the end of the stream,
 * -1 when a message could not be decoded. wait_s > 0 bounds the wait: -2 on timeout (the
 * stream is still usable). */
int rpcclient_stream_next(rpcclient_stream *s, const ProtobufCMessageDescriptor *desc,
                          ProtobufCMessage **msg, double wait_s);
/* Cancels the call (the server sees CANCELLED). */
void rpcclient_stream_cancel(rpcclient_stream *s);
/* Reads the final status (after next returned 0, or cancel) and frees the stream. */
grpc_status_code rpcclient_stream_finish(rpcclient_stream *s, rpcclient_status *st);

#endif
