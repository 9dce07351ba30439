/* proto/pbjson.c on the real batch.v1 messages, refused documents: the exact error
 * messages, with JSON paths and text positions, and that failures free what was built. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "batch/v1/batch.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "pbjson.h"
#include "pbjson_check.h"

/* ---- parsing: refused documents, with exact messages ---- */

Test(pbjson_errors, unknown_field_names_its_path_and_type)
{
    pbc_expect_error(PBC_SUBMIT, "{\"operations\":[{\"id\":\"a\"},{\"bogus\":1}]}",
                     "operations[1].bogus: unknown field in batch.v1.Operation");
}

Test(pbjson_errors, unknown_field_at_the_top)
{
    pbc_expect_error(PBC_SUBMIT, "{\"requestID\":\"x\"}",
                     "requestID: unknown field in batch.v1.SubmitBatchRequest");
}

Test(pbjson_errors, wrong_type_for_a_number)
{
    pbc_expect_error(PBC_SUBMIT, "{\"options\":{\"maxConcurrency\":true}}",
                     "options.maxConcurrency: expected a number, got boolean");
    pbc_expect_error(PBC_SUBMIT, "{\"options\":{\"maxConcurrency\":\"ten\"}}",
                     "options.maxConcurrency: expected a number, got string \"ten\"");
}

Test(pbjson_errors, wrong_type_for_bool_string_message_and_array)
{
    pbc_expect_error(PBC_SUBMIT, "{\"validateOnly\":\"yes\"}",
                     "validateOnly: expected true or false, got string \"yes\"");
    pbc_expect_error(PBC_SUBMIT, "{\"requestId\":5}", "requestId: expected a string, got number");
    pbc_expect_error(PBC_SUBMIT, "{\"options\":[]}", "options: expected an object, got array");
    pbc_expect_error(PBC_SUBMIT, "{\"operations\":{}}", "operations: expected an array, got object");
    pbc_expect_error(PBC_OPERATION, "{\"headers\":[\"a\"]}", "headers: expected an object, got array");
    pbc_expect_error(PBC_SUBMIT, "[]", "expected an object, got array");
}

Test(pbjson_errors, integers_out_of_range_or_fractional)
{
    pbc_expect_error(PBC_OPTIONS, "{\"maxConcurrency\":-1}", "maxConcurrency: -1 is out of range for uint32");
    pbc_expect_error(PBC_OPTIONS, "{\"maxAttempts\":\"4294967296\"}",
                     "maxAttempts: 4294967296 is out of range for uint32");
    pbc_expect_error(PBC_ITEM, "{\"httpStatus\":2147483648}", "httpStatus: 2147483648 is out of range for int32");
    pbc_expect_error(PBC_ITEM, "{\"sequence\":\"18446744073709551616\"}",
                     "sequence: \"18446744073709551616\" is out of range for uint64");
    pbc_expect_error(PBC_OPTIONS, "{\"maxAttempts\":1.5}", "maxAttempts: expected an integer, got 1.5");
    pbc_expect_error(PBC_OPTIONS, "{\"maxAttempts\":\"2.0\"}", "maxAttempts: expected an integer, got \"2.0\"");
}

Test(pbjson_errors, bad_enum_name)
{
    pbc_expect_error(PBC_SUBMIT, "{\"options\":{\"mode\":\"MODE_FAST\"}}",
                     "options.mode: unknown value \"MODE_FAST\" for enum batch.v1.Mode");
    pbc_expect_error(PBC_OPTIONS, "{\"mode\":true}", "mode: expected an enum name or number, got boolean");
}

