/* proto/pbjson.c on the real batch.v1 messages, printing: what is written for each kind
 * of field and option, refused values, and round trips of canonical text through parsing
 * and printing. */
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

/* ---- printing ---- */

Test(pbjson_print, defaults_are_left_out)
{
    Batch__V1__SubmitBatchRequest r = BATCH__V1__SUBMIT_BATCH_REQUEST__INIT;
    pbc_expect_print(&r.base, NULL, "{}");
    Batch__V1__BatchOptions o = BATCH__V1__BATCH_OPTIONS__INIT;
    r.options = &o; /* a set message prints even when empty */
    pbc_expect_print(&r.base, NULL, "{\"options\":{}}");
}

Test(pbjson_print, emit_defaults_prints_fields_without_presence)
{
    Batch__V1__Operation op = BATCH__V1__OPERATION__INIT;
    pbjson_options opt = {.emit_defaults = true};
    /* not timeout (a message) nor json/raw/text (a oneof) */
    pbc_expect_print(&op.base, &opt,
                     "{\"id\":\"\",\"target\":\"\",\"method\":\"\",\"path\":\"\",\"headers\":{},"
                     "\"idempotencyKey\":\"\"}");
    Batch__V1__BatchOptions o = BATCH__V1__BATCH_OPTIONS__INIT;
    pbc_expect_print(&o.base, &opt,
                     "{\"maxConcurrency\":0,\"mode\":\"MODE_UNSPECIFIED\",\"stopOnFailure\":false,"
                     "\"maxAttempts\":0,\"maxRate\":0.0,\"labels\":{}}");
}

Test(pbjson_print, original_names_when_asked)
{
    Batch__V1__SubmitBatchRequest r = BATCH__V1__SUBMIT_BATCH_REQUEST__INIT;
    r.request_id = "r";
    r.validate_only = 1;
    pbjson_options opt = {.original_names = true};
    pbc_expect_print(&r.base, &opt, "{\"request_id\":\"r\",\"validate_only\":true}");
    pbc_expect_print(&r.base, NULL, "{\"requestId\":\"r\",\"validateOnly\":true}");
}

Test(pbjson_print, enums_by_name_unknown_ones_as_numbers)
{
    Batch__V1__ItemResult r = BATCH__V1__ITEM_RESULT__INIT;
    r.state = BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED;
    pbc_expect_print(&r.base, NULL, "{\"state\":\"ITEM_STATE_SUCCEEDED\"}");
    pbjson_options opt = {.enums_as_ints = true};
    pbc_expect_print(&r.base, &opt, "{\"state\":3}");
    r.state = (Batch__V1__ItemState)17;
    pbc_expect_print(&r.base, NULL, "{\"state\":17}");
}

Test(pbjson_print, sixty_four_bit_integers_as_strings)
{
    Batch__V1__ItemResult r = BATCH__V1__ITEM_RESULT__INIT;
    r.sequence = UINT64_MAX;
    r.http_status = -1;
    r.index = UINT32_MAX;
    pbc_expect_print(&r.base, NULL,
                     "{\"index\":4294967295,\"httpStatus\":-1,\"sequence\":\"18446744073709551615\"}");
}

Test(pbjson_print, bytes_as_padded_standard_base64)
{
    Batch__V1__ItemResult r = BATCH__V1__ITEM_RESULT__INIT;
    uint8_t body[] = {0xfb, 0xff, 0x00, 'h'};
    r.body.data = body;
    r.body.len = sizeof body;
    pbc_expect_print(&r.base, NULL, "{\"body\":\"+/8AaA==\"}");
    r.body.len = 2;
    pbc_expect_print(&r.base, NULL, "{\"body\":\"+/8=\"}");
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
        pbc_expect_print(&r.base, NULL, cases[i].want);
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
        pbc_expect_print(&op.base, NULL, cases[i].want);
    }
}

