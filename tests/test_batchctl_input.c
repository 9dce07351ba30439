/* batchctl's input readers, without a server: the RFC 4180 CSV parser, CSV rows to
 * operations, NDJSON, and the streaming JSON document reader, each with the positions of
 * their errors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "input.h"
#include "pbjson.h"

/* ---- the CSV parser ----------------------------------------------------------------- */

typedef struct rows {
    char cells[16][8][64];
    size_t n_fields[16];
    unsigned line[16];
    size_t n;
    int rc;              /* the last csv_next: 0 at the end, -1 on an error */
    char why[160];
    unsigned err_line, err_col;
} rows;

static void parse_csv(const char *text, size_t len, rows *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fmemopen((void *)text, len, "r");
    cr_assert_not_null(f);
    csv_reader *r = csv_new(f);
    csv_record rec;
    while ((out->rc = csv_next(r, &rec)) == 1) {
        cr_assert_lt(out->n, 16);
        out->n_fields[out->n] = rec.n;
        out->line[out->n] = rec.line;
        for (size_t i = 0; i < rec.n && i < 8; i++)
            snprintf(out->cells[out->n][i], 64, "%s", rec.fields[i]);
        out->n++;
    }
    if (out->rc < 0)
        snprintf(out->why, sizeof out->why, "%s", csv_error(r, &out->err_line, &out->err_col));
    csv_free(r);
    fclose(f);
}

#define PARSE(text, rows) parse_csv(text, sizeof(text) - 1, rows)

Test(csv, quoted_fields_hold_commas_quotes_and_line_breaks)
{
    rows r;
    PARSE("id,note\n1,\"a, b\"\n2,\"say \"\"hi\"\"\"\n3,\"two\nlines\"\n4,plain\n", &r);
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(r.n, 5);
    cr_assert_str_eq(r.cells[1][1], "a, b");
    cr_assert_str_eq(r.cells[2][1], "say \"hi\"");
    cr_assert_str_eq(r.cells[3][1], "two\nlines");
    cr_assert_str_eq(r.cells[4][1], "plain");
    cr_assert_eq(r.line[4], 6, "a record after an embedded line break starts on line %u", r.line[4]);
}

Test(csv, crlf_bom_empty_fields_and_blank_lines)
{
    rows r;
    PARSE("\xEF\xBB\xBF" "a,b,c\r\n1,,3\r\n\r\n,\"\",\r\n", &r);
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(r.n, 3, "the blank line is no record");
    cr_assert_str_eq(r.cells[0][0], "a", "the byte order mark is not part of the first name");
    cr_assert_eq(r.n_fields[1], 3);
    cr_assert_str_eq(r.cells[1][1], "");
    cr_assert_str_eq(r.cells[1][2], "3", "CR is not part of the last field");
    cr_assert_eq(r.n_fields[2], 3);
    cr_assert_eq(r.line[2], 4);
}

Test(csv, last_record_without_line_break_and_lone_cr)
{
    rows r;
    PARSE("a,b\r1,2\r3,4", &r);
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(r.n, 3);
    cr_assert_str_eq(r.cells[2][1], "4");
    cr_assert_eq(r.line[2], 3);
}

Test(csv, quote_inside_an_unquoted_field_is_an_error_with_its_position)
{
    rows r;
    PARSE("a,b\n1,x\"y\n", &r);
    cr_assert_eq(r.rc, -1);
    cr_assert(strstr(r.why, "quote inside an unquoted field"), "%s", r.why);
    cr_assert_eq(r.err_line, 2);
    cr_assert_eq(r.err_col, 4);
}

Test(csv, text_after_a_closing_quote_is_an_error)
{
    rows r;
    PARSE("a,b\n\"x\"y,2\n", &r);
    cr_assert_eq(r.rc, -1);
    cr_assert(strstr(r.why, "after a closing quote"), "%s", r.why);
    cr_assert_eq(r.err_line, 2);
    cr_assert_eq(r.err_col, 4);
}

