/* proto/pbjson.c on the real batch.v1 messages: what parsing produces field by field, what
 * printing writes, round trips through JSON and the wire, and the exact error messages
 * (with JSON paths and text positions) for refused documents. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batch/v1/batch.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "pbjson.h"

/* ---- helpers ---- */

static ProtobufCMessage *parse_opt(const ProtobufCMessageDescriptor *d, const char *text,
                                   const pbjson_options *opt)
{
    char *err = NULL;
    ProtobufCMessage *m = pbjson_parse_text(d, text, strlen(text), opt, &err, NULL);
    cr_assert_not_null(m, "refused %s: %s", text, err ? err : "(no message)");
    cr_assert_null(err);
    return m;
}

static ProtobufCMessage *parse(const ProtobufCMessageDescriptor *d, const char *text)
{
    return parse_opt(d, text, NULL);
}

/* The error for text, which must be refused; malloc'd. */
static char *parse_error_opt(const ProtobufCMessageDescriptor *d, const char *text,
                             const pbjson_options *opt, pbjson_position *pos)
{
    char *err = NULL;
    ProtobufCMessage *m = pbjson_parse_text(d, text, strlen(text), opt, &err, pos);
    if (m != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
    cr_assert_null(m, "accepted %s", text);
    cr_assert_not_null(err);
    return err;
}

static void expect_error(const ProtobufCMessageDescriptor *d, const char *text, const char *want)
{
    char *err = parse_error_opt(d, text, NULL, NULL);
    cr_assert_str_eq(err, want);
    free(err);
}

static char *print_opt(const ProtobufCMessage *m, const pbjson_options *opt)
{
    char *err = NULL;
    char *text = pbjson_print_text(m, opt, JSON_COMPACT, &err);
    cr_assert_not_null(text, "print failed: %s", err ? err : "(no message)");
    cr_assert_null(err);
    return text;
}

static void expect_print(const ProtobufCMessage *m, const pbjson_options *opt, const char *want)
{
    char *text = print_opt(m, opt);
    cr_assert_str_eq(text, want);
    free(text);
}

static void expect_print_error(const ProtobufCMessage *m, const char *want)
{
    char *err = NULL;
    json_t *j = pbjson_print(m, NULL, &err);
    json_decref(j);
    cr_assert_null(j);
    cr_assert_str_eq(err, want);
    free(err);
}

/* Parses canonical text (members in field order, default values left out) and prints it
 * back: the text must come out unchanged. */
static void expect_round_trip(const ProtobufCMessageDescriptor *d, const char *text)
{
    ProtobufCMessage *m = parse(d, text);
    expect_print(m, NULL, text);
    protobuf_c_message_free_unpacked(m, NULL);
}

#define SUBMIT (&batch__v1__submit_batch_request__descriptor)
#define ITEM (&batch__v1__item_result__descriptor)
#define OPERATION (&batch__v1__operation__descriptor)
#define OPTIONS (&batch__v1__batch_options__descriptor)

/* ---- parsing: values land in the right fields ---- */

Test(pbjson_parse, submit_request_scalars_land_in_their_fields)
{
    Batch__V1__SubmitBatchRequest *r = (Batch__V1__SubmitBatchRequest *)parse(SUBMIT,
        "{\"operations\":[{\"id\":\"a\",\"target\":\"billing\",\"method\":\"POST\","
        "\"path\":\"/v1/x?y=1\",\"idempotencyKey\":\"k-1\"},{\"id\":\"b\"}],"
        "\"requestId\":\"req-7\",\"validateOnly\":true}");
    cr_assert_eq(r->n_operations, 2);
    cr_assert_str_eq(r->operations[0]->id, "a");
    cr_assert_str_eq(r->operations[0]->target, "billing");
    cr_assert_str_eq(r->operations[0]->method, "POST");
    cr_assert_str_eq(r->operations[0]->path, "/v1/x?y=1");
    cr_assert_str_eq(r->operations[0]->idempotency_key, "k-1");
    cr_assert_str_eq(r->operations[1]->id, "b");
    cr_assert_str_eq(r->request_id, "req-7");
    cr_assert(r->validate_only);
    cr_assert_null(r->options);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(pbjson_parse, unset_strings_keep_the_descriptor_default)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)parse(OPERATION, "{\"id\":\"x\"}");
    /* protobuf-c's own unpack leaves them so, and free_unpacked skips exactly that pointer */
    cr_assert_eq(op->target, OPERATION->fields[1].default_value);
    cr_assert_str_eq(op->method, "");
    cr_assert_eq(op->body_case, BATCH__V1__OPERATION__BODY__NOT_SET);
    cr_assert_null(op->timeout);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, original_field_names_are_accepted)
{
    Batch__V1__SubmitBatchRequest *r = (Batch__V1__SubmitBatchRequest *)parse(SUBMIT,
        "{\"operations\":[{\"idempotency_key\":\"k\"}],\"options\":{\"max_concurrency\":4,"
        "\"stop_on_failure\":true,\"item_timeout\":\"2s\",\"max_rate\":1.5},"
        "\"request_id\":\"r\",\"validate_only\":true}");
    cr_assert_str_eq(r->operations[0]->idempotency_key, "k");
    cr_assert_eq(r->options->max_concurrency, 4);
    cr_assert(r->options->stop_on_failure);
    cr_assert_eq(r->options->item_timeout->seconds, 2);
    cr_assert_float_eq(r->options->max_rate, 1.5, 1e-12);
    cr_assert_str_eq(r->request_id, "r");
    cr_assert(r->validate_only);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(pbjson_parse, headers_map_becomes_entries)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)parse(OPERATION,
        "{\"headers\":{\"Content-Type\":\"application/json\",\"X-Trace\":\"abc\"}}");
    cr_assert_eq(op->n_headers, 2);
    cr_assert_str_eq(op->headers[0]->key, "Content-Type");
    cr_assert_str_eq(op->headers[0]->value, "application/json");
    cr_assert_str_eq(op->headers[1]->key, "X-Trace");
    cr_assert_str_eq(op->headers[1]->value, "abc");
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, json_body_becomes_a_value_tree)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)parse(OPERATION,
        "{\"json\":{\"name\":\"x\",\"n\":[1,2.5,null,true]}}");
    cr_assert_eq(op->body_case, BATCH__V1__OPERATION__BODY_JSON);
    cr_assert_eq(op->json->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE);
    Google__Protobuf__Struct *s = op->json->struct_value;
    cr_assert_eq(s->n_fields, 2);
    cr_assert_str_eq(s->fields[0]->key, "name");
    cr_assert_str_eq(s->fields[0]->value->string_value, "x");
    Google__Protobuf__ListValue *l = s->fields[1]->value->list_value;
    cr_assert_eq(l->n_values, 4);
    cr_assert_float_eq(l->values[1]->number_value, 2.5, 1e-12);
    cr_assert_eq(l->values[2]->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE);
    cr_assert(l->values[3]->bool_value);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, json_body_null_is_a_null_value_not_unset)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)parse(OPERATION, "{\"json\":null}");
    cr_assert_eq(op->body_case, BATCH__V1__OPERATION__BODY_JSON);
    cr_assert_eq(op->json->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, raw_body_reads_standard_base64)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)parse(OPERATION, "{\"raw\":\"+/8AaGk=\"}");
    cr_assert_eq(op->body_case, BATCH__V1__OPERATION__BODY_RAW);
    cr_assert_eq(op->raw.len, 5);
    cr_assert_arr_eq(op->raw.data, "\xfb\xff\x00hi", 5);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, raw_body_reads_url_safe_base64_without_padding)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)parse(OPERATION, "{\"raw\":\"-_8AaGk\"}");
    cr_assert_eq(op->raw.len, 5);
    cr_assert_arr_eq(op->raw.data, "\xfb\xff\x00hi", 5);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, empty_raw_body_still_selects_the_oneof)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)parse(OPERATION, "{\"raw\":\"\"}");
    cr_assert_eq(op->body_case, BATCH__V1__OPERATION__BODY_RAW);
    cr_assert_eq(op->raw.len, 0);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, text_body)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)parse(OPERATION,
        "{\"text\":\"caf\\u00e9 \\ud83d\\ude00\"}");
    cr_assert_eq(op->body_case, BATCH__V1__OPERATION__BODY_TEXT);
    cr_assert_str_eq(op->text, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, duration_seconds_and_fraction)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)parse(OPERATION, "{\"timeout\":\"1.5s\"}");
    cr_assert_eq(op->timeout->seconds, 1);
    cr_assert_eq(op->timeout->nanos, 500000000);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, negative_duration_has_both_parts_negative)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)parse(OPERATION,
        "{\"timeout\":\"-3.000000001s\"}");
    cr_assert_eq(op->timeout->seconds, -3);
    cr_assert_eq(op->timeout->nanos, -1);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, duration_limits_are_inclusive)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)parse(OPERATION,
        "{\"timeout\":\"-315576000000.999999999s\"}");
    cr_assert_eq(op->timeout->seconds, -315576000000LL);
    cr_assert_eq(op->timeout->nanos, -999999999);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, options_numbers_enums_and_labels)
{
    Batch__V1__BatchOptions *o = (Batch__V1__BatchOptions *)parse(OPTIONS,
        "{\"maxConcurrency\":8,\"mode\":\"MODE_ASYNC\",\"stopOnFailure\":true,"
        "\"maxAttempts\":\"3\",\"itemTimeout\":\"0.250s\",\"maxRate\":2.5,"
        "\"labels\":{\"env\":\"prod\",\"team\":\"core\"}}");
    cr_assert_eq(o->max_concurrency, 8);
    cr_assert_eq(o->mode, BATCH__V1__MODE__MODE_ASYNC);
    cr_assert(o->stop_on_failure);
    cr_assert_eq(o->max_attempts, 3);
    cr_assert_eq(o->item_timeout->nanos, 250000000);
    cr_assert_float_eq(o->max_rate, 2.5, 1e-12);
    cr_assert_eq(o->n_labels, 2);
    cr_assert_str_eq(o->labels[1]->key, "team");
    cr_assert_str_eq(o->labels[1]->value, "core");
    protobuf_c_message_free_unpacked(&o->base, NULL);
}

