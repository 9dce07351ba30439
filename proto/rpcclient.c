/* Synchronous gRPC client calls on per-call pluck completion queues. */
#include "rpcclient.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdlib.h>
#include <string.h>

#include "pbgrpc.h"

struct rpcclient {
    grpc_channel *channel;
};

struct rpcclient_stream {
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice status_details;
    const char *error_string;
    int started_ok;
    int recv_pending;             /* a RECV_MESSAGE batch is outstanding */
    int recv_tag;                 /* its address is the RECV_MESSAGE tag */
    grpc_byte_buffer *recv;
    int ended;
};

void rpcclient_status_clear(rpcclient_status *st)
{
    if (st == NULL)
        return;
    free(st->message);
    if (st->details)
        google__rpc__status__free_unpacked(st->details, NULL);
    memset(st, 0, sizeof *st);
}

rpcclient *rpcclient_new(const char *target)
{
    grpc_init();
    rpcclient *c = calloc(1, sizeof *c);
    if (c == NULL)
        abort();
    grpc_arg args[1] = {{GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = -1}}};
    grpc_channel_args cargs = {1, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    c->channel = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    return c;
}

void rpcclient_free(rpcclient *c)
{
    if (c == NULL)
        return;
    grpc_channel_destroy(c->channel);
    free(c);
    grpc_shutdown();
}

static gpr_timespec deadline_in(double s)
{
    if (s <= 0)
        return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis((int64_t)(s * 1000), GPR_TIMESPAN));
}

static int run_batch(rpcclient_stream *s, const grpc_op *ops, size_t n, gpr_timespec until)
{
    void *tag = (void *)ops;
    if (grpc_call_start_batch(s->call, ops, n, tag, NULL) != GRPC_CALL_OK)
        return -1;
    grpc_event ev = grpc_completion_queue_pluck(s->cq, tag, until, NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT)
        return -2;
    return ev.success ? 0 : -1;
}

static void fill_status(rpcclient_stream *s, rpcclient_status *st)
{
    if (st == NULL)
        return;
    memset(st, 0, sizeof *st);
    st->code = s->status;
    st->message = grpc_slice_to_c_string(s->status_details);
    char *m = strdup(st->message);
    gpr_free(st->message);
    st->message = m ? m : strdup("");
    for (size_t i = 0; i < s->trailing_md.count; i++) {
        grpc_metadata *md = &s->trailing_md.metadata[i];
        if (grpc_slice_str_cmp(md->key, "grpc-status-details-bin") == 0) {
            st->details = google__rpc__status__unpack(NULL, GRPC_SLICE_LENGTH(md->value),
                                                      GRPC_SLICE_START_PTR(md->value));
            break;
        }
    }
}

static rpcclient_stream *stream_open(rpcclient *c, const char *method, grpc_byte_buffer *bb, double timeout_s)
{
    rpcclient_stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        abort();
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice m = grpc_slice_from_copied_string(method);
    s->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, m, NULL,
                                       deadline_in(timeout_s), NULL);
    grpc_slice_unref(m);
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    s->status_details = grpc_empty_slice();

    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
    s->started_ok = run_batch(s, ops, 4, gpr_inf_future(GPR_CLOCK_REALTIME)) == 0;
    grpc_byte_buffer_destroy(bb);
    return s;
}

rpcclient_stream *rpcclient_stream_open(rpcclient *c, const char *method, const ProtobufCMessage *req,
                                        double timeout_s)
{
    return stream_open(c, method, pbgrpc_pack(req), timeout_s);
}

int rpcclient_stream_next(rpcclient_stream *s, const ProtobufCMessageDescriptor *desc,
                          ProtobufCMessage **msg, double wait_s)
{
    *msg = NULL;
    if (!s->started_ok || s->ended)
        return 0;
    if (!s->recv_pending) {
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &s->recv;
        if (grpc_call_start_batch(s->call, &op, 1, &s->recv_tag, NULL) != GRPC_CALL_OK) {
            s->ended = 1;
            return 0;
        }
        s->recv_pending = 1;
    }
    gpr_timespec until = wait_s > 0 ? deadline_in(wait_s) : gpr_inf_future(GPR_CLOCK_REALTIME);
    grpc_event ev = grpc_completion_queue_pluck(s->cq, &s->recv_tag, until, NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT)
        return -2;
    s->recv_pending = 0;
    if (!ev.success || s->recv == NULL) {
        s->ended = 1;
        return 0;
    }
    *msg = pbgrpc_unpack(desc, s->recv);
    grpc_byte_buffer_destroy(s->recv);
    s->recv = NULL;
    return *msg ? 1 : -1;
}

void rpcclient_stream_cancel(rpcclient_stream *s)
{
    grpc_call_cancel(s->call, NULL);
}

grpc_status_code rpcclient_stream_finish(rpcclient_stream *s, rpcclient_status *st)
{
    if (s->recv_pending) { /* the caller stopped reading mid-stream: end the call */
        grpc_call_cancel(s->call, NULL);
        grpc_completion_queue_pluck(s->cq, &s->recv_tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        s->recv_pending = 0;
    }
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    op.data.recv_status_on_client.status = &s->status;
    op.data.recv_status_on_client.status_details = &s->status_details;
    op.data.recv_status_on_client.error_string = &s->error_string;
    if (run_batch(s, &op, 1, gpr_inf_future(GPR_CLOCK_REALTIME)) < 0) {
        s->status = GRPC_STATUS_INTERNAL;
    }
    fill_status(s, st);
    grpc_status_code code = s->status;
    if (s->recv)
        grpc_byte_buffer_destroy(s->recv);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_slice_unref(s->status_details);
    if (s->error_string)
        gpr_free((void *)s->error_string);
    grpc_call_unref(s->call);
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_pluck(s->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(s->cq);
    free(s);
    return code;
}

static grpc_status_code unary(rpcclient *c, const char *method, grpc_byte_buffer *req,
                              const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                              double timeout_s, rpcclient_status *st)
{
    *resp = NULL;
    rpcclient_stream *s = stream_open(c, method, req, timeout_s);
    ProtobufCMessage *m = NULL;
    int r = rpcclient_stream_next(s, resp_desc, &m, 0);
    if (r == 1) {
        /* A unary answer has one message; read to the end so the status arrives. */
        ProtobufCMessage *extra = NULL;
        if (rpcclient_stream_next(s, resp_desc, &extra, 0) != 0 && extra)
            protobuf_c_message_free_unpacked(extra, NULL);
    }
    grpc_status_code code = rpcclient_stream_finish(s, st);
    if (code == GRPC_STATUS_OK && m == NULL) {
        code = GRPC_STATUS_INTERNAL; /* OK without a decodable answer breaks the protocol */
        if (st) {
            st->code = code;
            free(st->message);
            st->message = strdup(r == -1 ? "the answer could not be decoded" : "the server sent no answer");
        }
    }
    if (code == GRPC_STATUS_OK)
        *resp = m;
    else if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return code;
}

grpc_status_code rpcclient_unary(rpcclient *c, const char *method, const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                                 double timeout_s, rpcclient_status *st)
{
    return unary(c, method, pbgrpc_pack(req), resp_desc, resp, timeout_s, st);
}

grpc_status_code rpcclient_unary_raw(rpcclient *c, const char *method, const void *req, size_t req_len,
                                     const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                                     double timeout_s, rpcclient_status *st)
{
    return unary(c, method, pbgrpc_from_bytes(req, req_len), resp_desc, resp, timeout_s, st);
}