Test(csv, an_unclosed_quote_is_reported_where_it_opens)
{
    rows r;
    PARSE("a,b\n1,2\n3,\"never\nclosed\n", &r);
    cr_assert_eq(r.rc, -1);
    cr_assert(strstr(r.why, "never closed"), "%s", r.why);
    cr_assert_eq(r.err_line, 3);
    cr_assert_eq(r.err_col, 3);
}

Test(csv, columns_count_characters_not_bytes)
{
    rows r;
    PARSE("a,b\n\xC3\xA9t\xC3\xA9,x\"\n", &r); /* "été" is 3 characters, 5 bytes */
    cr_assert_eq(r.rc, -1);
    cr_assert_eq(r.err_col, 6);
}

/* ---- the readers ------------------------------------------------------------------- */

typedef struct got {
    Batch__V1__Operation *ops[64];
    uint32_t lines[64];
    size_t n;
    Batch__V1__SubmitBatchRequest *rest;
    input_error err;
    int rc;
} got;

static int collect(void *arg, Batch__V1__Operation *op, uint32_t line, input_error *err)
{
    got *g = arg;
    cr_assert_lt(g->n, 64);
    g->ops[g->n] = op;
    g->lines[g->n++] = line;
    return 0;
}

static got *read_text(input_format fmt, const char *text, const input_csv_spec *csv)
{
    got *g = calloc(1, sizeof *g);
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    cr_assert_not_null(f);
    input_source src = {.f = f, .format = fmt, .csv = csv, .sink = collect, .arg = g};
    g->rc = input_read(&src, &g->err);
    g->rest = src.rest;
    fclose(f);
    return g;
}

static void got_free(got *g)
{
    for (size_t i = 0; i < g->n; i++)
        batch__v1__operation__free_unpacked(g->ops[i], NULL);
    if (g->rest)
        batch__v1__submit_batch_request__free_unpacked(g->rest, NULL);
    free(g);
}

/* The body of op as compact JSON (caller frees). */
static char *body_json(const Batch__V1__Operation *op)
{
    cr_assert_eq(op->body_case, BATCH__V1__OPERATION__BODY_JSON);
    char *s = pbjson_print_text(&op->json->base, NULL, JSON_COMPACT | JSON_SORT_KEYS, NULL);
    cr_assert_not_null(s);
    return s;
}

static void assert_error(const got *g, unsigned line, unsigned col, const char *needle)
{
    cr_assert_eq(g->rc, -1, "no error; wanted %s", needle);
    cr_assert(strstr(g->err.msg, needle), "error \"%s\" lacks \"%s\"", g->err.msg, needle);
    cr_assert_eq(g->err.line, line, "%s: line %u, not %u", g->err.msg, g->err.line, line);
    cr_assert_eq(g->err.column, col, "%s: column %u, not %u", g->err.msg, g->err.column, col);
}

Test(input_csv, path_placeholders_are_url_encoded_and_the_rest_is_a_typed_body)
{
    input_csv_spec spec = {.method = "PUT", .path = "/users/{id}?team={team}", .id_column = "id"};
    got *g = read_text(INPUT_CSV,
                       "id,team,name,age,score,active,deleted,zip,phone,note\n"
                       "a b/c,R&D,Ada,36,-1.5e3,true,null,007,123456789012345678,\"x, y\"\n",
                       &spec);
    cr_assert_eq(g->rc, 0, "%s", g->err.msg);
    cr_assert_eq(g->n, 1);
    Batch__V1__Operation *op = g->ops[0];
    cr_assert_str_eq(op->id, "a b/c");
    cr_assert_str_eq(op->method, "PUT");
    cr_assert_str_eq(op->path, "/users/a%20b%2Fc?team=R%26D");
    char *body = body_json(op);
    /* id and team went into the path: the body has the other columns. */
    cr_assert_str_eq(body, "{\"active\":true,\"age\":36,\"deleted\":null,\"name\":\"Ada\","
                           "\"note\":\"x, y\",\"phone\":\"123456789012345678\",\"score\":-1500,\"zip\":\"007\"}",
                     "%s", body);
    free(body);
    got_free(g);
}

