/* batchctl's pieces without a server: the option table, the results writers, the progress
 * display (driven with made-up times), and the reports of failed calls. */
#include <criterion/criterion.h>

#include "pbtime.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "google/rpc/error_details.pb-c.h"
#include "options.h"
#include "output.h"
#include "pbgrpc.h"
#include "progress.h"

/* ---- options ---------------------------------------------------------------------- */

typedef struct parsed {
    bctl_opts o;
    opt_result r;
    char out[8192], err[1024];
} parsed;

static parsed *parse(const char *env_server, ...)
{
    parsed *p = calloc(1, sizeof *p);
    char *argv[32] = {"batchctl"};
    int argc = 1;
    va_list ap;
    va_start(ap, env_server);
    for (char *a; (a = va_arg(ap, char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    FILE *out = fmemopen(p->out, sizeof p->out - 1, "w");
    FILE *err = fmemopen(p->err, sizeof p->err - 1, "w");
    p->r = opt_parse(&p->o, argc, argv, env_server, out, err);
    fclose(out);
    fclose(err);
    return p;
}

static void parsed_free(parsed *p)
{
    opt_free(&p->o);
    free(p);
}

Test(options, submit_flags_with_values_in_every_spelling)
{
    parsed *p = parse(NULL, "--server", "h:1", "submit", "users.csv", "--path=/u/{id}", "-X", "PUT", "-c", "20",
                      "--attempts", "3", "--item-timeout", "1500ms", "--rate", "2.5", "--label", "team=growth",
                      "-l", "env=prod", "--stop-on-failure", "-ores.csv", "--format-out", "csv", "--timeout", "2m",
                      NULL);
    cr_assert_eq(p->r, OPT_RUN, "%s", p->err);
    bctl_opts *o = &p->o;
    cr_assert_eq(o->cmd, BCTL_CMD_SUBMIT);
    cr_assert_str_eq(o->args[0], "users.csv");
    cr_assert_str_eq(o->server, "h:1");
    cr_assert_str_eq(o->csv.path, "/u/{id}");
    cr_assert_str_eq(o->csv.method, "PUT");
    cr_assert_eq(o->concurrency, 20);
    cr_assert_eq(o->attempts, 3);
    cr_assert_eq(o->item_timeout_ns, 1500000000LL);
    cr_assert_float_eq(o->rate, 2.5, 1e-9);
    cr_assert_eq(o->n_labels, 2);
    cr_assert_str_eq(o->labels[1], "env=prod");
    cr_assert(o->stop_on_failure);
    cr_assert_str_eq(o->output, "res.csv");
    cr_assert_eq(o->format_out, OUT_CSV);
    cr_assert_eq(o->timeout_ns, 120000000000LL);
    parsed_free(p);
}

Test(options, defaults_and_the_server_from_the_environment)
{
    parsed *p = parse("env:9", "list", NULL);
    cr_assert_eq(p->r, OPT_RUN);
    cr_assert_str_eq(p->o.server, "env:9");
    cr_assert_eq(p->o.limit, 50);
    cr_assert_eq(p->o.timeout_ns, 30000000000LL);
    cr_assert_eq(p->o.item_timeout_ns, -1);
    cr_assert_lt(p->o.rate, 0);
    parsed_free(p);
    p = parse(NULL, "get", "X", NULL);
    cr_assert_str_eq(p->o.server, BCTL_DEFAULT_SERVER);
    parsed_free(p);
}

Test(options, a_flag_belongs_to_its_commands)
{
    parsed *p = parse(NULL, "get", "ID", "--concurrency", "3", NULL);
    cr_assert_eq(p->r, OPT_USAGE);
    cr_assert(strstr(p->err, "--concurrency does not apply to get"), "%s", p->err);
    cr_assert(strstr(p->err, "Try 'batchctl get --help'"), "%s", p->err);
    parsed_free(p);
    p = parse(NULL, "--concurrency", "3", "submit", "f.json", NULL);
    cr_assert_eq(p->r, OPT_USAGE);
    cr_assert(strstr(p->err, "must come after the command"), "%s", p->err);
    parsed_free(p);
    /* --state means an item state for results and a batch state for list. */
    p = parse(NULL, "results", "ID", "--state", "FAILED", NULL);
    cr_assert_eq(p->r, OPT_RUN, "%s", p->err);
    cr_assert_eq(p->o.item_state, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED);
    parsed_free(p);
    p = parse(NULL, "list", "--state", "completed_with_failures", NULL);
    cr_assert_eq(p->o.batch_state, BATCH__V1__BATCH_STATE__BATCH_STATE_COMPLETED_WITH_FAILURES);
    parsed_free(p);
    p = parse(NULL, "results", "ID", "--state", "running", NULL);
    cr_assert_eq(p->r, OPT_USAGE);
    cr_assert(strstr(p->err, "--state: invalid value 'running'"), "%s", p->err);
    parsed_free(p);
}

Test(options, bad_values_and_arguments_are_usage_errors)
{
    const char *cases[][5] = {
        {"submit", "f", "--concurrency", "-1", "invalid value '-1'"},
        {"submit", "f", "--item-timeout", "5x", "invalid value '5x'"},
        {"submit", "f", "--label", "novalue", "invalid value 'novalue'"},
        {"submit", "f", "--format", "xml", "invalid value 'xml'"},
        {"submit", "f", "--rate", "", "invalid value ''"},
        {"submit", "f", "--bogus", "1", "unknown flag '--bogus'"},
        {"submit", "f", "g", "h", "unexpected argument 'h'"},
        {"frobnicate", "x", "y", "z", "unknown command 'frobnicate'"},
        {"submit", "--async=1", "f", "x", "--async=1 takes no value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parsed *p = parse(NULL, cases[i][0], cases[i][1], cases[i][2], cases[i][3], NULL);
        cr_assert_eq(p->r, OPT_USAGE, "case %zu accepted", i);
        cr_assert(strstr(p->err, cases[i][4]), "case %zu: %s", i, p->err);
        parsed_free(p);
    }
    parsed *p = parse(NULL, "submit", "--path", NULL);
    cr_assert(strstr(p->err, "--path needs a value"), "%s", p->err);
    parsed_free(p);
    p = parse(NULL, "retry", NULL);
    cr_assert(strstr(p->err, "retry takes ID"), "%s", p->err);
    parsed_free(p);
    p = parse(NULL, NULL);
    cr_assert(strstr(p->err, "no command given"), "%s", p->err);
    parsed_free(p);
}

Test(options, help_lists_exactly_the_flags_of_the_command)
{
    parsed *p = parse(NULL, "results", "--help", NULL);
    cr_assert_eq(p->r, OPT_DONE);
    cr_assert(strstr(p->out, "usage: batchctl results [flags] ID"), "%s", p->out);
    cr_assert(strstr(p->out, "--state succeeded|failed|cancelled"), "%s", p->out);
    cr_assert(strstr(p->out, "--format-out"), "%s", p->out);
    cr_assert(strstr(p->out, "--server ADDR"), "global flags are shown too");
    cr_assert_null(strstr(p->out, "--concurrency"), "submit's flags are not results'");
    parsed_free(p);
    p = parse(NULL, "help", "watch", NULL);
    cr_assert_eq(p->r, OPT_DONE);
    cr_assert(strstr(p->out, "usage: batchctl watch [flags] ID"), "%s", p->out);
    cr_assert(strstr(p->out, "--reconnect-timeout"), "%s", p->out);
    parsed_free(p);
    p = parse(NULL, "retry", "--help", NULL);
    cr_assert_eq(p->r, OPT_DONE);
    cr_assert(strstr(p->out, "usage: batchctl retry [flags] ID\n"), "%s", p->out);
    cr_assert(strstr(p->out, "--attempts N") && strstr(p->out, "--format-out"), "%s", p->out);
    cr_assert_null(strstr(p->out, "--path"), "retry reads no input file: %s", p->out);
    cr_assert_null(strstr(p->out, "--target"), "retry sends the operations as they were: %s", p->out);
    parsed_free(p);
    p = parse(NULL, "--version", NULL);
    cr_assert_eq(p->r, OPT_DONE);
    cr_assert(strstr(p->out, "batchctl " BATCHCTL_VERSION), "%s", p->out);
    parsed_free(p);
}

Test(options, durations)
{
    int64_t ns = 0;
    cr_assert_eq(pbtime_parse_duration("2", &ns), 0);
    cr_assert_eq(ns, 2000000000LL);
    cr_assert_eq(pbtime_parse_duration("250ms", &ns), 0);
    cr_assert_eq(ns, 250000000LL);
    cr_assert_eq(pbtime_parse_duration("1.5m", &ns), 0);
    cr_assert_eq(ns, 90000000000LL);
    cr_assert_eq(pbtime_parse_duration("-1s", &ns), -1);
    cr_assert_eq(pbtime_parse_duration("1d", &ns), 0);
    cr_assert_eq(ns, 86400 * 1000000000LL);
    cr_assert_eq(pbtime_parse_duration("1y", &ns), -1);
    cr_assert_eq(pbtime_parse_duration(" 1s", &ns), -1);
    cr_assert_eq(pbtime_parse_duration("", &ns), -1);
}

/* ---- output ----------------------------------------------------------------------- */

static Batch__V1__ItemResult *result(const char *id, int state, int http, const char *error)
{
    struct with_status {
        Batch__V1__ItemResult r;
        Google__Rpc__Status st;
    } *w = calloc(1, sizeof *w); /* one allocation: free(r) frees both */
    Batch__V1__ItemResult *r = &w->r;
    Google__Rpc__Status *st = &w->st;
    batch__v1__item_result__init(r);
    r->id = (char *)id;
    r->state = state;
    r->http_status = http;
    if (error) {
        google__rpc__status__init(st);
        st->code = 14;
        st->message = (char *)error;
        r->error = st;
    }
    return r;
}

static char *write_results(out_format fmt)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    out_writer w;
    cr_assert_eq(out_begin(&w, f, fmt), 0);
    Batch__V1__ItemResult *a = result("u1", BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 201, NULL);
    Batch__V1__ItemResult *b = result("u,2", BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED, 503, "HTTP 503 \"busy\"");
    Batch__V1__ItemResult *c = result("u3", BATCH__V1__ITEM_STATE__ITEM_STATE_CANCELLED, 0, "cancelled");
    cr_assert_eq(out_result(&w, a), 0);
    cr_assert_eq(out_result(&w, b), 0);
    cr_assert_eq(out_result(&w, c), 0);
    cr_assert_eq(out_end(&w), 0);
    fclose(f);
    free(a);
    free(b);
    free(c);
    return buf;
}

Test(output, csv_has_id_state_http_status_and_error_quoted_when_needed)
{
    char *s = write_results(OUT_CSV);
    cr_assert_str_eq(s, "id,state,http_status,error\n"
                        "u1,SUCCEEDED,201,\n"
                        "\"u,2\",FAILED,503,\"HTTP 503 \"\"busy\"\"\"\n"
                        "u3,CANCELLED,,cancelled\n");
    free(s);
}

Test(output, ndjson_is_one_result_per_line_and_json_one_array)
{
    char *s = write_results(OUT_NDJSON);
    int lines = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        cr_assert_not_null(j, "%s: %s", line, e.text);
        cr_assert(json_is_string(json_object_get(j, "id")));
        json_decref(j);
    }
    cr_assert_eq(lines, 3);
    free(s);
    s = write_results(OUT_JSON);
    json_error_t e;
    json_t *j = json_loads(s, 0, &e);
    cr_assert_not_null(j, "%s: %s", s, e.text);
    cr_assert_eq(json_array_size(j), 3);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 1), "state")), "ITEM_STATE_FAILED");
    json_decref(j);
    free(s);
}

