/* gRPC server reflection (grpc.reflection.v1 and v1alpha ServerReflectionInfo), which lets
 * grpcurl and other generic clients use batchd without its .proto files. Answers come from
 * the FileDescriptorSet protoc wrote at build time (embedded as batchd_descriptor_set and
 * indexed by descset.c); nothing here describes a type by hand.
 *
 * The stream is a strict ping-pong: read one request, send its answer, read the next once
 * the answer has left. So at most one message is in flight and a client that sends fast but
 * reads slowly stalls itself, not the server. The client's half-close ends the call with OK.
 *
 * v1alpha's messages are v1's with another package name (same fields, same numbers), so one
 * set of generated types serves both paths. Failures to answer a request are reported the
 * reflection way, as an ErrorResponse inside the stream; only an undecodable request or the
 * server's shutdown end the call with a status. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "descset.h"
#include "pbgrpc.h"
#include "pbtime.h"
#include "rpcs.h"

#include "grpc/reflection/v1/reflection.pb-c.h"

extern const unsigned char batchd_descriptor_set[];
extern const size_t batchd_descriptor_set_len;

typedef Grpc__Reflection__V1__ServerReflectionRequest refl_request;
typedef Grpc__Reflection__V1__ServerReflectionResponse refl_response;
#define REQ_CASE(x) GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##x
#define RESP_CASE(x) GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x

/* The app's reflection state (app->reflection). */
typedef struct reflection {
    descset *ds;
    list_node calls;            /* refl_call.link: open streams, ended at shutdown */
} reflection;

typedef enum refl_state {
    REFL_READING,   /* a receive is outstanding */
    REFL_ANSWERING, /* an answer is in flight; the next receive starts when it has left */
    REFL_DONE,      /* finished or cancelled */
} refl_state;

typedef struct refl_call {
    rpc_call base;              /* first: the rpc layer allocates and frees the whole struct */
    refl_state state;
    list_node link;             /* reflection.calls until DONE */
} refl_call;

/* One answer being built: the parts the response points at live here until it is packed. */
typedef struct answer {
    refl_response resp;
    Grpc__Reflection__V1__FileDescriptorResponse files;
    Grpc__Reflection__V1__ExtensionNumberResponse extensions;
    Grpc__Reflection__V1__ListServiceResponse services;
    Grpc__Reflection__V1__ErrorResponse error;
    char error_message[320];
    ProtobufCBinaryData *file_bytes;
    Grpc__Reflection__V1__ServiceResponse *service_list;
    Grpc__Reflection__V1__ServiceResponse **service_ptrs;
    char **service_names;
} answer;

/* Client-given names are echoed in error messages only when short printable ASCII, so the
 * answer stays valid UTF-8 whatever was asked. */
static const char *shown(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= 200 || (unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e)
            return "(unprintable name)";
    return s;
}