Test(input_csv, csv_strings_keeps_every_value_a_string)
{
    input_csv_spec spec = {.path = "/users", .strings = 1};
    got *g = read_text(INPUT_CSV, "name,age,active\nAda,36,true\n", &spec);
    cr_assert_eq(g->rc, 0, "%s", g->err.msg);
    char *body = body_json(g->ops[0]);
    cr_assert_str_eq(body, "{\"active\":\"true\",\"age\":\"36\",\"name\":\"Ada\"}", "%s", body);
    cr_assert_str_eq(g->ops[0]->method, "POST", "POST is the default method");
    free(body);
    got_free(g);
}

Test(input_csv, ids_default_to_the_row_number_and_lines_follow_records)
{
    input_csv_spec spec = {.path = "/items/{sku}"};
    got *g = read_text(INPUT_CSV, "sku,desc\nA1,\"multi\nline\"\n\nB2,x\nC3,y\n", &spec);
    cr_assert_eq(g->rc, 0, "%s", g->err.msg);
    cr_assert_eq(g->n, 3);
    cr_assert_str_eq(g->ops[0]->id, "1");
    cr_assert_str_eq(g->ops[1]->id, "2");
    cr_assert_str_eq(g->ops[2]->id, "3");
    cr_assert_eq(g->lines[0], 2);
    cr_assert_eq(g->lines[1], 5);
    cr_assert_eq(g->lines[2], 6);
    cr_assert_str_eq(g->ops[1]->path, "/items/B2");
    got_free(g);
}

Test(input_csv, a_row_with_too_many_fields_points_at_the_first_extra_one)
{
    input_csv_spec spec = {.path = "/u"};
    got *g = read_text(INPUT_CSV, "a,b\n1,2\n3,4,5\n", &spec);
    assert_error(g, 3, 5, "row 2 has 3 fields, the header has 2");
    cr_assert_eq(g->n, 1);
    got_free(g);
}

Test(input_csv, a_row_with_too_few_fields_points_at_its_end)
{
    input_csv_spec spec = {.path = "/u"};
    got *g = read_text(INPUT_CSV, "a,b,c\n1,2,3\n4,5\n6,7,8\n", &spec);
    assert_error(g, 3, 4, "row 2 has 2 fields, the header has 3");
    got_free(g);
}

Test(input_csv, placeholders_and_id_column_must_name_columns)
{
    input_csv_spec spec = {.path = "/users/{uid}"};
    got *g = read_text(INPUT_CSV, "id,name\n1,a\n", &spec);
    cr_assert_eq(g->rc, -1);
    cr_assert(strstr(g->err.msg, "--path names the column \"uid\"") && strstr(g->err.msg, "columns: id, name"),
              "%s", g->err.msg);
    got_free(g);
    input_csv_spec spec2 = {.path = "/users", .id_column = "key"};
    g = read_text(INPUT_CSV, "id,name\n1,a\n", &spec2);
    cr_assert(strstr(g->err.msg, "--id-column names the column \"key\""), "%s", g->err.msg);
    got_free(g);
    input_csv_spec spec3 = {0};
    g = read_text(INPUT_CSV, "id,name\n1,a\n", &spec3);
    cr_assert(strstr(g->err.msg, "needs --path"), "%s", g->err.msg);
    got_free(g);
    input_csv_spec spec4 = {.path = "users/{id}"};
    g = read_text(INPUT_CSV, "id,name\n1,a\n", &spec4);
    cr_assert(strstr(g->err.msg, "--path must start with \"/\""), "%s", g->err.msg);
    cr_assert_eq(g->n, 0);
    got_free(g);
}

