/* batchctl end to end: the built binary, run as a child process against a real batchd (in
 * this process, on an ephemeral port) and a real loopback upstream. Inputs in every format,
 * the exit statuses, results files, positioned errors and the other commands. Retry is in
 * test_batchctl_retry.c; watch reconnection, Ctrl-C, the progress display and help are in
 * test_batchctl_watch.c; the helpers that run batchctl are in support/batchctl_run.c. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchctl_run.h"
#include "harness.h"

#define EXAMPLES BATCHD_SOURCE_DIR "/examples"

/* ---- submit: formats, results, exit statuses ---------------------------------------- */

Test(batchctl, a_json_document_is_submitted_followed_and_its_results_printed)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    br_ran r = br_ctl(h, &s, "submit", EXAMPLES "/batch.json", NULL);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    br_jlines j;
    br_jlines_parse(&j, r.out);
    const char *ids[] = {"ada", "grace", "alan", "ada-profile", "old-account"};
    cr_assert_eq(j.n, 5, "%s", r.out);
    for (size_t i = 0; i < 5; i++) {
        cr_assert_str_eq(br_jstr(j.v[i], "id"), ids[i], "results come in input order");
        cr_assert_str_eq(br_jstr(j.v[i], "state"), "ITEM_STATE_SUCCEEDED");
    }
    cr_assert(strstr(r.err, "SUCCEEDED: 5 succeeded, 0 failed, 0 cancelled of 5"), "%s", r.err);
    Batch__V1__Batch *b = br_newest(h);
    cr_assert_eq(b->options->max_concurrency, 4, "the document's options are used");
    cr_assert_str_eq(br_label(b, "example"), "batch-json");
    batch__v1__batch__free_unpacked(b, NULL);
    br_jlines_free(&j);
    br_ran_free(&r);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl, flags_override_the_documents_options)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    br_ran r = br_ctl(h, &s, "submit", EXAMPLES "/batch.json", "--concurrency", "2", "--attempts", "2",
                      "--item-timeout", "3s", "--rate", "100", "--label", "example=override", "-l", "extra=1",
                      "--quiet", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_str_eq(r.err, "", "--quiet prints nothing on stderr");
    Batch__V1__Batch *b = br_newest(h);
    cr_assert_eq(b->options->max_concurrency, 2);
    cr_assert_eq(b->options->max_attempts, 2);
    cr_assert_eq(b->options->item_timeout->seconds, 3);
    cr_assert_float_eq(b->options->max_rate, 100, 1e-9);
    cr_assert_str_eq(br_label(b, "example"), "override");
    cr_assert_str_eq(br_label(b, "extra"), "1");
    batch__v1__batch__free_unpacked(b, NULL);
    br_ran_free(&r);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl, ndjson_with_failed_items_exits_2)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    br_ran r = br_ctl(h, &s, "submit", EXAMPLES "/batch.ndjson", NULL);
    cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
    br_jlines j;
    br_jlines_parse(&j, r.out);
    cr_assert_eq(j.n, 6);
    cr_assert_str_eq(br_jstr(j.v[3], "id"), "order-1004");
    cr_assert_str_eq(br_jstr(j.v[3], "state"), "ITEM_STATE_FAILED");
    cr_assert_eq(json_integer_value(json_object_get(j.v[3], "httpStatus")), 404);
    cr_assert(strstr(r.err, "COMPLETED_WITH_FAILURES: 4 succeeded, 2 failed"), "%s", r.err);
    cr_assert(strstr(r.err, "retry them:    batchctl retry "), "%s", r.err);
    br_jlines_free(&j);
    br_ran_free(&r);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl, a_csv_import_writes_a_results_csv_in_input_order)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    char *csv = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&csv, &len);
    fprintf(f, "id,name,status\n");
    for (int i = 1; i <= 40; i++) /* every 7th row fails; later rows are faster, so they end first */
        fprintf(f, "r%02d,\"Name, %d\",%d\n", i, i, i % 7 == 0 ? 500 : 200);
    fclose(f);
    br_put(&s, "users.csv", csv);
    char file[256], results[256];
    snprintf(file, sizeof file, "%s/users.csv", s.dir);
    snprintf(results, sizeof results, "%s/results.csv", s.dir);
    br_ran r = br_ctl(h, &s, "submit", file, "--path", "/users/{id}?status={status}", "--id-column", "id", "-o",
                      results, NULL);
    cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
    cr_assert_str_eq(r.out, "", "the results went to the file");
    char *got = br_slurp(results);
    char *want = NULL;
    f = open_memstream(&want, &len);
    fprintf(f, "id,state,http_status,error\n");
    for (int i = 1; i <= 40; i++)
        fprintf(f, i % 7 == 0 ? "r%02d,FAILED,500,HTTP 500 Internal Server Error\n" : "r%02d,SUCCEEDED,200,\n", i);
    fclose(f);
    cr_assert_str_eq(got, want);
    free(got);
    free(want);
    free(csv);
    br_ran_free(&r);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl, csv_bodies_are_typed_unless_csv_strings)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    const char *file = br_put(&s, "people.csv", "key,name,age,vip,note\nx/1,Ada,36,true,null\n");
    char path[256];
    snprintf(path, sizeof path, "%s", file);
    for (int strings = 0; strings < 2; strings++) {
        br_ran r = br_ctl(h, &s, "submit", path, "--path", "/people/{key}?echo=1", "--id-column", "key",
                          strings ? "--csv-strings" : "--quiet", NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        br_jlines j;
        br_jlines_parse(&j, r.out);
        cr_assert_eq(j.n, 1);
        cr_assert_str_eq(br_jstr(j.v[0], "id"), "x/1");
        json_t *echo = json_object_get(j.v[0], "json");
        cr_assert_str_eq(br_jstr(echo, "path"), "/people/x%2F1", "the placeholder is URL-encoded");
        json_error_t e;
        json_t *body = json_loads(br_jstr(echo, "body"), 0, &e);
        cr_assert_not_null(body, "%s", br_jstr(echo, "body"));
        cr_assert_null(json_object_get(body, "key"), "a column used in the path is not in the body");
        cr_assert_str_eq(br_jstr(body, "name"), "Ada");
        if (strings) {
            cr_assert_str_eq(br_jstr(body, "age"), "36");
            cr_assert_str_eq(br_jstr(body, "vip"), "true");
            cr_assert_str_eq(br_jstr(body, "note"), "null");
        } else {
            cr_assert_eq(json_number_value(json_object_get(body, "age")), 36);
            cr_assert(json_is_true(json_object_get(body, "vip")));
            cr_assert(json_is_null(json_object_get(body, "note")));
        }
        json_decref(body);
        br_jlines_free(&j);
        br_ran_free(&r);
    }
    br_scratch_close(&s);
    h_stop(h);
}