static void answer_error(answer *an, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void answer_error(answer *an, grpc_status_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(an->error_message, sizeof an->error_message, fmt, ap);
    va_end(ap);
    an->error.error_code = (int32_t)code;
    an->error.error_message = an->error_message;
    an->resp.message_response_case = RESP_CASE(ERROR_RESPONSE);
    an->resp.error_response = &an->error;
}

/* The file and its dependencies, as protoc's bytes (borrowed from the embedded set). */
static int answer_file(answer *an, const descset *ds, int file)
{
    size_t n;
    const size_t *closure = descset_closure(ds, (size_t)file, &n);
    if ((an->file_bytes = calloc(n, sizeof *an->file_bytes)) == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const uint8_t *data = descset_file_bytes(ds, closure[i], &len);
        an->file_bytes[i] = (ProtobufCBinaryData){len, (uint8_t *)data};
    }
    an->files.n_file_descriptor_proto = n;
    an->files.file_descriptor_proto = an->file_bytes;
    an->resp.message_response_case = RESP_CASE(FILE_DESCRIPTOR_RESPONSE);
    an->resp.file_descriptor_response = &an->files;
    return 0;
}

/* Every service with a method registered on this server, in table order: derived from the
 * method table so that the list cannot drift from what is served (e.g. --no-reflection). */
static int answer_services(answer *an, const app *a)
{
    size_t n = 0;
    if ((an->service_names = calloc(a->n_methods, sizeof *an->service_names)) == NULL ||
        (an->service_list = calloc(a->n_methods, sizeof *an->service_list)) == NULL ||
        (an->service_ptrs = calloc(a->n_methods, sizeof *an->service_ptrs)) == NULL)
        return -1;
    for (size_t i = 0; i < a->n_methods; i++) {
        const char *path = a->method_ptrs[i]->path + 1; /* "/pkg.Service/Method" */
        const char *slash = strchr(path, '/');
        size_t len = slash ? (size_t)(slash - path) : strlen(path);
        size_t k = 0;
        while (k < n && !(strlen(an->service_names[k]) == len && memcmp(an->service_names[k], path, len) == 0))
            k++;
        if (k < n)
            continue;
        if ((an->service_names[n] = strndup(path, len)) == NULL)
            return -1;
        an->service_list[n] = (Grpc__Reflection__V1__ServiceResponse)GRPC__REFLECTION__V1__SERVICE_RESPONSE__INIT;
        an->service_list[n].name = an->service_names[n];
        an->service_ptrs[n] = &an->service_list[n];
        n++;
    }
    an->services.n_service = n;
    an->services.service = an->service_ptrs;
    an->resp.message_response_case = RESP_CASE(LIST_SERVICES_RESPONSE);
    an->resp.list_services_response = &an->services;
    return 0;
}

static void answer_free(answer *an, const app *a)
{
    free(an->file_bytes);
    free(an->extensions.extension_number);
    for (size_t i = 0; an->service_names && i < a->n_methods; i++)
        free(an->service_names[i]);
    free(an->service_names);
    free(an->service_list);
    free(an->service_ptrs);
}

/* The packed answer to req, or NULL when out of memory. */
static grpc_byte_buffer *respond(const app *a, const refl_request *req)
{
    const descset *ds = a->reflection->ds;
    answer an = {
        .resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT,
        .files = GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT,
        .extensions = GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT,
        .services = GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT,
        .error = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT,
    };
    /* Echoed as the protocol defines: clients match answers to requests with them. */
    an.resp.valid_host = req->host;
    an.resp.original_request = (refl_request *)req;
    int rc = 0, file;
    switch (req->message_request_case) {
    case REQ_CASE(FILE_BY_FILENAME):
        if ((file = descset_find_file(ds, req->file_by_filename)) < 0)
            answer_error(&an, GRPC_STATUS_NOT_FOUND, "file not found: %s", shown(req->file_by_filename));
        else
            rc = answer_file(&an, ds, file);
        break;
    case REQ_CASE(FILE_CONTAINING_SYMBOL):
        if ((file = descset_find_symbol(ds, req->file_containing_symbol, NULL)) < 0)
            answer_error(&an, GRPC_STATUS_NOT_FOUND, "symbol not found: %s",
                         shown(req->file_containing_symbol));
        else
            rc = answer_file(&an, ds, file);
        break;
    case REQ_CASE(FILE_CONTAINING_EXTENSION): {
        const Grpc__Reflection__V1__ExtensionRequest *e = req->file_containing_extension;
        if (e == NULL || (file = descset_find_extension(ds, e->containing_type, e->extension_number)) < 0)
            answer_error(&an, GRPC_STATUS_NOT_FOUND, "extension %d of %s not found",
                         e ? (int)e->extension_number : 0, shown(e ? e->containing_type : ""));
        else
            rc = answer_file(&an, ds, file);
        break;
    }
    case REQ_CASE(ALL_EXTENSION_NUMBERS_OF_TYPE): {
        int r = descset_extension_numbers(ds, req->all_extension_numbers_of_type,
                                          &an.extensions.extension_number, &an.extensions.n_extension_number);
        if (r == -2) {
            rc = -1;
        } else if (r < 0) {
            answer_error(&an, GRPC_STATUS_NOT_FOUND, "message type not found: %s",
                         shown(req->all_extension_numbers_of_type));
        } else {
            an.extensions.base_type_name = req->all_extension_numbers_of_type;
            an.resp.message_response_case = RESP_CASE(ALL_EXTENSION_NUMBERS_RESPONSE);
            an.resp.all_extension_numbers_response = &an.extensions;
        }
        break;
    }
    case REQ_CASE(LIST_SERVICES):
        rc = answer_services(&an, a);
        break;
    default:
        /* No request kind set, or one newer than this server (protobuf-c keeps it as an
         * unknown field): what the C++ server answers too. */
        answer_error(&an, GRPC_STATUS_UNIMPLEMENTED, "request kind not supported");
        break;
    }
    grpc_byte_buffer *bb = rc == 0 ? pbgrpc_pack(&an.resp.base) : NULL;
    answer_free(&an, a);
    return bb;
}

/* ---- the stream ----------------------------------------------------------------------- */

static void detach(refl_call *rc)
{
    if (rc->state == REFL_DONE)
        return;
    rc->state = REFL_DONE;
    list_remove(&rc->link);
}

static void refl_received(rpc_call *c, grpc_byte_buffer *msg)
{
    refl_call *rc = (refl_call *)c;
    app *a = rpc_call_arg(c);
    if (rc->state != REFL_READING) {
        if (msg)
            grpc_byte_buffer_destroy(msg);
        return;
    }
    if (msg == NULL) { /* the client half-closed: every request was answered */
        detach(rc);
        rpc_call_finish(c, NULL, NULL);
        return;
    }
    refl_request *req =
        (refl_request *)pbgrpc_unpack(&grpc__reflection__v1__server_reflection_request__descriptor, msg);
    grpc_byte_buffer_destroy(msg);
    if (req == NULL) {
        detach(rc);
        rpc_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "MALFORMED_REQUEST",
                      "the request is not a valid ServerReflectionRequest message");
        return;
    }
    grpc_byte_buffer *bb = respond(a, req);
    grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
    if (bb == NULL) {
        detach(rc);
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory answering reflection");
        if (st) {
            rpcstatus_retry_after(st, PBTIME_NS_PER_SEC);
            rpcstatus_error_info(st, "OUT_OF_MEMORY");
        }
        rpc_call_finish(c, st, NULL);
        rpcstatus_free(st);
        return;
    }
    rc->state = REFL_ANSWERING;
    rpc_call_send(c, bb);
}