Test(pbjson_parse, enum_by_number_including_unknown_values)
{
    Batch__V1__BatchOptions *o = (Batch__V1__BatchOptions *)parse(OPTIONS, "{\"mode\":1}");
    cr_assert_eq(o->mode, BATCH__V1__MODE__MODE_SYNC);
    protobuf_c_message_free_unpacked(&o->base, NULL);
    o = (Batch__V1__BatchOptions *)parse(OPTIONS, "{\"mode\":42}"); /* proto3 enums are open */
    cr_assert_eq((int)o->mode, 42);
    protobuf_c_message_free_unpacked(&o->base, NULL);
}

Test(pbjson_parse, integers_from_integral_reals_and_strings)
{
    Batch__V1__BatchOptions *o = (Batch__V1__BatchOptions *)parse(OPTIONS,
        "{\"maxConcurrency\":1e3,\"maxAttempts\":\"4294967295\"}");
    cr_assert_eq(o->max_concurrency, 1000);
    cr_assert_eq(o->max_attempts, UINT32_MAX);
    protobuf_c_message_free_unpacked(&o->base, NULL);
}

Test(pbjson_parse, double_accepts_nan_infinity_and_numeric_strings)
{
    const char *docs[] = {"{\"maxRate\":\"NaN\"}", "{\"maxRate\":\"Infinity\"}",
                          "{\"maxRate\":\"-Infinity\"}", "{\"maxRate\":\"1.25e2\"}"};
    double want[] = {NAN, INFINITY, -INFINITY, 125.0};
    for (int i = 0; i < 4; i++) {
        Batch__V1__BatchOptions *o = (Batch__V1__BatchOptions *)parse(OPTIONS, docs[i]);
        if (isnan(want[i]))
            cr_assert(isnan(o->max_rate));
        else
            cr_assert_eq(o->max_rate, want[i], "%s", docs[i]);
        protobuf_c_message_free_unpacked(&o->base, NULL);
    }
}