/* ---- not accepted: exit 1, nothing created ------------------------------------------ */

static void assert_nothing_ran(harness *h)
{
    cr_assert_eq(br_n_batches(h), 0, "a batch was created");
    upstream_stats us;
    upstream_get_stats(h->up, &us);
    cr_assert_eq(us.requests, 0, "the upstream was called");
}

Test(batchctl, server_violations_are_printed_with_their_input_lines)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    br_put(&s, "bad.ndjson",
           "{\"id\":\"a\",\"method\":\"GET\",\"path\":\"/ok\"}\n"
           "\n"
           "{\"id\":\"b\",\"method\":\"GET\",\"path\":\"no-slash\"}\n"
           "{\"id\":\"c\",\"method\":\"GET\",\"path\":\"/ok\"}\n"
           "{\"id\":\"d\",\"method\":\"FETCH\",\"path\":\"/ok\"}\n");
    char file[256];
    snprintf(file, sizeof file, "%s", s.path);
    br_ran r = br_ctl(h, &s, "submit", file, NULL);
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    char want[512];
    snprintf(want, sizeof want, "%s:3: operations[1].path: must start with", file);
    cr_assert(strstr(r.err, want), "want %s in:\n%s", want, r.err);
    snprintf(want, sizeof want, "%s:5: operations[3].method: ", file);
    cr_assert(strstr(r.err, want), "want %s in:\n%s", want, r.err);
    br_ran_free(&r);
    /* CSV: the line of a record, after a quoted field that spans two lines. */
    br_put(&s, "dup.csv", "id,note\na,\"two\nlines\"\nb,x\na,y\n");
    snprintf(file, sizeof file, "%s", s.path);
    r = br_ctl(h, &s, "submit", file, "--path", "/users", "--id-column", "id", NULL);
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    snprintf(want, sizeof want, "%s:5: operations[2].id: ", file);
    cr_assert(strstr(r.err, want), "want %s in:\n%s", want, r.err);
    br_ran_free(&r);
    assert_nothing_ran(h);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl, malformed_inputs_are_positioned_and_nothing_is_submitted)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    struct {
        const char *name, *text, *where, *what;
    } cases[] = {
        {"bad.json", "{\"operations\": [\n  {\"id\": \"a\", \"method\": \"GET\" \"path\": \"/x\"}\n]}\n", ":2:",
         "invalid JSON"},
        {"ragged.csv", "id,name\n1,a\n2,b,c\n", ":3:5:", "row 2 has 3 fields, the header has 2"},
        {"unknown.ndjson", "{\"id\":\"a\",\"method\":\"GET\",\"paht\":\"/x\"}\n", ":1:26:", "paht: unknown field"},
        {"type.json", "{\"operations\":[{\"id\":\"a\",\"method\":\"GET\",\"path\":\"/x\",\"timeout\":5}]}", ":1:63:",
         "operations[0].timeout: expected a duration string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char file[256], want[512];
        snprintf(file, sizeof file, "%s", br_put(&s, cases[i].name, cases[i].text));
        br_ran r = strstr(file, ".csv") ? br_ctl(h, &s, "submit", file, "--path", "/x", NULL)
                                        : br_ctl(h, &s, "submit", file, NULL);
        cr_assert_eq(r.status, 1, "%s: exit %d", cases[i].name, r.status);
        snprintf(want, sizeof want, "%s%s", file, cases[i].where);
        cr_assert(strstr(r.err, want) && strstr(r.err, cases[i].what), "%s: want %s ... %s in:\n%s", cases[i].name,
                  want, cases[i].what, r.err);
        cr_assert(strstr(r.err, "nothing was submitted"), "%s", r.err);
        br_ran_free(&r);
    }
    /* An --output that cannot be written is found before anything is sent. */
    br_ran r = br_ctl(h, &s, "submit", EXAMPLES "/batch.json", "-o", "/nonexistent/results.csv", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "cannot write the results to /nonexistent/results.csv"), "%s", r.err);
    br_ran_free(&r);
    assert_nothing_ran(h);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl, usage_and_connection_errors_exit_1)
{
    br_scratch s;
    br_scratch_open(&s);
    br_ran r = br_ctl(NULL, &s, "submit", EXAMPLES "/batch.json", NULL); /* $BATCHD_SERVER=127.0.0.1:1 */
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "cannot reach batchd at 127.0.0.1:1"), "%s", r.err);
    br_ran_free(&r);
    r = br_ctl(NULL, &s, "submit", EXAMPLES "/users.csv", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "needs --path"), "%s", r.err);
    br_ran_free(&r);
    r = br_ctl(NULL, &s, "submit", EXAMPLES "/batch.json", "--path", "/x", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "apply to CSV input only"), "%s", r.err);
    br_ran_free(&r);
    r = br_ctl(NULL, &s, "submit", "-", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "give --format"), "%s", r.err);
    br_ran_free(&r);
    r = br_ctl(NULL, &s, "submit", "/nonexistent/ops.ndjson", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "cannot read /nonexistent/ops.ndjson: No such file"), "%s", r.err);
    br_ran_free(&r);
    r = br_ctl(NULL, &s, "submit", "--bogus", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "unknown flag '--bogus'") && strstr(r.err, "Try 'batchctl submit --help'"), "%s", r.err);
    br_ran_free(&r);
    br_scratch_close(&s);
}

