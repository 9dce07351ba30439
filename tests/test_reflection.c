/* Server reflection: the descriptor index on its own (descset), then
 * grpc.reflection.v1 / v1alpha ServerReflectionInfo end to end through a bidi client written
 * here on gRPC core (the project's rpcclient only does unary and server streams). */
#include <criterion/criterion.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "descset.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "harness.h"
#include "pbgrpc.h"

#define M_REFL_V1 "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
#define M_REFL_V1ALPHA "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
#define RESP_CASE(x) GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x

typedef Grpc__Reflection__V1__ServerReflectionRequest refl_req;
typedef Grpc__Reflection__V1__ServerReflectionResponse refl_resp;

extern const unsigned char batchd_descriptor_set[];
extern const size_t batchd_descriptor_set_len;

/* ---- a bidi client ---------------------------------------------------------------------- */

typedef struct bidi {
    grpc_channel *ch;
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata_array initial_md, trailing_md;
    int got_initial_md;
} bidi;

static void run(bidi *b, const grpc_op *ops, size_t n, int must_succeed)
{
    cr_assert_eq(grpc_call_start_batch(b->call, ops, n, (void *)ops, NULL), GRPC_CALL_OK);
    gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(20, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_pluck(b->cq, (void *)ops, until, NULL);
    cr_assert_eq(ev.type, GRPC_OP_COMPLETE, "no answer within 20s");
    if (must_succeed)
        cr_assert(ev.success, "batch failed");
}

static bidi *bidi_open(const char *addr, const char *method)
{
    grpc_init();
    bidi *b = calloc(1, sizeof *b);
    cr_assert_not_null(b);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    b->ch = grpc_channel_create(addr, creds, NULL);
    grpc_channel_credentials_release(creds);
    b->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice m = grpc_slice_from_copied_string(method);
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(60, GPR_TIMESPAN));
    b->call = grpc_channel_create_call(b->ch, NULL, GRPC_PROPAGATE_DEFAULTS, b->cq, m, NULL, deadline, NULL);
    grpc_slice_unref(m);
    grpc_metadata_array_init(&b->initial_md);
    grpc_metadata_array_init(&b->trailing_md);
    grpc_op op = {0};
    op.op = GRPC_OP_SEND_INITIAL_METADATA;
    run(b, &op, 1, 1);
    return b;
}

/* Sends bytes as one message and waits for one answer: its bytes (caller destroys), or NULL
 * when the server ended the stream instead. */
static grpc_byte_buffer *bidi_ask_bytes(bidi *b, const void *data, size_t len)
{
    grpc_byte_buffer *out = pbgrpc_from_bytes(data, len), *in = NULL;
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = out;
    if (!b->got_initial_md) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &b->initial_md;
        b->got_initial_md = 1;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &in;
    run(b, ops, n, 0);
    grpc_byte_buffer_destroy(out);
    return in;
}

/* One request, one ServerReflectionResponse (v1 types; v1alpha's are wire-identical). */
static refl_resp *bidi_ask(bidi *b, const refl_req *req)
{
    size_t len;
    uint8_t *data = pbgrpc_pack_bytes(&req->base, &len);
    grpc_byte_buffer *in = bidi_ask_bytes(b, data, len);
    free(data);
    cr_assert_not_null(in, "the stream ended instead of answering");
    refl_resp *r = (refl_resp *)pbgrpc_unpack(&grpc__reflection__v1__server_reflection_response__descriptor, in);
    grpc_byte_buffer_destroy(in);
    cr_assert_not_null(r, "undecodable ServerReflectionResponse");
    return r;
}

/* Ends the call (half-closing first when asked) and returns its status; st gets the
 * details. Frees b. */