Test(pbjson_print, nan_and_infinities_as_strings)
{
    Batch__V1__BatchOptions o = BATCH__V1__BATCH_OPTIONS__INIT;
    o.max_rate = NAN;
    pbc_expect_print(&o.base, NULL, "{\"maxRate\":\"NaN\"}");
    o.max_rate = -INFINITY;
    pbc_expect_print(&o.base, NULL, "{\"maxRate\":\"-Infinity\"}");
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
    pbc_expect_print(&r.base, NULL,
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
    pbc_expect_print(&r.base, NULL, "{\"headers\":{\"content-type\":\"text/plain\",\"x-n\":\"\"}}");
}

Test(pbjson_print, wkt_at_the_top_is_not_an_object)
{
    Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
    d.seconds = 90;
    pbc_expect_print(&d.base, NULL, "\"90s\"");
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    pbc_expect_print(&v.base, NULL, "null"); /* an unset Value prints as null, as protobuf does */
}

Test(pbjson_print, refused_values_name_their_path)
{
    Batch__V1__ItemResult r = BATCH__V1__ITEM_RESULT__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts.nanos = 1000000000;
    r.end_time = &ts;
    pbc_expect_print_error(&r.base, "endTime: invalid Timestamp (seconds 0, nanos 1000000000)");

    Batch__V1__ItemResult r2 = BATCH__V1__ITEM_RESULT__INIT;
    Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
    d.seconds = 1;
    d.nanos = -1;
    r2.duration = &d;
    pbc_expect_print_error(&r2.base, "duration: invalid Duration (seconds 1, nanos -1)");

    Batch__V1__ItemResult r3 = BATCH__V1__ITEM_RESULT__INIT;
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    v.number_value = NAN;
    r3.json = &v;
    pbc_expect_print_error(&r3.base, "json: NaN and infinities are not JSON");

    Batch__V1__ItemResult r4 = BATCH__V1__ITEM_RESULT__INIT;
    r4.id = "\xff\xfe";
    pbc_expect_print_error(&r4.base, "id: string is not valid UTF-8");
}

Test(pbjson_print, any_of_an_unknown_type_is_refused)
{
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = "type.googleapis.com/acme.Thing";
    Google__Protobuf__Any *details[] = {&any};
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    st.n_details = 1;
    st.details = details;
    pbc_expect_print_error(&st.base, "details[0]: cannot print an Any of unknown type "
                                     "\"type.googleapis.com/acme.Thing\"");
}

/* ---- round trips ---- */

Test(pbjson_round_trip, submit_request_every_body_kind)
{
    pbc_expect_round_trip(PBC_SUBMIT,
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
    pbc_expect_round_trip(PBC_ITEM,
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
    pbc_expect_round_trip(&batch__v1__batch_event__descriptor,
        "{\"sequence\":\"5\",\"batch\":{\"id\":\"b1\",\"state\":\"BATCH_STATE_RUNNING\","
        "\"counts\":{\"total\":10,\"pending\":3,\"running\":2,\"succeeded\":4,\"failed\":1},"
        "\"progress\":0.5,\"createTime\":\"2026-11-22T10:00:00Z\","
        "\"options\":{\"maxConcurrency\":2},\"lastSequence\":\"5\"}}");
}

Test(pbjson_round_trip, any_of_well_known_types)
{
    pbc_expect_round_trip(&google__rpc__status__descriptor,
        "{\"details\":[{\"@type\":\"type.googleapis.com/google.protobuf.Duration\",\"value\":\"1s\"},"
        "{\"@type\":\"type.googleapis.com/google.protobuf.Struct\",\"value\":{\"a\":[1]}},"
        "{\"@type\":\"type.googleapis.com/google.protobuf.Any\",\"value\":{\"@type\":"
        "\"type.googleapis.com/google.protobuf.Timestamp\",\"value\":\"1970-01-01T00:00:00Z\"}},"
        "{\"@type\":\"type.googleapis.com/google.protobuf.Empty\"},{}]}");
}