Test(batchctl, too_many_items_names_the_servers_limit)
{
    const char *args[] = {"--max-items", "3", NULL};
    harness *h = h_start(args);
    br_scratch s;
    br_scratch_open(&s);
    br_ran r = br_ctl(h, &s, "submit", EXAMPLES "/batch.json", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "takes at most 3 operations per batch (batchd --max-items)"), "%s", r.err);
    br_ran_free(&r);
    assert_nothing_ran(h);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl, validate_only_checks_on_the_server_and_creates_nothing)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    br_ran r = br_ctl(h, &s, "submit", EXAMPLES "/batch.ndjson", "--validate-only", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.err, "6 operations are valid; nothing was created"), "%s", r.err);
    br_ran_free(&r);
    assert_nothing_ran(h);
    br_scratch_close(&s);
    h_stop(h);
}

/* ---- the other commands ------------------------------------------------------------ */

Test(batchctl, async_prints_the_id_and_watch_follows_the_batch)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    br_ran r = br_ctl(h, &s, "submit", EXAMPLES "/batch.ndjson", "--async", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_eq(strlen(r.out), 27, "stdout is the id and a newline: %s", r.out);
    char id[32];
    snprintf(id, sizeof id, "%.26s", r.out);
    char hint[96];
    snprintf(hint, sizeof hint, "follow it with: batchctl watch %s", id);
    cr_assert(strstr(r.err, hint), "%s", r.err);
    br_ran_free(&r);

    r = br_ctl(h, &s, "watch", id, NULL);
    cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "COMPLETED_WITH_FAILURES: 4 succeeded, 2 failed"), "%s", r.err);
    br_ran_free(&r);

    /* --json: the snapshot, every item (replayed, the batch has ended), the final state. */
    r = br_ctl(h, &s, "watch", id, "--json", "--quiet", NULL);
    cr_assert_eq(r.status, 2);
    br_jlines j;
    br_jlines_parse(&j, r.out);
    cr_assert_eq(j.n, 8, "%s", r.out);
    cr_assert_not_null(json_object_get(j.v[0], "batch"));
    for (size_t i = 1; i <= 6; i++)
        cr_assert_not_null(json_object_get(j.v[i], "item"), "line %zu: %s", i, r.out);
    cr_assert_str_eq(br_jstr(json_object_get(j.v[7], "batch"), "state"), "BATCH_STATE_COMPLETED_WITH_FAILURES");
    br_jlines_free(&j);
    br_ran_free(&r);
    br_scratch_close(&s);
    h_stop(h);
}