static grpc_status_code bidi_finish(bidi *b, int half_close, rpcclient_status *st)
{
    grpc_status_code code;
    grpc_slice details;
    const char *error_string = NULL;
    grpc_byte_buffer *in = NULL;
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (half_close)
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    if (!b->got_initial_md) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &b->initial_md;
    }
    ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[n].data.recv_status_on_client.trailing_metadata = &b->trailing_md;
    ops[n].data.recv_status_on_client.status = &code;
    ops[n].data.recv_status_on_client.status_details = &details;
    ops[n++].data.recv_status_on_client.error_string = &error_string;
    run(b, ops, n, 1);
    /* The server sends nothing after the status: a last read must see the end. */
    grpc_op rd = {0};
    rd.op = GRPC_OP_RECV_MESSAGE;
    rd.data.recv_message.recv_message = &in;
    run(b, &rd, 1, 0);
    cr_assert_null(in, "a message after the status");
    memset(st, 0, sizeof *st);
    st->code = code;
    char *m = grpc_slice_to_c_string(details);
    st->message = strdup(m);
    gpr_free(m);
    for (size_t i = 0; i < b->trailing_md.count; i++)
        if (grpc_slice_str_cmp(b->trailing_md.metadata[i].key, "grpc-status-details-bin") == 0)
            st->details = google__rpc__status__unpack(NULL, GRPC_SLICE_LENGTH(b->trailing_md.metadata[i].value),
                                                      GRPC_SLICE_START_PTR(b->trailing_md.metadata[i].value));
    grpc_slice_unref(details);
    gpr_free((void *)error_string);
    grpc_metadata_array_destroy(&b->initial_md);
    grpc_metadata_array_destroy(&b->trailing_md);
    grpc_call_unref(b->call);
    grpc_completion_queue_shutdown(b->cq);
    while (grpc_completion_queue_pluck(b->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(b->cq);
    grpc_channel_destroy(b->ch);
    free(b);
    grpc_shutdown();
    return code;
}

static void bidi_close_ok(bidi *b)
{
    rpcclient_status st;
    cr_assert_eq(bidi_finish(b, 1, &st), GRPC_STATUS_OK, "half-close ends the stream with OK: %s", st.message);
    rpcclient_status_clear(&st);
}

static refl_resp *ask_symbol(bidi *b, const char *symbol)
{
    refl_req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    req.file_containing_symbol = (char *)symbol;
    return bidi_ask(b, &req);
}

static refl_resp *ask_file(bidi *b, const char *name)
{
    refl_req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
    req.file_by_filename = (char *)name;
    return bidi_ask(b, &req);
}

/* ---- checks on answers ------------------------------------------------------------------- */

/* protoc's descriptor set as the build wrote it to disk, to compare answers with. */
static uint8_t *read_build_set(size_t *len)
{
    const char *path = BATCHD_BINARY_DIR "/proto/gen/batchd_descriptors.pb";
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)n);
    cr_assert_eq(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return data;
}

/* A file answer: its first file is want_first; every file is a verbatim slice of protoc's
 * set; every import of every file is in the answer, after the importer except for the first
 * file, whose imports all follow it; no file twice. Returns the number of files. */
static size_t check_files(const refl_resp *r, const char *want_first)
{
    cr_assert_eq(r->message_response_case, RESP_CASE(FILE_DESCRIPTOR_RESPONSE), "case %d (error %s)",
                 r->message_response_case,
                 r->message_response_case == RESP_CASE(ERROR_RESPONSE) ? r->error_response->error_message : "-");
    const Grpc__Reflection__V1__FileDescriptorResponse *f = r->file_descriptor_response;
    size_t n = f->n_file_descriptor_proto, set_len;
    cr_assert_gt(n, 0);
    uint8_t *set = read_build_set(&set_len);
    Google__Protobuf__FileDescriptorProto **fds = calloc(n, sizeof *fds);
    for (size_t i = 0; i < n; i++) {
        const ProtobufCBinaryData *b = &f->file_descriptor_proto[i];
        cr_assert(memmem(set, set_len, b->data, b->len) != NULL, "file %zu is not protoc's bytes", i);
        fds[i] = google__protobuf__file_descriptor_proto__unpack(NULL, b->len, b->data);
        cr_assert_not_null(fds[i]);
        for (size_t k = 0; k < i; k++)
            cr_assert_str_neq(fds[k]->name, fds[i]->name, "%s sent twice", fds[i]->name);
    }
    cr_assert_str_eq(fds[0]->name, want_first);
    for (size_t i = 0; i < n; i++) {
        for (size_t d = 0; d < fds[i]->n_dependency; d++) {
            size_t at = 0;
            while (at < n && strcmp(fds[at]->name, fds[i]->dependency[d]) != 0)
                at++;
            cr_assert_lt(at, n, "%s imports %s, which is missing", fds[i]->name, fds[i]->dependency[d]);
            cr_assert(at >= 1 && (i == 0 || at < i), "%s comes before its import %s", fds[i]->name,
                      fds[i]->dependency[d]);
        }
    }
    for (size_t i = 0; i < n; i++)
        google__protobuf__file_descriptor_proto__free_unpacked(fds[i], NULL);
    free(fds);
    free(set);
    return n;
}