Test(pbjson_errors, bad_base64)
{
    pbc_expect_error(PBC_SUBMIT, "{\"operations\":[{\"raw\":\"aGV*bG8=\"}]}",
                     "operations[0].raw: invalid base64: unexpected character '*' at offset 3");
    pbc_expect_error(PBC_OPERATION, "{\"raw\":\"aGVsb\"}",
                     "raw: invalid base64: 5 characters cannot encode whole bytes");
    pbc_expect_error(PBC_OPERATION, "{\"raw\":\"aGVsbG8==\"}",
                     "raw: invalid base64: 9 characters cannot encode whole bytes");
    pbc_expect_error(PBC_OPERATION, "{\"raw\":\"aG=sbG8=\"}",
                     "raw: invalid base64: unexpected character '=' at offset 2");
}

Test(pbjson_errors, bad_duration)
{
    pbc_expect_error(PBC_SUBMIT,
                     "{\"operations\":[{},{},{},{\"timeout\":\"5x\"}]}",
                     "operations[3].timeout: invalid duration \"5x\" (expected e.g. \"1.5s\")");
    pbc_expect_error(PBC_OPERATION, "{\"timeout\":\"1.0000000001s\"}",
                     "timeout: invalid duration \"1.0000000001s\" (expected e.g. \"1.5s\")");
    pbc_expect_error(PBC_OPERATION, "{\"timeout\":\"1.s\"}",
                     "timeout: invalid duration \"1.s\" (expected e.g. \"1.5s\")");
    pbc_expect_error(PBC_OPERATION, "{\"timeout\":5}",
                     "timeout: expected a duration string such as \"1.5s\", got number");
    pbc_expect_error(PBC_OPERATION, "{\"timeout\":\"315576000001s\"}",
                     "timeout: duration \"315576000001s\" is out of range (at most 315576000000s either way)");
}

Test(pbjson_errors, bad_timestamp)
{
    pbc_expect_error(PBC_ITEM, "{\"startTime\":\"2026-02-29T10:00:00Z\"}",
                     "startTime: invalid timestamp \"2026-02-29T10:00:00Z\" "
                     "(expected RFC 3339, e.g. \"2026-11-22T10:00:00Z\")");
    pbc_expect_error(PBC_ITEM, "{\"startTime\":\"2026-11-22 10:00:00Z\"}",
                     "startTime: invalid timestamp \"2026-11-22 10:00:00Z\" "
                     "(expected RFC 3339, e.g. \"2026-11-22T10:00:00Z\")");
    pbc_expect_error(PBC_ITEM, "{\"endTime\":\"2026-11-22T10:00:00\"}",
                     "endTime: invalid timestamp \"2026-11-22T10:00:00\" "
                     "(expected RFC 3339, e.g. \"2026-11-22T10:00:00Z\")");
    pbc_expect_error(PBC_ITEM, "{\"endTime\":\"0001-01-01T00:30:00+01:00\"}",
                     "endTime: timestamp \"0001-01-01T00:30:00+01:00\" is out of range (years 0001 to 9999)");
}

Test(pbjson_errors, two_members_of_a_oneof)
{
    pbc_expect_error(PBC_SUBMIT, "{\"operations\":[{\"json\":{},\"raw\":\"AA==\"}]}",
                     "operations[0].raw: cannot be set together with \"json\" (members of one oneof)");
}

Test(pbjson_errors, a_null_oneof_member_does_not_conflict)
{
    Batch__V1__Operation *op = (Batch__V1__Operation *)pbc_parse(PBC_OPERATION, "{\"raw\":null,\"text\":\"t\"}");
    cr_assert_eq(op->body_case, BATCH__V1__OPERATION__BODY_TEXT);
    protobuf_c_message_free_unpacked(&op->base, NULL);
}

Test(pbjson_errors, the_same_field_under_both_names)
{
    pbc_expect_error(PBC_SUBMIT, "{\"requestId\":\"a\",\"request_id\":\"b\"}",
                     "request_id: field already given as \"requestId\"");
}