Test(output, formats_from_names_and_state_names)
{
    cr_assert_eq(out_format_from_name("r.csv"), OUT_CSV);
    cr_assert_eq(out_format_from_name("r.json"), OUT_JSON);
    cr_assert_eq(out_format_from_name("r.txt"), OUT_NDJSON);
    cr_assert_eq(out_format_from_name(NULL), OUT_NDJSON);
    cr_assert_str_eq(out_batch_state(BATCH__V1__BATCH_STATE__BATCH_STATE_COMPLETED_WITH_FAILURES),
                     "COMPLETED_WITH_FAILURES");
    cr_assert_str_eq(out_item_state(BATCH__V1__ITEM_STATE__ITEM_STATE_CANCELLED), "CANCELLED");
}

/* ---- progress --------------------------------------------------------------------- */

#define MS 1000000LL

typedef struct screen {
    char *buf;
    size_t len;
    FILE *f;
    progress p;
} screen;

static void screen_open(screen *s, int tty, const char *term, const char *no_color)
{
    memset(s, 0, sizeof *s);
    s->f = open_memstream(&s->buf, &s->len);
    progress_config cfg;
    progress_choose(&cfg, tty, term, no_color, 0, 100, 2000 * MS);
    progress_init(&s->p, s->f, &cfg, 0);
}