Test(input_csv, empty_ids_bad_utf8_and_duplicate_columns_are_errors)
{
    input_csv_spec spec = {.path = "/u", .id_column = "id"};
    got *g = read_text(INPUT_CSV, "id,name\n1,a\n,b\n", &spec);
    assert_error(g, 3, 1, "empty id");
    got_free(g);
    g = read_text(INPUT_CSV, "id,name\n1,caf\xE9\n", &spec);
    assert_error(g, 2, 3, "not valid UTF-8");
    got_free(g);
    g = read_text(INPUT_CSV, "id,name,id\n1,a,2\n", &spec);
    assert_error(g, 1, 9, "appears twice");
    got_free(g);
}

Test(input_ndjson, one_operation_per_line_blank_lines_skipped)
{
    got *g = read_text(INPUT_NDJSON,
                       "{\"id\":\"a\",\"method\":\"GET\",\"path\":\"/a\"}\n"
                       "\n"
                       "   \r\n"
                       "{\"id\":\"b\",\"method\":\"POST\",\"path\":\"/b\",\"json\":{\"n\":1},\"idempotency_key\":\"k\"}\r\n",
                       NULL);
    cr_assert_eq(g->rc, 0, "%s", g->err.msg);
    cr_assert_eq(g->n, 2);
    cr_assert_eq(g->lines[1], 4);
    cr_assert_str_eq(g->ops[1]->idempotency_key, "k", "original field names are accepted");
    got_free(g);
}

Test(input_ndjson, errors_carry_line_and_column)
{
    got *g = read_text(INPUT_NDJSON,
                       "{\"id\":\"a\",\"method\":\"GET\",\"path\":\"/a\"}\n"
                       "{\"id\":\"b\",\"method\":\"GET\",\"pathh\":\"/b\"}\n",
                       NULL);
    assert_error(g, 2, 26, "pathh: unknown field");
    got_free(g);
    g = read_text(INPUT_NDJSON, "\n\n{\"id\":\"a\",\"timeout\":5}\n", NULL);
    assert_error(g, 3, 21, "timeout: expected a duration string");
    got_free(g);
    g = read_text(INPUT_NDJSON, "{\"id\":\"a\",\n", NULL);
    cr_assert_eq(g->rc, -1);
    cr_assert(strstr(g->err.msg, "invalid JSON"), "%s", g->err.msg);
    cr_assert_eq(g->err.line, 1);
    got_free(g);
}

Test(input_ndjson, a_batch_document_on_a_line_gets_a_hint)
{
    got *g = read_text(INPUT_NDJSON, "{\"operations\":[]}\n", NULL);
    cr_assert_eq(g->rc, -1);
    cr_assert(strstr(g->err.msg, "use a .json file or --format json"), "%s", g->err.msg);
    got_free(g);
}

Test(input_json, operations_stream_with_their_lines_and_other_fields_are_kept)
{
    got *g = read_text(INPUT_JSON,
                       "{\n"
                       "  \"requestId\": \"r-1\",\n"
                       "  \"operations\": [\n"
                       "    {\"id\": \"u1\", \"method\": \"POST\", \"path\": \"/users\", \"json\": {\"name\": \"Ada\"}},\n"
                       "    {\"id\": \"u2\", \"method\": \"GET\",\n"
                       "     \"path\": \"/users/2\", \"timeout\": \"1.5s\"}\n"
                       "  ],\n"
                       "  \"options\": {\"maxConcurrency\": 20, \"max_attempts\": 3, \"labels\": {\"a\": \"b\"}},\n"
                       "  \"validate_only\": true\n"
                       "}\n",
                       NULL);
    cr_assert_eq(g->rc, 0, "%s at %u:%u", g->err.msg, g->err.line, g->err.column);
    cr_assert_eq(g->n, 2);
    cr_assert_eq(g->lines[0], 4);
    cr_assert_eq(g->lines[1], 5);
    cr_assert_eq(g->ops[1]->timeout->seconds, 1);
    cr_assert_not_null(g->rest);
    cr_assert_str_eq(g->rest->request_id, "r-1");
    cr_assert(g->rest->validate_only);
    cr_assert_eq(g->rest->options->max_concurrency, 20);
    cr_assert_eq(g->rest->options->max_attempts, 3, "original field names are accepted");
    cr_assert_eq(g->rest->options->n_labels, 1);
    got_free(g);
}