Test(pbjson_parse, null_leaves_fields_at_their_default)
{
    Batch__V1__SubmitBatchRequest *r = (Batch__V1__SubmitBatchRequest *)parse(SUBMIT,
        "{\"operations\":null,\"options\":null,\"requestId\":null,\"validateOnly\":null}");
    cr_assert_eq(r->n_operations, 0);
    cr_assert_null(r->options);
    cr_assert_str_eq(r->request_id, "");
    cr_assert_not(r->validate_only);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(pbjson_parse, item_result_timestamps_with_fractions_and_offsets)
{
    Batch__V1__ItemResult *r = (Batch__V1__ItemResult *)parse(ITEM,
        "{\"startTime\":\"2026-11-22T10:00:00.5+01:00\","
        "\"endTime\":\"1969-12-31T23:59:59.000000001Z\",\"duration\":\"0.001s\"}");
    cr_assert_eq(r->start_time->seconds, 1795338000); /* 2026-11-22T09:00:00Z */
    cr_assert_eq(r->start_time->nanos, 500000000);
    cr_assert_eq(r->end_time->seconds, -1);
    cr_assert_eq(r->end_time->nanos, 1);
    cr_assert_eq(r->duration->nanos, 1000000);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(pbjson_parse, timestamp_range_ends)
{
    Batch__V1__ItemResult *r = (Batch__V1__ItemResult *)parse(ITEM,
        "{\"startTime\":\"0001-01-01T00:00:00Z\",\"endTime\":\"9999-12-31T23:59:59.999999999Z\"}");
    cr_assert_eq(r->start_time->seconds, -62135596800LL);
    cr_assert_eq(r->end_time->seconds, 253402300799LL);
    cr_assert_eq(r->end_time->nanos, 999999999);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(pbjson_parse, item_result_numbers_bytes_and_enums)
{
    Batch__V1__ItemResult *r = (Batch__V1__ItemResult *)parse(ITEM,
        "{\"id\":\"op-1\",\"index\":7,\"state\":\"ITEM_STATE_FAILED\",\"httpStatus\":\"-503\","
        "\"body\":\"aGVsbG8=\",\"attempts\":2,\"sequence\":\"18446744073709551615\","
        "\"reused\":true,\"bodyTruncated\":false}");
    cr_assert_str_eq(r->id, "op-1");
    cr_assert_eq(r->index, 7);
    cr_assert_eq(r->state, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED);
    cr_assert_eq(r->http_status, -503);
    cr_assert_eq(r->body.len, 5);
    cr_assert_arr_eq(r->body.data, "hello", 5);
    cr_assert_eq(r->attempts, 2);
    cr_assert_eq(r->sequence, UINT64_MAX);
    cr_assert(r->reused);
    cr_assert_not(r->body_truncated);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(pbjson_parse, uint64_from_a_json_number)
{
    Batch__V1__ItemResult *r = (Batch__V1__ItemResult *)parse(ITEM,
        "{\"sequence\":9223372036854775807}");
    cr_assert_eq(r->sequence, (uint64_t)INT64_MAX);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(pbjson_parse, status_error_with_any_details)
{
    Batch__V1__ItemResult *r = (Batch__V1__ItemResult *)parse(ITEM,
        "{\"error\":{\"code\":3,\"message\":\"bad\",\"details\":["
        "{\"@type\":\"type.googleapis.com/google.rpc.BadRequest\","
        "\"fieldViolations\":[{\"field\":\"operations[0].path\",\"description\":\"must start with /\"}]},"
        "{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"2s\"}]}}");
    cr_assert_eq(r->error->code, 3);
    cr_assert_str_eq(r->error->message, "bad");
    cr_assert_eq(r->error->n_details, 2);
    Google__Protobuf__Any *a = r->error->details[0];
    cr_assert_str_eq(a->type_url, "type.googleapis.com/google.rpc.BadRequest");
    Google__Rpc__BadRequest *br = google__rpc__bad_request__unpack(NULL, a->value.len, a->value.data);
    cr_assert_not_null(br);
    cr_assert_eq(br->n_field_violations, 1);
    cr_assert_str_eq(br->field_violations[0]->field, "operations[0].path");
    cr_assert_str_eq(br->field_violations[0]->description, "must start with /");
    google__rpc__bad_request__free_unpacked(br, NULL);
    a = r->error->details[1];
    Google__Rpc__RetryInfo *ri = google__rpc__retry_info__unpack(NULL, a->value.len, a->value.data);
    cr_assert_not_null(ri);
    cr_assert_eq(ri->retry_delay->seconds, 2);
    google__rpc__retry_info__free_unpacked(ri, NULL);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(pbjson_parse, any_of_a_well_known_type_uses_value)
{
    Google__Protobuf__Any *a = (Google__Protobuf__Any *)parse(&google__protobuf__any__descriptor,
        "{\"@type\":\"type.googleapis.com/google.protobuf.Duration\",\"value\":\"1.5s\"}");
    Google__Protobuf__Duration *d = google__protobuf__duration__unpack(NULL, a->value.len, a->value.data);
    cr_assert_not_null(d);
    cr_assert_eq(d->seconds, 1);
    cr_assert_eq(d->nanos, 500000000);
    google__protobuf__duration__free_unpacked(d, NULL);
    protobuf_c_message_free_unpacked(&a->base, NULL);
}

Test(pbjson_parse, any_types_from_the_options)
{
    const ProtobufCMessageDescriptor *types[] = {OPERATION};
    pbjson_options opt = {.any_types = types, .n_any_types = 1};
    Google__Protobuf__Any *a = (Google__Protobuf__Any *)parse_opt(&google__protobuf__any__descriptor,
        "{\"@type\":\"type.googleapis.com/batch.v1.Operation\",\"id\":\"x\"}", &opt);
    Batch__V1__Operation *op = batch__v1__operation__unpack(NULL, a->value.len, a->value.data);
    cr_assert_not_null(op);
    cr_assert_str_eq(op->id, "x");
    batch__v1__operation__free_unpacked(op, NULL);
    protobuf_c_message_free_unpacked(&a->base, NULL);
}

Test(pbjson_parse, unknown_fields_skipped_when_asked)
{
    pbjson_options opt = {.ignore_unknown_fields = true};
    Batch__V1__SubmitBatchRequest *r = (Batch__V1__SubmitBatchRequest *)parse_opt(SUBMIT,
        "{\"future\":{\"x\":[1]},\"operations\":[{\"id\":\"a\",\"priority\":3}]}", &opt);
    cr_assert_eq(r->n_operations, 1);
    cr_assert_str_eq(r->operations[0]->id, "a");
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(pbjson_parse, unknown_enum_names_skipped_when_asked)
{
    pbjson_options opt = {.ignore_unknown_fields = true};
    Batch__V1__BatchOptions *o = (Batch__V1__BatchOptions *)parse_opt(OPTIONS,
        "{\"mode\":\"MODE_LATER\",\"maxConcurrency\":2}", &opt);
    cr_assert_eq(o->mode, BATCH__V1__MODE__MODE_UNSPECIFIED);
    cr_assert_eq(o->max_concurrency, 2);
    protobuf_c_message_free_unpacked(&o->base, NULL);
}

Test(pbjson_parse, from_a_jansson_value)
{
    json_t *j = json_pack("{s:[{s:s}]}", "operations", "id", "z");
    char *err = NULL;
    Batch__V1__SubmitBatchRequest *r =
        (Batch__V1__SubmitBatchRequest *)pbjson_parse(SUBMIT, j, NULL, &err);
    json_decref(j);
    cr_assert_not_null(r);
    cr_assert_null(err);
    cr_assert_str_eq(r->operations[0]->id, "z");
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(pbjson_parse, parsed_message_packs_like_protobuf_c_unpacks)
{
    /* What pbjson builds must be a well-formed protobuf-c message: pack it, unpack it with
     * protobuf-c, and print both the same way. */
    const char *text =
        "{\"operations\":[{\"id\":\"a\",\"headers\":{\"A\":\"1\"},\"text\":\"\","
        "\"timeout\":\"1s\"},{\"raw\":\"AQI=\"},{\"json\":[1,\"x\"]}],"
        "\"options\":{\"mode\":\"MODE_SYNC\",\"labels\":{\"k\":\"v\"}},\"requestId\":\"r\"}";
    ProtobufCMessage *m = parse(SUBMIT, text);
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len);
    cr_assert_eq(protobuf_c_message_pack(m, buf), len);
    ProtobufCMessage *back = protobuf_c_message_unpack(SUBMIT, NULL, len, buf);
    cr_assert_not_null(back);
    char *a = print_opt(m, NULL), *b = print_opt(back, NULL);
    cr_assert_str_eq(a, b);
    cr_assert_str_eq(a, text);
    free(a);
    free(b);
    free(buf);
    protobuf_c_message_free_unpacked(back, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- parsing: refused documents, with exact messages ---- */

Test(pbjson_errors, unknown_field_names_its_path_and_type)
{
    expect_error(SUBMIT, "{\"operations\":[{\"id\":\"a\"},{\"bogus\":1}]}",
                 "operations[1].bogus: unknown field in batch.v1.Operation");
}

Test(pbjson_errors, unknown_field_at_the_top)
{
    expect_error(SUBMIT, "{\"requestID\":\"x\"}",
                 "requestID: unknown field in batch.v1.SubmitBatchRequest");
}

Test(pbjson_errors, wrong_type_for_a_number)
{
    expect_error(SUBMIT, "{\"options\":{\"maxConcurrency\":true}}",
                 "options.maxConcurrency: expected a number, got boolean");
    expect_error(SUBMIT, "{\"options\":{\"maxConcurrency\":\"ten\"}}",
                 "options.maxConcurrency: expected a number, got string \"ten\"");
}

Test(pbjson_errors, wrong_type_for_bool_string_message_and_array)
{
    expect_error(SUBMIT, "{\"validateOnly\":\"yes\"}",
                 "validateOnly: expected true or false, got string \"yes\"");
    expect_error(SUBMIT, "{\"requestId\":5}", "requestId: expected a string, got number");
    expect_error(SUBMIT, "{\"options\":[]}", "options: expected an object, got array");
    expect_error(SUBMIT, "{\"operations\":{}}", "operations: expected an array, got object");
    expect_error(OPERATION, "{\"headers\":[\"a\"]}", "headers: expected an object, got array");
    expect_error(SUBMIT, "[]", "expected an object, got array");
}

Test(pbjson_errors, integers_out_of_range_or_fractional)
{
    expect_error(OPTIONS, "{\"maxConcurrency\":-1}", "maxConcurrency: -1 is out of range for uint32");
    expect_error(OPTIONS, "{\"maxAttempts\":\"4294967296\"}",
                 "maxAttempts: 4294967296 is out of range for uint32");
    expect_error(ITEM, "{\"httpStatus\":2147483648}", "httpStatus: 2147483648 is out of range for int32");
    expect_error(ITEM, "{\"sequence\":\"18446744073709551616\"}",
                 "sequence: \"18446744073709551616\" is out of range for uint64");
    expect_error(OPTIONS, "{\"maxAttempts\":1.5}", "maxAttempts: expected an integer, got 1.5");
    expect_error(OPTIONS, "{\"maxAttempts\":\"2.0\"}", "maxAttempts: expected an integer, got \"2.0\"");
}

Test(pbjson_errors, bad_enum_name)
{
    expect_error(SUBMIT, "{\"options\":{\"mode\":\"MODE_FAST\"}}",
                 "options.mode: unknown value \"MODE_FAST\" for enum batch.v1.Mode");
    expect_error(OPTIONS, "{\"mode\":true}", "mode: expected an enum name or number, got boolean");
}

Test(pbjson_errors, bad_base64)
{
    expect_error(SUBMIT, "{\"operations\":[{\"raw\":\"aGV*bG8=\"}]}",
                 "operations[0].raw: invalid base64: unexpected character '*' at offset 3");
    expect_error(OPERATION, "{\"raw\":\"aGVsb\"}",
                 "raw: invalid base64: 5 characters cannot encode whole bytes");
    expect_error(OPERATION, "{\"raw\":\"aGVsbG8==\"}",
                 "raw: invalid base64: 9 characters cannot encode whole bytes");
    expect_error(OPERATION, "{\"raw\":\"aG=sbG8=\"}",
                 "raw: invalid base64: unexpected character '=' at offset 2");
}

Test(pbjson_errors, bad_duration)
{
    expect_error(SUBMIT,
                 "{\"operations\":[{},{},{},{\"timeout\":\"5x\"}]}",
                 "operations[3].timeout: invalid duration \"5x\" (expected e.g. \"1.5s\")");
    expect_error(OPERATION, "{\"timeout\":\"1.0000000001s\"}",
                 "timeout: invalid duration \"1.0000000001s\" (expected e.g. \"1.5s\")");
    expect_error(OPERATION, "{\"timeout\":\"1.s\"}",
                 "timeout: invalid duration \"1.s\" (expected e.g. \"1.5s\")");
    expect_error(OPERATION, "{\"timeout\":5}",
                 "timeout: expected a duration string such as \"1.5s\", got number");
    expect_error(OPERATION, "{\"timeout\":\"315576000001s\"}",
                 "timeout: duration \"315576000001s\" is out of range (at most 315576000000s either way)");
}

Test(pbjson_errors, bad_timestamp)
{
    expect_error(ITEM, "{\"startTime\":\"2026-02-29T10:00:00Z\"}",
                 "startTime: invalid timestamp \"2026-02-29T10:00:00Z\" "
                 "(expected RFC 3339, e.g. \"2026-11-22T10:00:00Z\")");
    expect_error(ITEM, "{\"startTime\":\"2026-11-22 10:00:00Z\"}",
                 "startTime: invalid timestamp \"2026-11-22 10:00:00Z\" "
                 "(expected RFC 3339, e.g. \"2026-11-22T10:00:00Z\")");
    expect_error(ITEM, "{\"endTime\":\"2026-11-22T10:00:00\"}",
                 "endTime: invalid timestamp \"2026-11-22T10:00:00\" "
                 "(expected RFC 3339, e.g. \"2026-11-22T10:00:00Z\")");
    expect_error(ITEM, "{\"endTime\":\"0001-01-01T00:30:00+01:00\"}",
                 "endTime: timestamp \"0001-01-01T00:30:00+01:00\" is out of range (years 0001 to 9999)");
}

Test(pbjson_errors, two_members_of_a_oneof)
{
    expect_error(SUBMIT, "{\"operations\":[{\"json\":{},\"raw\":\"AA==\"}]}",
                 "operations[0].raw: cannot be set together with \"json\" (members of one oneof)");
}

Test(pbjson_errors, a_null_oneof_member_does_not_conflict)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)parse(OPERATION, "{\"raw\":null,\"text\":\"t\"}");
    cr_assert_eq(op->body_case, BATCH__V1__OPERATION__BODY_TEXT);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_errors, the_same_field_under_both_names)
{
    expect_error(SUBMIT, "{\"requestId\":\"a\",\"request_id\":\"b\"}",
                 "request_id: field already given as \"requestId\"");
}

Test(pbjson_errors, nulls_inside_repeated_and_maps)
{
    expect_error(SUBMIT, "{\"operations\":[{},null]}",
                 "operations[1]: null is not allowed in a repeated field");
    expect_error(OPERATION, "{\"headers\":{\"X-A\":null}}",
                 "headers[\"X-A\"]: map values cannot be null");
}

Test(pbjson_errors, value_nested_too_deeply)
{
    char doc[512] = "{\"operations\":[{\"json\":";
    for (int i = 0; i < 70; i++)
        strcat(doc, "[");
    for (int i = 0; i < 70; i++)
        strcat(doc, "]");
    strcat(doc, "}]}");
    expect_error(SUBMIT, doc, "operations[0].json: nesting deeper than 64 levels");
}

Test(pbjson_errors, messages_nested_past_max_depth)
{
    pbjson_options opt = {.max_depth = 2};
    char *err = parse_error_opt(SUBMIT, "{\"operations\":[{\"timeout\":\"1s\"}]}", &opt, NULL);
    cr_assert_str_eq(err, "operations[0].timeout: nesting deeper than 2 levels");
    free(err);
}

Test(pbjson_errors, anys_nested_too_deeply)
{
    /* An Any holding an Any holding ...: each level is a message level. */
    char *doc = malloc(100 * 80 + 64), *p = doc;
    for (int i = 0; i < 100; i++)
        p += sprintf(p, "{\"@type\":\"type.googleapis.com/google.protobuf.Any\",\"value\":");
    p += sprintf(p, "{}");
    for (int i = 0; i < 100; i++)
        *p++ = '}';
    *p = '\0';
    char *err = parse_error_opt(&google__protobuf__any__descriptor, doc, NULL, NULL);
    cr_assert(strstr(err, ": nesting deeper than 64 levels") != NULL, "%s", err);
    cr_assert(strncmp(err, "value.value.value.", 18) == 0, "%s", err);
    free(err);
    free(doc);
}

Test(pbjson_errors, any_of_an_unknown_type)
{
    expect_error(ITEM,
                 "{\"error\":{\"details\":[{\"@type\":\"type.googleapis.com/acme.Thing\",\"x\":1}]}}",
                 "error.details[0][\"@type\"]: cannot resolve Any type "
                 "\"type.googleapis.com/acme.Thing\" (not a type this program knows)");
    expect_error(&google__protobuf__any__descriptor, "{\"x\":1}", "an Any needs \"@type\"");
}

Test(pbjson_errors, invalid_json_reports_jansson_position)
{
    pbjson_position pos;
    char *err = parse_error_opt(SUBMIT, "{\"operations\":\n  [{},,{}]}", NULL, &pos);
    cr_assert_str_eq(err, "invalid JSON: unexpected token near ','");
    cr_assert_eq(pos.line, 2);
    cr_assert_eq(pos.column, 7);
    free(err);
}

Test(pbjson_errors, duplicate_member_names_are_invalid_json)
{
    char *err = parse_error_opt(SUBMIT, "{\"requestId\":\"a\",\"requestId\":\"b\"}", NULL, NULL);
    cr_assert(strncmp(err, "invalid JSON: duplicate object key", 34) == 0, "%s", err);
    free(err);
}

Test(pbjson_errors, schema_error_position_is_the_value)
{
    pbjson_position pos;
    const char *doc = "{\n"
                      "  \"operations\": [\n"
                      "    {\"id\": \"a\"},\n"
                      "    {\"id\": \"\\u00e9\", \"timeout\": \"5x\"}\n"
                      "  ]\n"
                      "}\n";
    char *err = parse_error_opt(SUBMIT, doc, NULL, &pos);
    cr_assert_str_eq(err, "operations[1].timeout: invalid duration \"5x\" (expected e.g. \"1.5s\")");
    cr_assert_eq(pos.line, 4);
    cr_assert_eq(pos.column, 33);
    cr_assert_eq(doc[pos.offset], '"');
    cr_assert_eq(doc[pos.offset + 1], '5');
    free(err);
}

Test(pbjson_errors, unknown_field_position_is_the_name)
{
    pbjson_position pos;
    const char *doc = "{\"options\": {\"mode\": 1,\n"
                      "   \"k\\u00e9y\\\"\": 2}}";
    char *err = parse_error_opt(SUBMIT, doc, NULL, &pos);
    cr_assert_str_eq(err, "options[\"k\xc3\xa9y\\\"\"]: unknown field in batch.v1.BatchOptions");
    cr_assert_eq(pos.line, 2);
    cr_assert_eq(pos.column, 4);
    free(err);
}

Test(pbjson_errors, position_counts_characters_not_bytes)
{
    pbjson_position pos;
    const char *doc = "{\"requestId\": \"\xc3\xa9\xc3\xa9\", \"validateOnly\": 1}";
    char *err = parse_error_opt(SUBMIT, doc, NULL, &pos);
    cr_assert_str_eq(err, "validateOnly: expected true or false, got number");
    cr_assert_eq(pos.line, 1);
    cr_assert_eq(pos.column, 37); /* each é is two bytes and one column */
    cr_assert_eq(pos.offset, 38);
    cr_assert_eq(doc[pos.offset], '1');
    free(err);
}

Test(pbjson_errors, errors_from_a_jansson_value_have_paths_too)
{
    json_t *j = json_pack("{s:{s:s}}", "options", "mode", "NOPE");
    char *err = NULL;
    ProtobufCMessage *m = pbjson_parse(SUBMIT, j, NULL, &err);
    json_decref(j);
    cr_assert_null(m);
    cr_assert_str_eq(err, "options.mode: unknown value \"NOPE\" for enum batch.v1.Mode");
    free(err);
}

Test(pbjson_errors, failures_deep_inside_free_what_was_built)
{
    /* Strings, maps, Values and Durations are already allocated when the last operation
     * fails; the sanitizer build turns any leak or double free here into a failure. */
    expect_error(SUBMIT,
                 "{\"requestId\":\"r\",\"options\":{\"labels\":{\"a\":\"b\"},\"itemTimeout\":\"1s\"},"
                 "\"operations\":[{\"id\":\"a\",\"headers\":{\"h\":\"v\"},\"json\":{\"x\":[1]}},"
                 "{\"raw\":\"AAAA\",\"timeout\":\"2s\"},{\"headers\":{\"k\":\"v\",\"bad\":7}}]}",
                 "operations[2].headers[\"bad\"]: expected a string, got number");
}

/* ---- printing ---- */

Test(pbjson_print, defaults_are_left_out)
{
    Batch__V1__SubmitBatchRequest r = BATCH__V1__SUBMIT_BATCH_REQUEST__INIT;
    expect_print(&r.base, NULL, "{}");
    Batch__V1__BatchOptions o = BATCH__V1__BATCH_OPTIONS__INIT;
    r.options = &o; /* a set message prints even when empty */
    expect_print(&r.base, NULL, "{\"options\":{}}");
}

Test(pbjson_print, emit_defaults_prints_fields_without_presence)
{
    Batch__V1__Operation op = BATCH__V1__OPERATION__INIT;
    pbjson_options opt = {.emit_defaults = true};
    /* not timeout (a message) nor json/raw/text (a oneof) */
    expect_print(&op.base, &opt,
                 "{\"id\":\"\",\"target\":\"\",\"method\":\"\",\"path\":\"\",\"headers\":{},"
                 "\"idempotencyKey\":\"\"}");
    Batch__V1__BatchOptions o = BATCH__V1__BATCH_OPTIONS__INIT;
    expect_print(&o.base, &opt,
                 "{\"maxConcurrency\":0,\"mode\":\"MODE_UNSPECIFIED\",\"stopOnFailure\":false,"
                 "\"maxAttempts\":0,\"maxRate\":0.0,\"labels\":{}}");
}

Test(pbjson_print, original_names_when_asked)
{
    Batch__V1__SubmitBatchRequest r = BATCH__V1__SUBMIT_BATCH_REQUEST__INIT;
    r.request_id = "r";
    r.validate_only = 1;
    pbjson_options opt = {.original_names = true};
    expect_print(&r.base, &opt, "{\"request_id\":\"r\",\"validate_only\":true}");
    expect_print(&r.base, NULL, "{\"requestId\":\"r\",\"validateOnly\":true}");
}

Test(pbjson_print, enums_by_name_unknown_ones_as_numbers)
{
    Batch__V1__ItemResult r = BATCH__V1__ITEM_RESULT__INIT;
    r.state = BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED;
    expect_print(&r.base, NULL, "{\"state\":\"ITEM_STATE_SUCCEEDED\"}");
    pbjson_options opt = {.enums_as_ints = true};
    expect_print(&r.base, &opt, "{\"state\":3}");
    r.state = (Batch__V1__ItemState)17;
    expect_print(&r.base, NULL, "{\"state\":17}");
}

Test(pbjson_print, sixty_four_bit_integers_as_strings)
{
    Batch__V1__ItemResult r = BATCH__V1__ITEM_RESULT__INIT;
    r.sequence = UINT64_MAX;
    r.http_status = -1;
    r.index = UINT32_MAX;
    expect_print(&r.base, NULL,
                 "{\"index\":4294967295,\"httpStatus\":-1,\"sequence\":\"18446744073709551615\"}");
}

Test(pbjson_print, bytes_as_padded_standard_base64)
{
    Batch__V1__ItemResult r = BATCH__V1__ITEM_RESULT__INIT;
    uint8_t body[] = {0xfb, 0xff, 0x00, 'h'};
    r.body.data = body;
    r.body.len = sizeof body;
    expect_print(&r.base, NULL, "{\"body\":\"+/8AaA==\"}");
    r.body.len = 2;
    expect_print(&r.base, NULL, "{\"body\":\"+/8=\"}");
}

Test(pbjson_print, timestamps_in_utc_with_0_3_6_or_9_digits)
{
    Batch__V1__ItemResult r = BATCH__V1__ITEM_RESULT__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    r.start_time = &ts;
    struct { int64_t s; int32_t n; const char *want; } cases[] = {
        {1795341600, 0, "{\"startTime\":\"2026-11-22T10:00:00Z\"}"},
        {1795341600, 500000000, "{\"startTime\":\"2026-11-22T10:00:00.500Z\"}"},
        {1795341600, 123456000, "{\"startTime\":\"2026-11-22T10:00:00.123456Z\"}"},
        {1795341600, 1, "{\"startTime\":\"2026-11-22T10:00:00.000000001Z\"}"},
        {-1, 500000000, "{\"startTime\":\"1969-12-31T23:59:59.500Z\"}"},
        {951782400, 0, "{\"startTime\":\"2000-02-29T00:00:00Z\"}"},
        {-62135596800LL, 0, "{\"startTime\":\"0001-01-01T00:00:00Z\"}"},
        {253402300799LL, 999999999, "{\"startTime\":\"9999-12-31T23:59:59.999999999Z\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ts.seconds = cases[i].s;
        ts.nanos = cases[i].n;
        expect_print(&r.base, NULL, cases[i].want);
    }
}

Test(pbjson_print, durations_with_0_3_6_or_9_digits)
{
    Batch__V1__Operation op = BATCH__V1__OPERATION__INIT;
    Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
    op.timeout = &d;
    struct { int64_t s; int32_t n; const char *want; } cases[] = {
        {0, 0, "{\"timeout\":\"0s\"}"},
        {1, 500000000, "{\"timeout\":\"1.500s\"}"},
        {0, -500000000, "{\"timeout\":\"-0.500s\"}"},
        {-2, -1000, "{\"timeout\":\"-2.000001s\"}"},
        {315576000000LL, 1, "{\"timeout\":\"315576000000.000000001s\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        d.seconds = cases[i].s;
        d.nanos = cases[i].n;
        expect_print(&op.base, NULL, cases[i].want);
    }
}

Test(pbjson_print, nan_and_infinities_as_strings)
{
    Batch__V1__BatchOptions o = BATCH__V1__BATCH_OPTIONS__INIT;
    o.max_rate = NAN;
    expect_print(&o.base, NULL, "{\"maxRate\":\"NaN\"}");
    o.max_rate = -INFINITY;
    expect_print(&o.base, NULL, "{\"maxRate\":\"-Infinity\"}");
}

Test(pbjson_print, status_any_details_inline_their_fields)
{
    Google__Rpc__BadRequest__FieldViolation fv = GOOGLE__RPC__BAD_REQUEST__FIELD_VIOLATION__INIT;
    fv.field = "operations[0].path";
    fv.description = "must start with /";
    Google__Rpc__BadRequest__FieldViolation *fvs[] = {&fv};
    Google__Rpc__BadRequest br = GOOGLE__RPC__BAD_REQUEST__INIT;
    br.n_field_violations = 1;
    br.field_violations = fvs;
    uint8_t packed[128];
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = "type.googleapis.com/google.rpc.BadRequest";
    any.value.data = packed;
    any.value.len = google__rpc__bad_request__pack(&br, packed);
    Google__Protobuf__Any *details[] = {&any};
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    st.code = 3;
    st.message = "invalid batch";
    st.n_details = 1;
    st.details = details;
    Batch__V1__ItemResult r = BATCH__V1__ITEM_RESULT__INIT;
    r.error = &st;
    expect_print(&r.base, NULL,
                 "{\"error\":{\"code\":3,\"message\":\"invalid batch\",\"details\":[{\"@type\":"
                 "\"type.googleapis.com/google.rpc.BadRequest\",\"fieldViolations\":[{\"field\":"
                 "\"operations[0].path\",\"description\":\"must start with /\"}]}]}}");
}

Test(pbjson_print, headers_map_as_an_object)
{
    Batch__V1__ItemResult__HeadersEntry e1 = BATCH__V1__ITEM_RESULT__HEADERS_ENTRY__INIT;
    Batch__V1__ItemResult__HeadersEntry e2 = BATCH__V1__ITEM_RESULT__HEADERS_ENTRY__INIT;
    e1.key = "content-type";
    e1.value = "text/plain";
    e2.key = "x-n";
    e2.value = "";
    Batch__V1__ItemResult__HeadersEntry *entries[] = {&e1, &e2};
    Batch__V1__ItemResult r = BATCH__V1__ITEM_RESULT__INIT;
    r.n_headers = 2;
    r.headers = entries;
    expect_print(&r.base, NULL, "{\"headers\":{\"content-type\":\"text/plain\",\"x-n\":\"\"}}");
}

Test(pbjson_print, wkt_at_the_top_is_not_an_object)
{
    Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
    d.seconds = 90;
    expect_print(&d.base, NULL, "\"90s\"");
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    expect_print(&v.base, NULL, "null"); /* an unset Value prints as null, as protobuf does */
}

Test(pbjson_print, refused_values_name_their_path)
{
    Batch__V1__ItemResult r = BATCH__V1__ITEM_RESULT__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts.nanos = 1000000000;
    r.end_time = &ts;
    expect_print_error(&r.base, "endTime: invalid Timestamp (seconds 0, nanos 1000000000)");

    Batch__V1__ItemResult r2 = BATCH__V1__ITEM_RESULT__INIT;
    Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
    d.seconds = 1;
    d.nanos = -1;
    r2.duration = &d;
    expect_print_error(&r2.base, "duration: invalid Duration (seconds 1, nanos -1)");

    Batch__V1__ItemResult r3 = BATCH__V1__ITEM_RESULT__INIT;
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    v.number_value = NAN;
    r3.json = &v;
    expect_print_error(&r3.base, "json: NaN and infinities are not JSON");

    Batch__V1__ItemResult r4 = BATCH__V1__ITEM_RESULT__INIT;
    r4.id = "\xff\xfe";
    expect_print_error(&r4.base, "id: string is not valid UTF-8");
}

Test(pbjson_print, any_of_an_unknown_type_is_refused)
{
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = "type.googleapis.com/acme.Thing";
    Google__Protobuf__Any *details[] = {&any};
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    st.n_details = 1;
    st.details = details;
    expect_print_error(&st.base, "details[0]: cannot print an Any of unknown type "
                                 "\"type.googleapis.com/acme.Thing\"");
}

/* ---- round trips ---- */

Test(pbjson_round_trip, submit_request_every_body_kind)
{
    expect_round_trip(SUBMIT,
        "{\"operations\":["
        "{\"id\":\"a\",\"target\":\"t\",\"method\":\"POST\",\"path\":\"/x\","
        "\"headers\":{\"Content-Type\":\"application/json\",\"X-Empty\":\"\"},"
        "\"json\":{\"k\":[1,2.5,null,true,\"s\",{}]},\"idempotencyKey\":\"ik\",\"timeout\":\"1.500s\"},"
        "{\"id\":\"b\",\"raw\":\"AAEC/w==\"},"
        "{\"id\":\"c\",\"text\":\"caf\xc3\xa9\"},"
        "{\"id\":\"d\",\"json\":null,\"timeout\":\"-0.000001s\"}],"
        "\"options\":{\"maxConcurrency\":4,\"mode\":\"MODE_SYNC\",\"stopOnFailure\":true,"
        "\"maxAttempts\":3,\"itemTimeout\":\"30s\",\"maxRate\":2.5,"
        "\"labels\":{\"env\":\"prod\",\"team\":\"core\"}},"
        "\"requestId\":\"req-1\",\"validateOnly\":true}");
}

Test(pbjson_round_trip, item_result_every_field)
{
    expect_round_trip(ITEM,
        "{\"id\":\"a\",\"index\":3,\"state\":\"ITEM_STATE_FAILED\",\"httpStatus\":503,"
        "\"headers\":{\"retry-after\":\"2\"},\"body\":\"aGVsbG8=\",\"json\":{\"error\":\"busy\"},"
        "\"error\":{\"code\":14,\"message\":\"unavailable\",\"details\":[{\"@type\":"
        "\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"2s\"},{\"@type\":"
        "\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":\"UPSTREAM_BUSY\","
        "\"domain\":\"batchd\",\"metadata\":{\"status\":\"503\"}}]},"
        "\"attempts\":2,\"duration\":\"0.120s\",\"startTime\":\"2026-11-22T10:00:00.123Z\","
        "\"endTime\":\"2026-11-22T10:00:00.243Z\",\"sequence\":\"9007199254740993\","
        "\"reused\":true,\"bodyTruncated\":true}");
}

Test(pbjson_round_trip, batch_event_with_batch_and_counts)
{
    expect_round_trip(&batch__v1__batch_event__descriptor,
        "{\"sequence\":\"5\",\"batch\":{\"id\":\"b1\",\"state\":\"BATCH_STATE_RUNNING\","
        "\"counts\":{\"total\":10,\"pending\":3,\"running\":2,\"succeeded\":4,\"failed\":1},"
        "\"progress\":0.5,\"createTime\":\"2026-11-22T10:00:00Z\","
        "\"options\":{\"maxConcurrency\":2},\"lastSequence\":\"5\"}}");
}

Test(pbjson_round_trip, any_of_well_known_types)
{
    expect_round_trip(&google__rpc__status__descriptor,
        "{\"details\":[{\"@type\":\"type.googleapis.com/google.protobuf.Duration\",\"value\":\"1s\"},"
        "{\"@type\":\"type.googleapis.com/google.protobuf.Struct\",\"value\":{\"a\":[1]}},"
        "{\"@type\":\"type.googleapis.com/google.protobuf.Any\",\"value\":{\"@type\":"
        "\"type.googleapis.com/google.protobuf.Timestamp\",\"value\":\"1970-01-01T00:00:00Z\"}},"
        "{\"@type\":\"type.googleapis.com/google.protobuf.Empty\"},{}]}");
}

/* Regression (found by fuzz_pbjson): a NUL right after a literal, which jansson skips,
 * made the error-position scanner loop forever. */
Test(pbjson, error_position_after_an_embedded_nul_terminates)
{
    static const char text[] = "{\"operations\":[{\"json\":[null\0,1]},{\"x\":1}]}";
    char *err = NULL;
    pbjson_position pos = {0};
    ProtobufCMessage *m = pbjson_parse_text(&batch__v1__submit_batch_request__descriptor, text, sizeof text - 1,
                                            NULL, &err, &pos);
    cr_assert_null(m);
    cr_assert_not_null(err);
    cr_assert(strstr(err, "x"), "%s", err);
    cr_assert_eq(pos.line, 1);
    cr_assert_eq(pos.column, 36);
    free(err);
}
