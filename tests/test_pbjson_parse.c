/* proto/pbjson.c on the real batch.v1 messages, parsing: what each accepted document
 * produces field by field, and that a parsed message packs like protobuf-c unpacks. Refused
 * documents are in test_pbjson_errors.c, printing and round trips in test_pbjson_print.c;
 * the shared checks in support/pbjson_check.c. */
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
#include "pbjson_check.h"

/* ---- parsing: values land in the right fields ---- */

Test(pbjson_parse, submit_request_scalars_land_in_their_fields)
{
    Batch__V1__SubmitBatchRequest *r = (Batch__V1__SubmitBatchRequest *)pbc_parse(PBC_SUBMIT,
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
    Batch__V1__Operation *op = (Batch__V1__Operation *)pbc_parse(PBC_OPERATION, "{\"id\":\"x\"}");
    /* protobuf-c's own unpack leaves them so, and free_unpacked skips exactly that pointer */
    cr_assert_eq(op->target, PBC_OPERATION->fields[1].default_value);
    cr_assert_str_eq(op->method, "");
    cr_assert_eq(op->body_case, BATCH__V1__OPERATION__BODY__NOT_SET);
    cr_assert_null(op->timeout);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, original_field_names_are_accepted)
{
    Batch__V1__SubmitBatchRequest *r = (Batch__V1__SubmitBatchRequest *)pbc_parse(PBC_SUBMIT,
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
    Batch__V1__Operation *op = (Batch__V1__Operation *)pbc_parse(PBC_OPERATION,
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
    Batch__V1__Operation *op = (Batch__V1__Operation *)pbc_parse(PBC_OPERATION,
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
    Batch__V1__Operation *op = (Batch__V1__Operation *)pbc_parse(PBC_OPERATION, "{\"json\":null}");
    cr_assert_eq(op->body_case, BATCH__V1__OPERATION__BODY_JSON);
    cr_assert_eq(op->json->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, raw_body_reads_standard_base64)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)pbc_parse(PBC_OPERATION, "{\"raw\":\"+/8AaGk=\"}");
    cr_assert_eq(op->body_case, BATCH__V1__OPERATION__BODY_RAW);
    cr_assert_eq(op->raw.len, 5);
    cr_assert_arr_eq(op->raw.data, "\xfb\xff\x00hi", 5);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, raw_body_reads_url_safe_base64_without_padding)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)pbc_parse(PBC_OPERATION, "{\"raw\":\"-_8AaGk\"}");
    cr_assert_eq(op->raw.len, 5);
    cr_assert_arr_eq(op->raw.data, "\xfb\xff\x00hi", 5);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, empty_raw_body_still_selects_the_oneof)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)pbc_parse(PBC_OPERATION, "{\"raw\":\"\"}");
    cr_assert_eq(op->body_case, BATCH__V1__OPERATION__BODY_RAW);
    cr_assert_eq(op->raw.len, 0);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, text_body)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)pbc_parse(PBC_OPERATION,
        "{\"text\":\"caf\\u00e9 \\ud83d\\ude00\"}");
    cr_assert_eq(op->body_case, BATCH__V1__OPERATION__BODY_TEXT);
    cr_assert_str_eq(op->text, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, duration_seconds_and_fraction)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)pbc_parse(PBC_OPERATION, "{\"timeout\":\"1.5s\"}");
    cr_assert_eq(op->timeout->seconds, 1);
    cr_assert_eq(op->timeout->nanos, 500000000);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, negative_duration_has_both_parts_negative)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)pbc_parse(PBC_OPERATION,
        "{\"timeout\":\"-3.000000001s\"}");
    cr_assert_eq(op->timeout->seconds, -3);
    cr_assert_eq(op->timeout->nanos, -1);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, duration_limits_are_inclusive)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)pbc_parse(PBC_OPERATION,
        "{\"timeout\":\"-315576000000.999999999s\"}");
    cr_assert_eq(op->timeout->seconds, -315576000000LL);
    cr_assert_eq(op->timeout->nanos, -999999999);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_parse, options_numbers_enums_and_labels)
{
    Batch__V1__BatchOptions *o = (Batch__V1__BatchOptions *)pbc_parse(PBC_OPTIONS,
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
    Batch__V1__BatchOptions *o = (Batch__V1__BatchOptions *)pbc_parse(PBC_OPTIONS, "{\"mode\":1}");
    cr_assert_eq(o->mode, BATCH__V1__MODE__MODE_SYNC);
    protobuf_c_message_free_unpacked(&o->base, NULL);
    o = (Batch__V1__BatchOptions *)pbc_parse(PBC_OPTIONS, "{\"mode\":42}"); /* proto3 enums are open */
    cr_assert_eq((int)o->mode, 42);
    protobuf_c_message_free_unpacked(&o->base, NULL);
}

Test(pbjson_parse, integers_from_integral_reals_and_strings)
{
    Batch__V1__BatchOptions *o = (Batch__V1__BatchOptions *)pbc_parse(PBC_OPTIONS,
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
        Batch__V1__BatchOptions *o = (Batch__V1__BatchOptions *)pbc_parse(PBC_OPTIONS, docs[i]);
        if (isnan(want[i]))
            cr_assert(isnan(o->max_rate));
        else
            cr_assert_eq(o->max_rate, want[i], "%s", docs[i]);
        protobuf_c_message_free_unpacked(&o->base, NULL);
    }
}

Test(pbjson_parse, null_leaves_fields_at_their_default)
{
    Batch__V1__SubmitBatchRequest *r = (Batch__V1__SubmitBatchRequest *)pbc_parse(PBC_SUBMIT,
        "{\"operations\":null,\"options\":null,\"requestId\":null,\"validateOnly\":null}");
    cr_assert_eq(r->n_operations, 0);
    cr_assert_null(r->options);
    cr_assert_str_eq(r->request_id, "");
    cr_assert_not(r->validate_only);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(pbjson_parse, item_result_timestamps_with_fractions_and_offsets)
{
    Batch__V1__ItemResult *r = (Batch__V1__ItemResult *)pbc_parse(PBC_ITEM,
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
    Batch__V1__ItemResult *r = (Batch__V1__ItemResult *)pbc_parse(PBC_ITEM,
        "{\"startTime\":\"0001-01-01T00:00:00Z\",\"endTime\":\"9999-12-31T23:59:59.999999999Z\"}");
    cr_assert_eq(r->start_time->seconds, -62135596800LL);
    cr_assert_eq(r->end_time->seconds, 253402300799LL);
    cr_assert_eq(r->end_time->nanos, 999999999);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(pbjson_parse, item_result_numbers_bytes_and_enums)
{
    Batch__V1__ItemResult *r = (Batch__V1__ItemResult *)pbc_parse(PBC_ITEM,
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
    Batch__V1__ItemResult *r = (Batch__V1__ItemResult *)pbc_parse(PBC_ITEM,
        "{\"sequence\":9223372036854775807}");
    cr_assert_eq(r->sequence, (uint64_t)INT64_MAX);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(pbjson_parse, status_error_with_any_details)
{
    Batch__V1__ItemResult *r = (Batch__V1__ItemResult *)pbc_parse(PBC_ITEM,
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
    Google__Protobuf__Any *a = (Google__Protobuf__Any *)pbc_parse(&google__protobuf__any__descriptor,
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
    const ProtobufCMessageDescriptor *types[] = {PBC_OPERATION};
    pbjson_options opt = {.any_types = types, .n_any_types = 1};
    Google__Protobuf__Any *a = (Google__Protobuf__Any *)pbc_parse_opt(&google__protobuf__any__descriptor,
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
    Batch__V1__SubmitBatchRequest *r = (Batch__V1__SubmitBatchRequest *)pbc_parse_opt(PBC_SUBMIT,
        "{\"future\":{\"x\":[1]},\"operations\":[{\"id\":\"a\",\"priority\":3}]}", &opt);
    cr_assert_eq(r->n_operations, 1);
    cr_assert_str_eq(r->operations[0]->id, "a");
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(pbjson_parse, unknown_enum_names_skipped_when_asked)
{
    pbjson_options opt = {.ignore_unknown_fields = true};
    Batch__V1__BatchOptions *o = (Batch__V1__BatchOptions *)pbc_parse_opt(PBC_OPTIONS,
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
        (Batch__V1__SubmitBatchRequest *)pbjson_parse(PBC_SUBMIT, j, NULL, &err);
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
    ProtobufCMessage *m = pbc_parse(PBC_SUBMIT, text);
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len);
    cr_assert_eq(protobuf_c_message_pack(m, buf), len);
    ProtobufCMessage *back = protobuf_c_message_unpack(PBC_SUBMIT, NULL, len, buf);
    cr_assert_not_null(back);
    char *a = pbc_print_opt(m, NULL), *b = pbc_print_opt(back, NULL);
    cr_assert_str_eq(a, b);
    cr_assert_str_eq(a, text);
    free(a);
    free(b);
    free(buf);
    protobuf_c_message_free_unpacked(back, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
}