/* What was written since the last call (caller frees). */
static char *screen_take(screen *s)
{
    fflush(s->f);
    char *out = strndup(s->buf, s->len);
    fclose(s->f);
    free(s->buf);
    s->buf = NULL;
    s->len = 0;
    s->f = open_memstream(&s->buf, &s->len);
    s->p.f = s->f;
    return out;
}

static void screen_close(screen *s)
{
    fclose(s->f);
    free(s->buf);
}

static Batch__V1__Batch *batch_at(uint32_t total, uint32_t ok, uint32_t failed, int state)
{
    static Batch__V1__Counts c;
    static Batch__V1__Batch b;
    batch__v1__counts__init(&c);
    batch__v1__batch__init(&b);
    c.total = total;
    c.succeeded = ok;
    c.failed = failed;
    b.id = "01TESTBATCH";
    b.counts = &c;
    b.state = state;
    return &b;
}

static size_t count(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

Test(progress, the_display_follows_the_terminal_and_the_environment)
{
    progress_config c;
    progress_choose(&c, 1, "xterm-256color", NULL, 0, 120, 0);
    cr_assert_eq(c.mode, PROGRESS_BAR);
    cr_assert(c.color && c.ansi);
    cr_assert_eq(c.width, 120);
    progress_choose(&c, 1, "xterm", "1", 0, 0, 0);
    cr_assert_eq(c.mode, PROGRESS_BAR);
    cr_assert_not(c.color, "NO_COLOR turns colours off");
    cr_assert_eq(c.width, 80);
    progress_choose(&c, 1, "xterm", "", 0, 0, 0);
    cr_assert(c.color, "an empty NO_COLOR does not count");
    progress_choose(&c, 1, "dumb", NULL, 0, 0, 0);
    cr_assert_not(c.color || c.ansi);
    progress_choose(&c, 0, "xterm", NULL, 0, 0, 0);
    cr_assert_eq(c.mode, PROGRESS_LINES);
    cr_assert_not(c.color);
    progress_choose(&c, 1, "xterm", NULL, 1, 0, 0);
    cr_assert_eq(c.mode, PROGRESS_OFF);
}

Test(progress, the_bar_is_redrawn_in_place_at_most_ten_times_a_second)
{
    screen s;
    screen_open(&s, 1, "xterm", "1");
    progress_update(&s.p, batch_at(200, 0, 0, 2), 1000 * MS);
    char *first = screen_take(&s);
    cr_assert(first[0] == '\r' && strstr(first, "  0%") && strstr(first, "0/200"), "%s", first);
    cr_assert(strstr(first, "\033[K"), "the rest of the line is erased");
    free(first);
    progress_update(&s.p, batch_at(200, 30, 0, 2), 1050 * MS);
    progress_tick(&s.p, 1090 * MS);
    char *none = screen_take(&s);
    cr_assert_str_eq(none, "", "redrawn within 100 ms: %s", none);
    free(none);
    progress_update(&s.p, batch_at(200, 45, 5, 2), 1100 * MS);
    char *second = screen_take(&s);
    cr_assert(strstr(second, "\r[") && strstr(second, " 25%") && strstr(second, "50/200") &&
              strstr(second, "ok 45") && strstr(second, "failed 5"), "%s", second);
    cr_assert_null(strstr(second, "\033[3"), "no colours with NO_COLOR: %s", second);
    free(second);
    screen_close(&s);
}

Test(progress, items_per_second_and_eta_come_from_recent_progress)
{
    screen s;
    screen_open(&s, 1, "xterm", NULL);
    for (int i = 0; i <= 20; i++) /* 10 items every 100 ms: 100/s */
        progress_update(&s.p, batch_at(1000, (uint32_t)i * 10, 0, 2), (1000 + i * 100) * MS);
    cr_assert_float_eq(progress_rate(&s.p, 3000 * MS), 100.0, 0.5);
    char *out = screen_take(&s);
    const char *last = strrchr(out, '\r');
    cr_assert(strstr(last, "100/s") && strstr(last, "ETA 8.0s"), "%s", last);
    cr_assert(strstr(last, "\033[32mok 200\033[0m"), "colours on a terminal: %s", last);
    free(out);
    progress_end(&s.p, batch_at(1000, 990, 10, 4), 12000 * MS);
    progress_summary(&s.p, batch_at(1000, 990, 10, 4), 12000 * MS);
    out = screen_take(&s);
    cr_assert(strstr(out, "100%") && strstr(out, "\n"), "%s", out);
    cr_assert(strstr(out, "batch 01TESTBATCH \033[31mCOMPLETED_WITH_FAILURES\033[0m: 990 succeeded, 10 failed, "
                          "0 cancelled of 1000 in 12.0s"), "%s", out);
    free(out);
    screen_close(&s);
}

Test(progress, lines_instead_of_a_bar_when_not_a_terminal)
{
    screen s;
    screen_open(&s, 0, "xterm", NULL);
    int64_t t = 0;
    for (int i = 0; i < 50; i++, t += 100 * MS) /* 5 s of progress, a line every 2 s */
        progress_update(&s.p, batch_at(500, (uint32_t)i * 10, 0, 2), t);
    progress_tick(&s.p, t + 500 * MS);
    char *out = screen_take(&s);
    cr_assert_eq(count(out, "\n"), 3, "%s", out);
    cr_assert_eq(count(out, "batch 01TESTBATCH: "), 3, "%s", out);
    cr_assert_null(strchr(out, '\r'), "%s", out);
    cr_assert_null(strchr(out, '\033'), "%s", out);
    cr_assert(strstr(out, "done (0%)") && strstr(out, "done (40%)") && strstr(out, "done (80%)"), "%s", out);
    free(out);
    progress_tick(&s.p, t + 1000 * MS); /* no news for 2 s: a line all the same */
    out = screen_take(&s);
    cr_assert(strstr(out, "done (98%)") && count(out, "\n") == 1, "%s", out);
    free(out);
    screen_close(&s);
}

Test(progress, a_note_erases_the_bar_first)
{
    screen s;
    screen_open(&s, 1, "dumb", NULL);
    progress_update(&s.p, batch_at(10, 1, 0, 2), 0);
    progress_note(&s.p, "reconnecting");
    char *out = screen_take(&s);
    /* Without ESC[K the bar is blanked with spaces, then the note gets its own line. */
    cr_assert(strstr(out, "     \rreconnecting\n"), "%s", out);
    cr_assert_null(strchr(out, '\033'), "%s", out);
    free(out);
    screen_close(&s);
}

/* ---- diag ------------------------------------------------------------------------- */

static rpcclient_status bad_request(void)
{
    Google__Rpc__BadRequest__FieldViolation v[3];
    Google__Rpc__BadRequest__FieldViolation *pv[3] = {&v[0], &v[1], &v[2]};
    const char *fields[3] = {"operations[1].path", "operations[2].method", "options.max_rate"};
    for (int i = 0; i < 3; i++) {
        google__rpc__bad_request__field_violation__init(&v[i]);
        v[i].field = (char *)fields[i];
        v[i].description = "is wrong";
    }
    Google__Rpc__BadRequest br = GOOGLE__RPC__BAD_REQUEST__INIT;
    br.field_violations = pv;
    br.n_field_violations = 3;
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    Google__Protobuf__Any *pany = &any;
    any.type_url = "type.googleapis.com/google.rpc.BadRequest";
    any.value.data = pbgrpc_pack_bytes(&br.base, &any.value.len);
    Google__Rpc__Status s = GOOGLE__RPC__STATUS__INIT;
    s.code = GRPC_STATUS_INVALID_ARGUMENT;
    s.details = &pany;
    s.n_details = 1;
    size_t len = 0;
    uint8_t *packed = pbgrpc_pack_bytes(&s.base, &len);
    rpcclient_status st = {.code = GRPC_STATUS_INVALID_ARGUMENT, .message = strdup("invalid batch: 3 violations")};
    st.details = google__rpc__status__unpack(NULL, len, packed);
    free(packed);
    free(any.value.data);
    return st;
}

Test(diag, violations_are_traced_to_input_lines)
{
    rpcclient_status st = bad_request();
    uint32_t lines[3] = {2, 7, 9};
    diag_origin origin = {"users.csv", lines, 3};
    char buf[1024] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    diag_rpc(f, "h:1", &st, &origin);
    fclose(f);
    cr_assert(strstr(buf, "batchctl: INVALID_ARGUMENT: invalid batch: 3 violations\n"), "%s", buf);
    cr_assert(strstr(buf, "users.csv:7: operations[1].path: is wrong\n"), "%s", buf);
    cr_assert(strstr(buf, "users.csv:9: operations[2].method: is wrong\n"), "%s", buf);
    cr_assert(strstr(buf, "batchctl: options.max_rate: is wrong\n"), "%s", buf);
    rpcclient_status_clear(&st);
}

Test(diag, unreachable_servers_are_named)
{
    rpcclient_status st = {.code = GRPC_STATUS_UNAVAILABLE, .message = strdup("failed to connect")};
    char buf[512] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    diag_rpc(f, "10.0.0.1:50051", &st, NULL);
    fclose(f);
    cr_assert_str_eq(buf, "batchctl: cannot reach batchd at 10.0.0.1:50051: failed to connect\n");
    rpcclient_status_clear(&st);
}