static void check_not_found(const refl_resp *r)
{
    cr_assert_eq(r->message_response_case, RESP_CASE(ERROR_RESPONSE), "case %d", r->message_response_case);
    cr_assert_eq(r->error_response->error_code, GRPC_STATUS_NOT_FOUND);
    cr_assert_gt(strlen(r->error_response->error_message), 0);
}

/* ---- the index alone ---------------------------------------------------------------------- */

Test(descset, indexes_the_embedded_set)
{
    char err[256];
    descset *d = descset_new(batchd_descriptor_set, batchd_descriptor_set_len, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    enum descset_kind kind;
    int f = descset_find_symbol(d, "batch.v1.BatchService.SubmitBatch", &kind);
    cr_assert_geq(f, 0);
    cr_assert_eq(kind, DESCSET_METHOD);
    cr_assert_str_eq(descset_file_name(d, (size_t)f), "batch/v1/batch.proto");
    cr_assert_eq(descset_find_symbol(d, "batch.v1.MODE_SYNC", &kind), f, "enum values are siblings of their enum");
    cr_assert_eq(kind, DESCSET_ENUM_VALUE);
    cr_assert_eq(descset_find_symbol(d, "batch.v1.Mode.MODE_SYNC", NULL), -1);
    cr_assert_eq(descset_find_symbol(d, "batch.v1", NULL), -1, "a package is not a symbol");
    for (size_t i = 0; i < descset_n_files(d); i++) {
        size_t n;
        const size_t *c = descset_closure(d, i, &n);
        cr_assert_eq(c[0], i);
        cr_assert_eq(descset_find_file(d, descset_file_name(d, i)), (int)i);
    }
    descset_free(d);
}

Test(descset, refuses_bytes_that_are_not_a_set)
{
    char err[256] = "";
    const uint8_t junk[] = {0x0a, 0x7f, 0x01}; /* field 1 claims 127 bytes, 1 follows */
    cr_assert_null(descset_new(junk, sizeof junk, err, sizeof err));
    cr_assert(strstr(err, "not a FileDescriptorSet"), "%s", err);
    cr_assert_null(descset_new(junk, 0, err, sizeof err));
    cr_assert(strstr(err, "no file"), "%s", err);
}

Test(descset, a_file_without_symbols_is_served_by_name)
{
    Google__Protobuf__FileDescriptorProto f = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT, *fp = &f;
    f.name = "empty.proto";
    Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    set.n_file = 1;
    set.file = &fp;
    size_t len;
    uint8_t *bytes = pbgrpc_pack_bytes(&set.base, &len);
    char err[256];
    descset *d = descset_new(bytes, len, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    cr_assert_eq(descset_find_file(d, "empty.proto"), 0);
    cr_assert_eq(descset_find_symbol(d, "anything", NULL), -1);
    size_t flen;
    const uint8_t *fb = descset_file_bytes(d, 0, &flen);
    cr_assert_eq(fb, bytes + 2, "a slice of the set itself: after field 1's tag and length");
    cr_assert_eq(flen, len - 2);
    descset_free(d);
    free(bytes);
}

/* A set built here: name, package, its imports, and one message per file. */
static uint8_t *make_set(size_t n, const char *const names[], const char *const deps[][3], const char *pkg,
                         const char *const msgs[], size_t *len)
{
    Google__Protobuf__FileDescriptorProto files[8], *ptrs[8];
    Google__Protobuf__DescriptorProto msg[8], *msg_ptr[8];
    cr_assert_leq(n, 8);
    for (size_t i = 0; i < n; i++) {
        files[i] = (Google__Protobuf__FileDescriptorProto)GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
        files[i].name = (char *)names[i];
        files[i].package = (char *)pkg;
        while (files[i].n_dependency < 3 && deps[i][files[i].n_dependency])
            files[i].n_dependency++;
        files[i].dependency = (char **)deps[i];
        msg[i] = (Google__Protobuf__DescriptorProto)GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
        msg[i].name = (char *)msgs[i];
        msg_ptr[i] = &msg[i];
        files[i].n_message_type = 1;
        files[i].message_type = &msg_ptr[i];
        ptrs[i] = &files[i];
    }
    Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    set.n_file = n;
    set.file = ptrs;
    return pbgrpc_pack_bytes(&set.base, len);
}

Test(descset, closure_lists_a_diamond_once_with_imports_first)
{
    const char *names[] = {"d.proto", "b.proto", "c.proto", "a.proto"};
    const char *const deps[][3] = {{"b.proto", "c.proto", NULL}, {"a.proto", NULL, NULL}, {"a.proto", NULL, NULL},
                                   {NULL, NULL, NULL}};
    const char *msgs[] = {"D", "B", "C", "A"};
    size_t len;
    uint8_t *set = make_set(4, names, deps, "p", msgs, &len);
    char err[256];
    descset *d = descset_new(set, len, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    size_t n;
    const size_t *c = descset_closure(d, 0, &n);
    cr_assert_eq(n, 4);
    const char *want[] = {"d.proto", "a.proto", "b.proto", "c.proto"};
    for (size_t i = 0; i < 4; i++)
        cr_assert_str_eq(descset_file_name(d, c[i]), want[i], "position %zu", i);
    cr_assert_eq(descset_find_symbol(d, ".p.A", NULL), 3);
    descset_free(d);
    free(set);
}

Test(descset, refuses_a_missing_import_and_a_symbol_defined_twice)
{
    const char *names[] = {"x.proto", "y.proto"};
    const char *const deps[][3] = {{"gone.proto", NULL, NULL}, {NULL, NULL, NULL}};
    const char *msgs[] = {"X", "Y"};
    size_t len;
    char err[256];
    uint8_t *set = make_set(1, names, deps, "p", msgs, &len);
    cr_assert_null(descset_new(set, len, err, sizeof err));
    cr_assert(strstr(err, "gone.proto"), "%s", err);
    free(set);

    const char *const no_deps[][3] = {{NULL, NULL, NULL}, {NULL, NULL, NULL}};
    const char *same[] = {"M", "M"};
    set = make_set(2, names, no_deps, "p", same, &len);
    cr_assert_null(descset_new(set, len, err, sizeof err));
    cr_assert(strstr(err, "p.M"), "%s", err);
    free(set);
}

Test(descset, indexes_extensions_by_extendee_and_number)
{
    Google__Protobuf__FieldDescriptorProto ext = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT, *ext_ptr = &ext;
    ext.name = "tag";
    ext.has_number = 1;
    ext.number = 50001;
    ext.extendee = ".p.Base";
    Google__Protobuf__DescriptorProto base = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT, *base_ptr = &base;
    base.name = "Base";
    Google__Protobuf__FileDescriptorProto f[2] = {GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT,
                                                  GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT};
    Google__Protobuf__FileDescriptorProto *fp[2] = {&f[0], &f[1]};
    char *dep = "base.proto";
    f[0].name = "base.proto";
    f[0].package = "p";
    f[0].n_message_type = 1;
    f[0].message_type = &base_ptr;
    f[1].name = "ext.proto";
    f[1].package = "q";
    f[1].n_dependency = 1;
    f[1].dependency = &dep;
    f[1].n_extension = 1;
    f[1].extension = &ext_ptr;
    Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    set.n_file = 2;
    set.file = fp;
    size_t len;
    uint8_t *bytes = pbgrpc_pack_bytes(&set.base, &len);
    char err[256];
    descset *d = descset_new(bytes, len, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    cr_assert_eq(descset_find_extension(d, "p.Base", 50001), 1);
    cr_assert_eq(descset_find_extension(d, ".p.Base", 50001), 1);
    cr_assert_eq(descset_find_extension(d, "p.Base", 50002), -1);
    enum descset_kind kind;
    cr_assert_eq(descset_find_symbol(d, "q.tag", &kind), 1);
    cr_assert_eq(kind, DESCSET_EXTENSION);
    int32_t *nums;
    size_t n;
    cr_assert_eq(descset_extension_numbers(d, "p.Base", &nums, &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(nums[0], 50001);
    free(nums);
    cr_assert_eq(descset_extension_numbers(d, "q.tag", &nums, &n), -1, "not a message");
    cr_assert_eq(descset_extension_numbers(d, "p.Nope", &nums, &n), -1);
    descset_free(d);
    free(bytes);
}

/* ---- end to end --------------------------------------------------------------------------- */

static void check_list_services(const char *method)
{
    harness *h = h_start(NULL);
    bidi *b = bidi_open(h->addr, method);
    refl_req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    req.list_services = "*";
    refl_resp *r = bidi_ask(b, &req);
    cr_assert_eq(r->message_response_case, RESP_CASE(LIST_SERVICES_RESPONSE));
    cr_assert_not_null(r->original_request);
    cr_assert_str_eq(r->original_request->list_services, "*");
    const char *want[] = {"batch.v1.BatchService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                          "grpc.reflection.v1alpha.ServerReflection"};
    cr_assert_eq(r->list_services_response->n_service, 4);
    for (size_t i = 0; i < 4; i++)
        cr_assert_str_eq(r->list_services_response->service[i]->name, want[i]);
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    bidi_close_ok(b);
    h_stop(h);
}

Test(reflection, v1_list_services_names_every_service)
{
    check_list_services(M_REFL_V1);
}

Test(reflection, v1alpha_list_services_names_every_service)
{
    check_list_services(M_REFL_V1ALPHA);
}

Test(reflection, v1alpha_answers_decode_as_v1alpha_messages)
{
    harness *h = h_start(NULL);
    Grpc__Reflection__V1alpha__ServerReflectionRequest req = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
    req.host = "localhost";
    req.message_request_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    req.file_containing_symbol = "grpc.health.v1.Health";
    ProtobufCMessage *resp = NULL;
    rpcclient_status st = {0};
    cr_assert_eq(rpcclient_unary(h->client, M_REFL_V1ALPHA, &req.base,
                                 &grpc__reflection__v1alpha__server_reflection_response__descriptor, &resp, 10, &st),
                 GRPC_STATUS_OK, "%s", st.message);
    Grpc__Reflection__V1alpha__ServerReflectionResponse *r = (Grpc__Reflection__V1alpha__ServerReflectionResponse *)resp;
    cr_assert_str_eq(r->valid_host, "localhost");
    cr_assert_eq(r->message_response_case,
                 GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
    cr_assert_eq(r->file_descriptor_response->n_file_descriptor_proto, 1, "health.proto imports nothing");
    Google__Protobuf__FileDescriptorProto *fd = google__protobuf__file_descriptor_proto__unpack(
        NULL, r->file_descriptor_response->file_descriptor_proto[0].len,
        r->file_descriptor_response->file_descriptor_proto[0].data);
    cr_assert_str_eq(fd->name, "grpc/health/v1/health.proto");
    cr_assert_str_eq(fd->service[0]->name, "Health");
    google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
    protobuf_c_message_free_unpacked(resp, NULL);
    rpcclient_status_clear(&st);
    h_stop(h);
}

Test(reflection, file_containing_symbol_resolves_every_kind_of_symbol)
{
    static const struct {
        const char *symbol, *file;
        size_t files; /* the file and its transitive imports */
    } cases[] = {
        {"batch.v1.BatchService", "batch/v1/batch.proto", 6},
        {"batch.v1.BatchService.SubmitBatch", "batch/v1/batch.proto", 6},
        {"batch.v1.SubmitBatchRequest", "batch/v1/batch.proto", 6},
        {".batch.v1.ItemResult", "batch/v1/batch.proto", 6},
        {"batch.v1.Operation.HeadersEntry", "batch/v1/batch.proto", 6},
        {"batch.v1.Operation.json", "batch/v1/batch.proto", 6},
        {"batch.v1.Operation.body", "batch/v1/batch.proto", 6},
        {"batch.v1.BatchState", "batch/v1/batch.proto", 6},
        {"batch.v1.BATCH_STATE_RUNNING", "batch/v1/batch.proto", 6},
        {"google.rpc.BadRequest.FieldViolation", "google/rpc/error_details.proto", 2},
        {"google.rpc.Status", "google/rpc/status.proto", 2},
        {"google.protobuf.Value", "google/protobuf/struct.proto", 1},
        {"google.protobuf.NullValue", "google/protobuf/struct.proto", 1},
        {"grpc.health.v1.Health", "grpc/health/v1/health.proto", 1},
        {"grpc.health.v1.Health.Watch", "grpc/health/v1/health.proto", 1},
        {"grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc/health/v1/health.proto", 1},
        {"grpc.reflection.v1.ServerReflection", "grpc/reflection/v1/reflection.proto", 1},
        {"grpc.reflection.v1alpha.ServerReflection.ServerReflectionInfo", "grpc/reflection/v1alpha/reflection.proto", 1},
    };
    harness *h = h_start(NULL);
    bidi *b = bidi_open(h->addr, M_REFL_V1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        refl_resp *r = ask_symbol(b, cases[i].symbol);
        cr_assert_eq(check_files(r, cases[i].file), cases[i].files, "%s", cases[i].symbol);
        cr_assert_str_eq(r->original_request->file_containing_symbol, cases[i].symbol);
        grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    }
    bidi_close_ok(b);
    h_stop(h);
}

Test(reflection, file_by_filename_answers_the_file_and_its_imports)
{
    harness *h = h_start(NULL);
    bidi *b = bidi_open(h->addr, M_REFL_V1);
    refl_resp *r = ask_file(b, "batch/v1/batch.proto");
    cr_assert_eq(check_files(r, "batch/v1/batch.proto"), 6);
    /* Source info (comments) survives: grpcurl's describe shows them. */
    Google__Protobuf__FileDescriptorProto *fd = google__protobuf__file_descriptor_proto__unpack(
        NULL, r->file_descriptor_response->file_descriptor_proto[0].len,
        r->file_descriptor_response->file_descriptor_proto[0].data);
    cr_assert_not_null(fd->source_code_info);
    cr_assert_gt(fd->source_code_info->n_location, 0);
    google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    r = ask_file(b, "google/protobuf/struct.proto");
    cr_assert_eq(check_files(r, "google/protobuf/struct.proto"), 1);
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    bidi_close_ok(b);
    h_stop(h);
}

Test(reflection, unknown_symbols_files_extensions_and_types_are_not_found_in_the_stream)
{
    harness *h = h_start(NULL);
    bidi *b = bidi_open(h->addr, M_REFL_V1);
    const char *symbols[] = {"batch.v1.Nope", "batch.v1", "batch.v1.BatchService.Nope", "", "batch.v1.Mode.MODE_SYNC"};
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        refl_resp *r = ask_symbol(b, symbols[i]);
        check_not_found(r);
        grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    }
    const char *files[] = {"nope.proto", "batch/v1/batch", "/batch/v1/batch.proto"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        refl_resp *r = ask_file(b, files[i]);
        check_not_found(r);
        grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    }
    Grpc__Reflection__V1__ExtensionRequest ext = GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
    ext.containing_type = "batch.v1.Operation";
    ext.extension_number = 100;
    refl_req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION;
    req.file_containing_extension = &ext;
    refl_resp *r = bidi_ask(b, &req);
    check_not_found(r);
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);

    req.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE;
    const char *not_types[] = {"batch.v1.Nope", "batch.v1.BatchService", "batch.v1.Mode"};
    for (size_t i = 0; i < sizeof not_types / sizeof not_types[0]; i++) {
        req.all_extension_numbers_of_type = (char *)not_types[i];
        r = bidi_ask(b, &req);
        check_not_found(r);
        grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    }
    /* The stream is still good after errors. */
    r = ask_symbol(b, "batch.v1.Batch");
    check_files(r, "batch/v1/batch.proto");
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    bidi_close_ok(b);
    h_stop(h);
}

Test(reflection, extension_numbers_of_a_known_message_is_an_empty_list)
{
    harness *h = h_start(NULL);
    bidi *b = bidi_open(h->addr, M_REFL_V1);
    refl_req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE;
    req.all_extension_numbers_of_type = "batch.v1.Operation";
    refl_resp *r = bidi_ask(b, &req);
    cr_assert_eq(r->message_response_case, RESP_CASE(ALL_EXTENSION_NUMBERS_RESPONSE));
    cr_assert_str_eq(r->all_extension_numbers_response->base_type_name, "batch.v1.Operation");
    cr_assert_eq(r->all_extension_numbers_response->n_extension_number, 0);
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    bidi_close_ok(b);
    h_stop(h);
}

Test(reflection, a_request_without_a_kind_is_unimplemented_in_the_stream)
{
    harness *h = h_start(NULL);
    bidi *b = bidi_open(h->addr, M_REFL_V1);
    refl_req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.host = "h";
    refl_resp *r = bidi_ask(b, &req);
    cr_assert_eq(r->message_response_case, RESP_CASE(ERROR_RESPONSE));
    cr_assert_eq(r->error_response->error_code, GRPC_STATUS_UNIMPLEMENTED);
    cr_assert_str_eq(r->valid_host, "h");
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    bidi_close_ok(b);
    h_stop(h);
}

Test(reflection, many_requests_on_one_stream_are_answered_in_order)
{
    harness *h = h_start(NULL);
    bidi *b = bidi_open(h->addr, M_REFL_V1);
    const char *symbols[] = {"batch.v1.Batch", "google.rpc.ErrorInfo", "nope.Nope", "grpc.health.v1.Health"};
    for (int i = 0; i < 60; i++) {
        const char *s = symbols[i % 4];
        refl_resp *r = ask_symbol(b, s);
        cr_assert_str_eq(r->original_request->file_containing_symbol, s, "answer %d", i);
        if (i % 4 == 2)
            check_not_found(r);
        else
            cr_assert_eq(r->message_response_case, RESP_CASE(FILE_DESCRIPTOR_RESPONSE));
        grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    }
    bidi_close_ok(b);
    h_stop(h);
}

Test(reflection, an_undecodable_request_ends_the_call_with_invalid_argument)
{
    harness *h = h_start(NULL);
    bidi *b = bidi_open(h->addr, M_REFL_V1);
    const uint8_t junk[] = {0x22, 0x05, 'a'}; /* field 4 claims 5 bytes, 1 follows */
    grpc_byte_buffer *in = bidi_ask_bytes(b, junk, sizeof junk);
    cr_assert_null(in, "no answer to junk");
    rpcclient_status st;
    cr_assert_eq(bidi_finish(b, 0, &st), GRPC_STATUS_INVALID_ARGUMENT, "%s", st.message);
    char reason[64];
    cr_assert_str_eq(h_reason(&st, reason, sizeof reason), "MALFORMED_REQUEST");
    rpcclient_status_clear(&st);
    h_stop(h);
}

Test(reflection, an_open_stream_ends_unavailable_with_retry_info_at_shutdown)
{
    harness *h = h_start(NULL);
    bidi *b = bidi_open(h->addr, M_REFL_V1);
    refl_resp *r = ask_symbol(b, "batch.v1.BatchService");
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    h_request_stop(h);
    rpcclient_status st;
    cr_assert_eq(bidi_finish(b, 0, &st), GRPC_STATUS_UNAVAILABLE, "%s", st.message);
    char reason[64];
    cr_assert_str_eq(h_reason(&st, reason, sizeof reason), "SHUTTING_DOWN",
                     "batchd ends the stream itself, before gRPC's cancel-all");
    Google__Rpc__RetryInfo *ri = h_detail(&st, &google__rpc__retry_info__descriptor);
    cr_assert_not_null(ri);
    google__rpc__retry_info__free_unpacked(ri, NULL);
    rpcclient_status_clear(&st);
    h_stop(h);
}

Test(reflection, no_reflection_flag_leaves_both_services_unimplemented)
{
    const char *args[] = {"--no-reflection", NULL};
    harness *h = h_start(args);
    const char *paths[] = {M_REFL_V1, M_REFL_V1ALPHA};
    for (int i = 0; i < 2; i++) {
        refl_req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
        req.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
        req.list_services = "";
        ProtobufCMessage *resp = NULL;
        rpcclient_status st = {0};
        cr_assert_eq(rpcclient_unary(h->client, paths[i], &req.base,
                                     &grpc__reflection__v1__server_reflection_response__descriptor, &resp, 10, &st),
                     GRPC_STATUS_UNIMPLEMENTED, "%s: %s", paths[i], st.message);
        char reason[64];
        cr_assert_str_eq(h_reason(&st, reason, sizeof reason), "UNKNOWN_METHOD");
        rpcclient_status_clear(&st);
    }
    /* Every other method is still served: the method table has no hole. */
    rpcclient_status st = {0};
    cr_assert_null(h_get(h, "01ARZ3NDEKTSV4RRFFQ69G5FAV", &st));
    cr_assert_eq(st.code, GRPC_STATUS_NOT_FOUND, "%s", st.message);
    rpcclient_status_clear(&st);
    Grpc__Health__V1__HealthCheckRequest hreq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    ProtobufCMessage *hresp = NULL;
    cr_assert_eq(rpcclient_unary(h->client, "/grpc.health.v1.Health/Check", &hreq.base,
                                 &grpc__health__v1__health_check_response__descriptor, &hresp, 10, &st),
                 GRPC_STATUS_OK);
    protobuf_c_message_free_unpacked(hresp, NULL);
    rpcclient_status_clear(&st);
    h_stop(h);
}