static void refl_sent(rpc_call *c, int ok)
{
    refl_call *rc = (refl_call *)c;
    if (!ok || rc->state != REFL_ANSWERING)
        return; /* !ok: the call is dying, cancelled follows */
    rc->state = REFL_READING;
    rpc_call_recv(c);
}

static void refl_cancelled(rpc_call *c) { detach((refl_call *)c); }

static void refl_start(rpc_call *c, grpc_byte_buffer *req)
{
    refl_call *rc = (refl_call *)c;
    app *a = rpc_call_arg(c);
    list_push_back(&a->reflection->calls, &rc->link);
    rc->state = REFL_READING;
    rpc_call_recv(c);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

int rpc_reflection_register(app *a, char *err, size_t errlen)
{
    char why[256];
    reflection *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    list_init(&r->calls);
    r->ds = descset_new(batchd_descriptor_set, batchd_descriptor_set_len, why, sizeof why);
    if (r->ds == NULL) {
        /* A build defect, not a runtime condition: refuse to start rather than serve a
         * reflection that lies. --no-reflection still starts. */
        snprintf(err, errlen, "server reflection: %s", why);
        free(r);
        return -1;
    }
    a->reflection = r;
    static const char *const paths[] = {
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    };
    static const enum app_method slots[] = {APP_REFLECTION_V1, APP_REFLECTION_V1ALPHA};
    for (size_t i = 0; i < 2; i++) {
        a->methods[slots[i]] = (rpc_method){
            .path = paths[i],
            .client_streaming = 1,
            .call_size = sizeof(refl_call),
            .start = refl_start,
            .sent = refl_sent,
            .received = refl_received,
            .cancelled = refl_cancelled,
        };
    }
    return 0;
}

void rpc_reflection_release_all(app *a)
{
    if (a->reflection == NULL)
        return;
    list_node *pos, *tmp;
    list_foreach_safe(pos, tmp, &a->reflection->calls) {
        refl_call *rc = container_of(pos, refl_call, link);
        detach(rc);
        /* An answer in flight still reaches the client: the status queues behind it. */
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_UNAVAILABLE, "batchd is shutting down");
        if (st) {
            rpcstatus_retry_after(st, PBTIME_NS_PER_SEC);
            rpcstatus_error_info(st, "SHUTTING_DOWN");
        }
        rpc_call_finish(&rc->base, st, NULL);
        rpcstatus_free(st);
    }
}

void rpc_reflection_free(app *a)
{
    if (a->reflection == NULL)
        return;
    descset_free(a->reflection->ds);
    free(a->reflection);
    a->reflection = NULL;
}