Test(batchctl, get_list_cancel_and_results)
{
    harness *h = h_start(NULL);
    br_scratch s;
    br_scratch_open(&s);
    br_ran r = br_ctl(h, &s, "submit", EXAMPLES "/batch.json", "-l", "team=a", "-q", NULL);
    cr_assert_eq(r.status, 0);
    br_ran_free(&r);
    Batch__V1__Batch *a = br_newest(h);
    const char *slow = br_put(&s, "slow.ndjson",
                              "{\"id\":\"s1\",\"method\":\"GET\",\"path\":\"/s1?delay_ms=5000\"}\n"
                              "{\"id\":\"s2\",\"method\":\"GET\",\"path\":\"/s2?delay_ms=5000\"}\n"
                              "{\"id\":\"s3\",\"method\":\"GET\",\"path\":\"/s3?delay_ms=5000\"}\n");
    char file[256];
    snprintf(file, sizeof file, "%s", slow);
    r = br_ctl(h, &s, "submit", file, "--async", "--concurrency", "1", "-l", "team=b", NULL);
    cr_assert_eq(r.status, 0);
    char b[32];
    snprintf(b, sizeof b, "%.26s", r.out);
    br_ran_free(&r);

    r = br_ctl(h, &s, "get", a->id, NULL);
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "state:       SUCCEEDED\n") && strstr(r.out, "progress:    5/5 (100%)") &&
              strstr(r.out, "team=a"), "%s", r.out);
    br_ran_free(&r);
    r = br_ctl(h, &s, "get", b, "--json", NULL);
    cr_assert_eq(r.status, 0);
    json_t *jb = json_loads(r.out, 0, NULL);
    cr_assert_str_eq(br_jstr(jb, "state"), "BATCH_STATE_RUNNING", "%s", r.out);
    json_decref(jb);
    br_ran_free(&r);

    r = br_ctl(h, &s, "list", NULL);
    cr_assert_eq(r.status, 0);
    cr_assert(strncmp(r.out, "ID ", 3) == 0 && strstr(r.out, "STATE") && strstr(r.out, a->id) && strstr(r.out, b),
              "%s", r.out);
    cr_assert_lt(strstr(r.out, b), strstr(r.out, a->id), "newest first");
    br_ran_free(&r);
    r = br_ctl(h, &s, "list", "--label", "team=a", "--json", NULL);
    br_jlines j;
    br_jlines_parse(&j, r.out);
    cr_assert_eq(j.n, 1);
    cr_assert_str_eq(br_jstr(j.v[0], "id"), a->id);
    br_jlines_free(&j);
    br_ran_free(&r);
    r = br_ctl(h, &s, "list", "--state", "running", "--json", NULL);
    br_jlines_parse(&j, r.out);
    cr_assert_eq(j.n, 1);
    cr_assert_str_eq(br_jstr(j.v[0], "id"), b);
    br_jlines_free(&j);
    br_ran_free(&r);
    r = br_ctl(h, &s, "list", "-n", "1", NULL);
    cr_assert(strstr(r.out, b) && !strstr(r.out, a->id), "%s", r.out);
    br_ran_free(&r);

    r = br_ctl(h, &s, "cancel", b, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "CANCELLED") && !strstr(r.out, "already"), "%s", r.out);
    br_ran_free(&r);
    Batch__V1__Batch *cb = h_wait_end(h, b, 10);
    cr_assert_eq(cb->state, BATCH__V1__BATCH_STATE__BATCH_STATE_CANCELLED);
    batch__v1__batch__free_unpacked(cb, NULL);
    r = br_ctl(h, &s, "cancel", b, NULL);
    cr_assert(strstr(r.out, "had already ended CANCELLED"), "%s", r.out);
    br_ran_free(&r);

    r = br_ctl(h, &s, "results", b, "--state", "cancelled", "--format-out", "csv", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_str_eq(r.out, "id,state,http_status,error\n"
                            "s1,CANCELLED,,cancelled by CancelBatch\n"
                            "s2,CANCELLED,,cancelled by CancelBatch\n"
                            "s3,CANCELLED,,cancelled by CancelBatch\n");
    br_ran_free(&r);
    char out[256];
    snprintf(out, sizeof out, "%s/a.json", s.dir);
    r = br_ctl(h, &s, "results", a->id, "-o", out, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char *text = br_slurp(out);
    json_t *arr = json_loads(text, 0, NULL);
    cr_assert(json_is_array(arr) && json_array_size(arr) == 5, "-o x.json writes a JSON array: %s", text);
    json_decref(arr);
    free(text);
    br_ran_free(&r);

    r = br_ctl(h, &s, "get", "01ZZZZZZZZZZZZZZZZZZZZZZZZ", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "NOT_FOUND: batch 01ZZZZZZZZZZZZZZZZZZZZZZZZ not found"), "%s", r.err);
    br_ran_free(&r);
    batch__v1__batch__free_unpacked(a, NULL);
    br_scratch_close(&s);
    h_stop(h);
}