Test(pbjson_errors, nulls_inside_repeated_and_maps)
{
    pbc_expect_error(PBC_SUBMIT, "{\"operations\":[{},null]}",
                     "operations[1]: null is not allowed in a repeated field");
    pbc_expect_error(PBC_OPERATION, "{\"headers\":{\"X-A\":null}}",
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
    pbc_expect_error(PBC_SUBMIT, doc, "operations[0].json: nesting deeper than 64 levels");
}

Test(pbjson_errors, messages_nested_past_max_depth)
{
    pbjson_options opt = {.max_depth = 2};
    char *err = pbc_parse_error_opt(PBC_SUBMIT, "{\"operations\":[{\"timeout\":\"1s\"}]}", &opt, NULL);
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
    char *err = pbc_parse_error_opt(&google__protobuf__any__descriptor, doc, NULL, NULL);
    cr_assert(strstr(err, ": nesting deeper than 64 levels") != NULL, "%s", err);
    cr_assert(strncmp(err, "value.value.value.", 18) == 0, "%s", err);
    free(err);
    free(doc);
}

Test(pbjson_errors, any_of_an_unknown_type)
{
    pbc_expect_error(PBC_ITEM,
                     "{\"error\":{\"details\":[{\"@type\":\"type.googleapis.com/acme.Thing\",\"x\":1}]}}",
                     "error.details[0][\"@type\"]: cannot resolve Any type "
                     "\"type.googleapis.com/acme.Thing\" (not a type this program knows)");
    pbc_expect_error(&google__protobuf__any__descriptor, "{\"x\":1}", "an Any needs \"@type\"");
}

Test(pbjson_errors, invalid_json_reports_jansson_position)
{
    pbjson_position pos;
    char *err = pbc_parse_error_opt(PBC_SUBMIT, "{\"operations\":\n  [{},,{}]}", NULL, &pos);
    cr_assert_str_eq(err, "invalid JSON: unexpected token near ','");
    cr_assert_eq(pos.line, 2);
    cr_assert_eq(pos.column, 7);
    free(err);
}

Test(pbjson_errors, duplicate_member_names_are_invalid_json)
{
    char *err = pbc_parse_error_opt(PBC_SUBMIT, "{\"requestId\":\"a\",\"requestId\":\"b\"}", NULL, NULL);
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
    char *err = pbc_parse_error_opt(PBC_SUBMIT, doc, NULL, &pos);
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
    char *err = pbc_parse_error_opt(PBC_SUBMIT, doc, NULL, &pos);
    cr_assert_str_eq(err, "options[\"k\xc3\xa9y\\\"\"]: unknown field in batch.v1.BatchOptions");
    cr_assert_eq(pos.line, 2);
    cr_assert_eq(pos.column, 4);
    free(err);
}

Test(pbjson_errors, position_counts_characters_not_bytes)
{
    pbjson_position pos;
    const char *doc = "{\"requestId\": \"\xc3\xa9\xc3\xa9\", \"validateOnly\": 1}";
    char *err = pbc_parse_error_opt(PBC_SUBMIT, doc, NULL, &pos);
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
    ProtobufCMessage *m = pbjson_parse(PBC_SUBMIT, j, NULL, &err);
    json_decref(j);
    cr_assert_null(m);
    cr_assert_str_eq(err, "options.mode: unknown value \"NOPE\" for enum batch.v1.Mode");
    free(err);
}

Test(pbjson_errors, failures_deep_inside_free_what_was_built)
{
    /* Strings, maps, Values and Durations are already allocated when the last operation
     * fails; the sanitizer build turns any leak or double free here into a failure. */
    pbc_expect_error(PBC_SUBMIT,
                     "{\"requestId\":\"r\",\"options\":{\"labels\":{\"a\":\"b\"},\"itemTimeout\":\"1s\"},"
                     "\"operations\":[{\"id\":\"a\",\"headers\":{\"h\":\"v\"},\"json\":{\"x\":[1]}},"
                     "{\"raw\":\"AAAA\",\"timeout\":\"2s\"},{\"headers\":{\"k\":\"v\",\"bad\":7}}]}",
                     "operations[2].headers[\"bad\"]: expected a string, got number");
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