Test(input_json, a_wrong_type_in_an_operation_names_its_path_and_place_in_the_file)
{
    got *g = read_text(INPUT_JSON,
                       "{\"operations\": [\n"
                       "  {\"id\": \"a\", \"method\": \"GET\", \"path\": \"/a\"},\n"
                       "  {\"id\": \"b\", \"method\": \"GET\", \"path\": \"/b\",\n"
                       "   \"headers\": {\"X-N\": 5}}\n"
                       "]}\n",
                       NULL);
    assert_error(g, 4, 23, "operations[1].headers[\"X-N\"]: expected a string, got number");
    got_free(g);
}

Test(input_json, unknown_fields_are_reported_at_their_name)
{
    got *g = read_text(INPUT_JSON, "{\"operations\": [{\"id\": \"a\", \"methd\": \"GET\"}]}", NULL);
    assert_error(g, 1, 29, "operations[0].methd: unknown field");
    got_free(g);
    g = read_text(INPUT_JSON, "{\"operations\": [],\n \"option\": {}}", NULL);
    assert_error(g, 2, 2, "option: unknown field");
    got_free(g);
    g = read_text(INPUT_JSON, "{\"options\": {\"maxConcurrency\": \"x\"}}", NULL);
    assert_error(g, 1, 32, "options.maxConcurrency");
    got_free(g);
}

Test(input_json, syntax_errors_are_found_where_the_text_breaks)
{
    got *g = read_text(INPUT_JSON, "{\"operations\": [\n  {\"id\": \"a\" \"method\": \"GET\"}\n]}", NULL);
    cr_assert_eq(g->rc, -1);
    cr_assert(strstr(g->err.msg, "invalid JSON"), "%s", g->err.msg);
    cr_assert_eq(g->err.line, 2);
    cr_assert_gt(g->err.column, 11);
    got_free(g);
    g = read_text(INPUT_JSON, "{\"operations\": [\n  {\"id\": [1, 2}\n]}", NULL);
    assert_error(g, 2, 15, "'}' closes an array");
    got_free(g);
    g = read_text(INPUT_JSON, "{\"operations\": [{\"id\": \"a\"}]} trailing", NULL);
    assert_error(g, 1, 31, "text after the end of the document");
    got_free(g);
    g = read_text(INPUT_JSON, "{\"operations\": [{\"id\": \"a\"},\n", NULL);
    cr_assert_eq(g->rc, -1);
    cr_assert(strstr(g->err.msg, "end of file"), "%s", g->err.msg);
    got_free(g);
}

Test(input_json, arrays_and_duplicate_fields_are_refused)
{
    got *g = read_text(INPUT_JSON, "[{\"id\": \"a\"}]", NULL);
    assert_error(g, 1, 1, "use a .ndjson file or --format ndjson");
    got_free(g);
    g = read_text(INPUT_JSON, "{\"requestId\": \"a\", \"request_id\": \"b\"}", NULL);
    assert_error(g, 1, 20, "duplicate field");
    got_free(g);
}

Test(input_json, a_byte_order_mark_and_null_operations_are_accepted)
{
    got *g = read_text(INPUT_JSON, "\xEF\xBB\xBF{\"operations\": null}", NULL);
    cr_assert_eq(g->rc, 0, "%s", g->err.msg);
    cr_assert_eq(g->n, 0);
    got_free(g);
}

Test(input, formats_come_from_names)
{
    cr_assert_eq(input_format_from_name("a/b.json"), INPUT_JSON);
    cr_assert_eq(input_format_from_name("ops.NDJSON"), INPUT_NDJSON);
    cr_assert_eq(input_format_from_name("ops.jsonl"), INPUT_NDJSON);
    cr_assert_eq(input_format_from_name("users.csv"), INPUT_CSV);
    cr_assert_eq(input_format_from_name("dir.csv/data"), INPUT_AUTO);
    cr_assert_eq(input_format_from_name("README"), INPUT_AUTO);
}
