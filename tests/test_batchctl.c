/* batchctl end to end: the built binary, run as a child process against a real batchd (in
 * this process, on an ephemeral port) and a real loopback upstream. Inputs in every format,
 * the exit statuses, results files, positioned errors, retry, watch reconnection through a
 * TCP proxy that breaks connections, Ctrl-C, and the progress display in a pseudo-terminal
 * and in a pipe. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define BATCHCTL BATCHD_BINARY_DIR "/client/batchctl"
#define EXAMPLES BATCHD_SOURCE_DIR "/examples"

extern char **environ;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- scratch files ------------------------------------------------------------------ */

typedef struct scratch {
    char dir[64];
    char path[256];  /* the last path made by in() */
    int children;    /* numbers the output files of children */
} scratch;

static void scratch_open(scratch *s)
{
    snprintf(s->dir, sizeof s->dir, "/tmp/batchctl-test-XXXXXX");
    cr_assert_not_null(mkdtemp(s->dir));
}

static const char *in(scratch *s, const char *name)
{
    snprintf(s->path, sizeof s->path, "%s/%.100s", s->dir, name);
    return s->path;
}

static const char *put(scratch *s, const char *name, const char *text)
{
    FILE *f = fopen(in(s, name), "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return s->path;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return strdup("");
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&buf, &cap, '\0', f);
    fclose(f);
    if (n < 0) {
        free(buf);
        return strdup("");
    }
    return buf;
}

static void scratch_close(scratch *s)
{
    DIR *d = opendir(s->dir);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            unlink(in(s, e->d_name));
    if (d)
        closedir(d);
    rmdir(s->dir);
}

/* ---- running batchctl ------------------------------------------------------------- */

typedef struct child {
    pid_t pid;
    int pty;             /* master side of the child's terminal, or -1 */
    char out_path[128], err_path[128];
} child;

typedef struct ran {
    int status;          /* the exit status, or 128 + the signal that killed it */
    char *out, *err;     /* stdout and stderr (for a terminal child: everything, in out) */
    double secs;
} ran;

static void ran_free(ran *r)
{
    free(r->out);
    free(r->err);
}

/* The environment of the child: ours without what would change batchctl's behaviour,
 * plus set (NULL-terminated "K=V" strings). */
static char **child_env(const char *const *set)
{
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 16, sizeof *env);
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "BATCHD_SERVER=", 14) && strncmp(environ[i], "NO_COLOR=", 9) &&
            strncmp(environ[i], "TERM=", 5))
            env[k++] = environ[i];
    for (size_t i = 0; set && set[i] && k < n + 15; i++)
        env[k++] = (char *)set[i];
    return env;
}

/* Starts batchctl with args (NULL-terminated, after the program name). stdout and stderr
 * go to files in s, or with a terminal (tty) to a pseudo-terminal. */
static child spawn(scratch *s, const char *const *args, const char *const *env_set, int tty)
{
    const char *argv[64] = {BATCHCTL};
    int argc = 1;
    for (int i = 0; args[i]; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    char **env = child_env(env_set);
    child c = {.pty = -1};
    s->children++;
    snprintf(c.out_path, sizeof c.out_path, "%s/out.%d", s->dir, s->children);
    snprintf(c.err_path, sizeof c.err_path, "%s/err.%d", s->dir, s->children);
    int out = tty ? -1 : open(c.out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = tty ? -1 : open(c.err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int nul = open("/dev/null", O_RDONLY);
    if (tty) {
        struct winsize ws = {.ws_row = 24, .ws_col = 100};
        c.pid = forkpty(&c.pty, NULL, NULL, &ws);
    } else {
        c.pid = fork();
    }
    cr_assert_geq(c.pid, 0);
    if (c.pid == 0) {
        /* Only async-signal-safe calls between fork and exec: this process has threads. */
        if (!tty) {
            dup2(nul, 0);
            dup2(out, 1);
            dup2(err, 2);
        }
        execve(BATCHCTL, (char **)argv, env);
        _exit(127);
    }
    if (!tty) {
        close(out);
        close(err);
    }
    close(nul);
    free(env);
    return c;
}

static ran finish(child *c, double timeout_s)
{
    ran r = {0};
    double start = now_s();
    char *tty_out = NULL;
    size_t tty_len = 0;
    FILE *tty_f = c->pty >= 0 ? open_memstream(&tty_out, &tty_len) : NULL;
    for (;;) {
        if (c->pty >= 0) { /* keep the terminal drained, or the child blocks writing to it */
            struct pollfd p = {c->pty, POLLIN, 0};
            char buf[4096];
            ssize_t n;
            while (poll(&p, 1, 5) > 0 && (n = read(c->pty, buf, sizeof buf)) > 0)
                fwrite(buf, 1, (size_t)n, tty_f);
        }
        int st;
        pid_t w = waitpid(c->pid, &st, WNOHANG);
        if (w == c->pid) {
            r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        if (now_s() - start > timeout_s) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &st, 0);
            char *err = slurp(c->err_path);
            cr_assert_fail("batchctl still running after %.0fs; stderr:\n%s", timeout_s, err);
        }
        if (c->pty < 0)
            h_sleep_ms(5);
    }
    r.secs = now_s() - start;
    if (c->pty >= 0) {
        char buf[4096];
        ssize_t n;
        while ((n = read(c->pty, buf, sizeof buf)) > 0) /* EIO once the child is gone */
            fwrite(buf, 1, (size_t)n, tty_f);
        fclose(tty_f);
        close(c->pty);
        r.out = tty_out;
        r.err = strdup("");
    } else {
        r.out = slurp(c->out_path);
        r.err = slurp(c->err_path);
    }
    /* A sanitizer build of batchctl reports into its own stderr. */
    const char *all = c->pty >= 0 ? r.out : r.err;
    cr_assert_null(strstr(all, "Sanitizer"), "batchctl: %s", all);
    cr_assert_null(strstr(all, "runtime error:"), "batchctl: %s", all);
    return r;
}

/* Runs batchctl against h (through $BATCHD_SERVER) to the end. */
static ran ctl(harness *h, scratch *s, ...)
{
    const char *args[48];
    int n = 0;
    va_list ap;
    va_start(ap, s);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    char server[96];
    snprintf(server, sizeof server, "BATCHD_SERVER=%s", h ? h->addr : "127.0.0.1:1");
    const char *env[] = {server, NULL};
    child c = spawn(s, args, env, 0);
    return finish(&c, 60);
}

/* Waits until the file at path contains needle (count times). */
static void wait_for(const char *path, const char *needle, int count, double timeout_s)
{
    double start = now_s();
    for (;;) {
        char *text = slurp(path);
        int n = 0;
        for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
            n++;
        free(text);
        if (n >= count)
            return;
        cr_assert_lt(now_s() - start, timeout_s, "no %d x \"%s\" in %s", count, needle, path);
        h_sleep_ms(10);
    }
}

static size_t n_batches(harness *h)
{
    Batch__V1__ListBatchesRequest req = BATCH__V1__LIST_BATCHES_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpcclient_unary(h->client, M_LIST, &req.base, &batch__v1__list_batches_response__descriptor, &m,
                                 10, NULL), GRPC_STATUS_OK);
    size_t n = ((Batch__V1__ListBatchesResponse *)m)->n_batches;
    protobuf_c_message_free_unpacked(m, NULL);
    return n;
}

/* The only batch on h, or the newest. Caller frees. */
static Batch__V1__Batch *newest(harness *h)
{
    Batch__V1__ListBatchesRequest req = BATCH__V1__LIST_BATCHES_REQUEST__INIT;
    req.page_size = 1;
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpcclient_unary(h->client, M_LIST, &req.base, &batch__v1__list_batches_response__descriptor, &m,
                                 10, NULL), GRPC_STATUS_OK);
    Batch__V1__ListBatchesResponse *r = (Batch__V1__ListBatchesResponse *)m;
    cr_assert_eq(r->n_batches, 1, "no batch");
    Batch__V1__Batch *b = h_get(h, r->batches[0]->id, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
    return b;
}

static const char *label(const Batch__V1__Batch *b, const char *key)
{
    for (size_t i = 0; b->options && i < b->options->n_labels; i++)
        if (strcmp(b->options->labels[i]->key, key) == 0)
            return b->options->labels[i]->value;
    return NULL;
}

/* The JSON lines of text, parsed. */
typedef struct jlines {
    json_t *v[256];
    size_t n;
} jlines;

static void jlines_parse(jlines *j, const char *text)
{
    memset(j, 0, sizeof *j);
    char *copy = strdup(text), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t e;
        cr_assert_lt(j->n, 256);
        j->v[j->n] = json_loads(line, 0, &e);
        cr_assert_not_null(j->v[j->n], "not JSON: %s (%s)", line, e.text);
        j->n++;
    }
    free(copy);
}

static void jlines_free(jlines *j)
{
    for (size_t i = 0; i < j->n; i++)
        json_decref(j->v[i]);
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* ---- submit: formats, results, exit statuses ---------------------------------------- */

Test(batchctl, a_json_document_is_submitted_followed_and_its_results_printed)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    ran r = ctl(h, &s, "submit", EXAMPLES "/batch.json", NULL);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    jlines j;
    jlines_parse(&j, r.out);
    const char *ids[] = {"ada", "grace", "alan", "ada-profile", "old-account"};
    cr_assert_eq(j.n, 5, "%s", r.out);
    for (size_t i = 0; i < 5; i++) {
        cr_assert_str_eq(jstr(j.v[i], "id"), ids[i], "results come in input order");
        cr_assert_str_eq(jstr(j.v[i], "state"), "ITEM_STATE_SUCCEEDED");
    }
    cr_assert(strstr(r.err, "SUCCEEDED: 5 succeeded, 0 failed, 0 cancelled of 5"), "%s", r.err);
    Batch__V1__Batch *b = newest(h);
    cr_assert_eq(b->options->max_concurrency, 4, "the document's options are used");
    cr_assert_str_eq(label(b, "example"), "batch-json");
    batch__v1__batch__free_unpacked(b, NULL);
    jlines_free(&j);
    ran_free(&r);
    scratch_close(&s);
    h_stop(h);
}

Test(batchctl, flags_override_the_documents_options)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    ran r = ctl(h, &s, "submit", EXAMPLES "/batch.json", "--concurrency", "2", "--attempts", "2", "--item-timeout",
                "3s", "--rate", "100", "--label", "example=override", "-l", "extra=1", "--quiet", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_str_eq(r.err, "", "--quiet prints nothing on stderr");
    Batch__V1__Batch *b = newest(h);
    cr_assert_eq(b->options->max_concurrency, 2);
    cr_assert_eq(b->options->max_attempts, 2);
    cr_assert_eq(b->options->item_timeout->seconds, 3);
    cr_assert_float_eq(b->options->max_rate, 100, 1e-9);
    cr_assert_str_eq(label(b, "example"), "override");
    cr_assert_str_eq(label(b, "extra"), "1");
    batch__v1__batch__free_unpacked(b, NULL);
    ran_free(&r);
    scratch_close(&s);
    h_stop(h);
}

Test(batchctl, ndjson_with_failed_items_exits_2)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    ran r = ctl(h, &s, "submit", EXAMPLES "/batch.ndjson", NULL);
    cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
    jlines j;
    jlines_parse(&j, r.out);
    cr_assert_eq(j.n, 6);
    cr_assert_str_eq(jstr(j.v[3], "id"), "order-1004");
    cr_assert_str_eq(jstr(j.v[3], "state"), "ITEM_STATE_FAILED");
    cr_assert_eq(json_integer_value(json_object_get(j.v[3], "httpStatus")), 404);
    cr_assert(strstr(r.err, "COMPLETED_WITH_FAILURES: 4 succeeded, 2 failed"), "%s", r.err);
    cr_assert(strstr(r.err, "retry them:    batchctl retry "), "%s", r.err);
    jlines_free(&j);
    ran_free(&r);
    scratch_close(&s);
    h_stop(h);
}

Test(batchctl, a_csv_import_writes_a_results_csv_in_input_order)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    char *csv = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&csv, &len);
    fprintf(f, "id,name,status\n");
    for (int i = 1; i <= 40; i++) /* every 7th row fails; later rows are faster, so they end first */
        fprintf(f, "r%02d,\"Name, %d\",%d\n", i, i, i % 7 == 0 ? 500 : 200);
    fclose(f);
    put(&s, "users.csv", csv);
    char file[256], results[256];
    snprintf(file, sizeof file, "%s/users.csv", s.dir);
    snprintf(results, sizeof results, "%s/results.csv", s.dir);
    ran r = ctl(h, &s, "submit", file, "--path", "/users/{id}?status={status}", "--id-column", "id", "-o", results,
                NULL);
    cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
    cr_assert_str_eq(r.out, "", "the results went to the file");
    char *got = slurp(results);
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
    ran_free(&r);
    scratch_close(&s);
    h_stop(h);
}

Test(batchctl, csv_bodies_are_typed_unless_csv_strings)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    const char *file = put(&s, "people.csv", "key,name,age,vip,note\nx/1,Ada,36,true,null\n");
    char path[256];
    snprintf(path, sizeof path, "%s", file);
    for (int strings = 0; strings < 2; strings++) {
        ran r = ctl(h, &s, "submit", path, "--path", "/people/{key}?echo=1", "--id-column", "key",
                    strings ? "--csv-strings" : "--quiet", NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        jlines j;
        jlines_parse(&j, r.out);
        cr_assert_eq(j.n, 1);
        cr_assert_str_eq(jstr(j.v[0], "id"), "x/1");
        json_t *echo = json_object_get(j.v[0], "json");
        cr_assert_str_eq(jstr(echo, "path"), "/people/x%2F1", "the placeholder is URL-encoded");
        json_error_t e;
        json_t *body = json_loads(jstr(echo, "body"), 0, &e);
        cr_assert_not_null(body, "%s", jstr(echo, "body"));
        cr_assert_null(json_object_get(body, "key"), "a column used in the path is not in the body");
        cr_assert_str_eq(jstr(body, "name"), "Ada");
        if (strings) {
            cr_assert_str_eq(jstr(body, "age"), "36");
            cr_assert_str_eq(jstr(body, "vip"), "true");
            cr_assert_str_eq(jstr(body, "note"), "null");
        } else {
            cr_assert_eq(json_number_value(json_object_get(body, "age")), 36);
            cr_assert(json_is_true(json_object_get(body, "vip")));
            cr_assert(json_is_null(json_object_get(body, "note")));
        }
        json_decref(body);
        jlines_free(&j);
        ran_free(&r);
    }
    scratch_close(&s);
    h_stop(h);
}

/* ---- not accepted: exit 1, nothing created ------------------------------------------ */

static void assert_nothing_ran(harness *h)
{
    cr_assert_eq(n_batches(h), 0, "a batch was created");
    upstream_stats us;
    upstream_get_stats(h->up, &us);
    cr_assert_eq(us.requests, 0, "the upstream was called");
}

Test(batchctl, server_violations_are_printed_with_their_input_lines)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    put(&s, "bad.ndjson",
        "{\"id\":\"a\",\"method\":\"GET\",\"path\":\"/ok\"}\n"
        "\n"
        "{\"id\":\"b\",\"method\":\"GET\",\"path\":\"no-slash\"}\n"
        "{\"id\":\"c\",\"method\":\"GET\",\"path\":\"/ok\"}\n"
        "{\"id\":\"d\",\"method\":\"FETCH\",\"path\":\"/ok\"}\n");
    char file[256];
    snprintf(file, sizeof file, "%s", s.path);
    ran r = ctl(h, &s, "submit", file, NULL);
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    char want[512];
    snprintf(want, sizeof want, "%s:3: operations[1].path: must start with", file);
    cr_assert(strstr(r.err, want), "want %s in:\n%s", want, r.err);
    snprintf(want, sizeof want, "%s:5: operations[3].method: ", file);
    cr_assert(strstr(r.err, want), "want %s in:\n%s", want, r.err);
    ran_free(&r);
    /* CSV: the line of a record, after a quoted field that spans two lines. */
    put(&s, "dup.csv", "id,note\na,\"two\nlines\"\nb,x\na,y\n");
    snprintf(file, sizeof file, "%s", s.path);
    r = ctl(h, &s, "submit", file, "--path", "/users", "--id-column", "id", NULL);
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    snprintf(want, sizeof want, "%s:5: operations[2].id: ", file);
    cr_assert(strstr(r.err, want), "want %s in:\n%s", want, r.err);
    ran_free(&r);
    assert_nothing_ran(h);
    scratch_close(&s);
    h_stop(h);
}

Test(batchctl, malformed_inputs_are_positioned_and_nothing_is_submitted)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
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
        snprintf(file, sizeof file, "%s", put(&s, cases[i].name, cases[i].text));
        ran r = strstr(file, ".csv") ? ctl(h, &s, "submit", file, "--path", "/x", NULL)
                                     : ctl(h, &s, "submit", file, NULL);
        cr_assert_eq(r.status, 1, "%s: exit %d", cases[i].name, r.status);
        snprintf(want, sizeof want, "%s%s", file, cases[i].where);
        cr_assert(strstr(r.err, want) && strstr(r.err, cases[i].what), "%s: want %s ... %s in:\n%s", cases[i].name,
                  want, cases[i].what, r.err);
        cr_assert(strstr(r.err, "nothing was submitted"), "%s", r.err);
        ran_free(&r);
    }
    /* An --output that cannot be written is found before anything is sent. */
    ran r = ctl(h, &s, "submit", EXAMPLES "/batch.json", "-o", "/nonexistent/results.csv", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "cannot write the results to /nonexistent/results.csv"), "%s", r.err);
    ran_free(&r);
    assert_nothing_ran(h);
    scratch_close(&s);
    h_stop(h);
}

Test(batchctl, usage_and_connection_errors_exit_1)
{
    scratch s;
    scratch_open(&s);
    ran r = ctl(NULL, &s, "submit", EXAMPLES "/batch.json", NULL); /* $BATCHD_SERVER=127.0.0.1:1 */
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "cannot reach batchd at 127.0.0.1:1"), "%s", r.err);
    ran_free(&r);
    r = ctl(NULL, &s, "submit", EXAMPLES "/users.csv", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "needs --path"), "%s", r.err);
    ran_free(&r);
    r = ctl(NULL, &s, "submit", EXAMPLES "/batch.json", "--path", "/x", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "apply to CSV input only"), "%s", r.err);
    ran_free(&r);
    r = ctl(NULL, &s, "submit", "-", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "give --format"), "%s", r.err);
    ran_free(&r);
    r = ctl(NULL, &s, "submit", "/nonexistent/ops.ndjson", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "cannot read /nonexistent/ops.ndjson: No such file"), "%s", r.err);
    ran_free(&r);
    r = ctl(NULL, &s, "submit", "--bogus", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "unknown flag '--bogus'") && strstr(r.err, "Try 'batchctl submit --help'"), "%s", r.err);
    ran_free(&r);
    scratch_close(&s);
}

Test(batchctl, too_many_items_names_the_servers_limit)
{
    const char *args[] = {"--max-items", "3", NULL};
    harness *h = h_start(args);
    scratch s;
    scratch_open(&s);
    ran r = ctl(h, &s, "submit", EXAMPLES "/batch.json", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "takes at most 3 operations per batch (batchd --max-items)"), "%s", r.err);
    ran_free(&r);
    assert_nothing_ran(h);
    scratch_close(&s);
    h_stop(h);
}

Test(batchctl, validate_only_checks_on_the_server_and_creates_nothing)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    ran r = ctl(h, &s, "submit", EXAMPLES "/batch.ndjson", "--validate-only", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.err, "6 operations are valid; nothing was created"), "%s", r.err);
    ran_free(&r);
    assert_nothing_ran(h);
    scratch_close(&s);
    h_stop(h);
}

/* ---- the other commands ------------------------------------------------------------ */

Test(batchctl, async_prints_the_id_and_watch_follows_the_batch)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    ran r = ctl(h, &s, "submit", EXAMPLES "/batch.ndjson", "--async", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_eq(strlen(r.out), 27, "stdout is the id and a newline: %s", r.out);
    char id[32];
    snprintf(id, sizeof id, "%.26s", r.out);
    char hint[96];
    snprintf(hint, sizeof hint, "follow it with: batchctl watch %s", id);
    cr_assert(strstr(r.err, hint), "%s", r.err);
    ran_free(&r);

    r = ctl(h, &s, "watch", id, NULL);
    cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "COMPLETED_WITH_FAILURES: 4 succeeded, 2 failed"), "%s", r.err);
    ran_free(&r);

    /* --json: the snapshot, every item (replayed, the batch has ended), the final state. */
    r = ctl(h, &s, "watch", id, "--json", "--quiet", NULL);
    cr_assert_eq(r.status, 2);
    jlines j;
    jlines_parse(&j, r.out);
    cr_assert_eq(j.n, 8, "%s", r.out);
    cr_assert_not_null(json_object_get(j.v[0], "batch"));
    for (size_t i = 1; i <= 6; i++)
        cr_assert_not_null(json_object_get(j.v[i], "item"), "line %zu: %s", i, r.out);
    cr_assert_str_eq(jstr(json_object_get(j.v[7], "batch"), "state"), "BATCH_STATE_COMPLETED_WITH_FAILURES");
    jlines_free(&j);
    ran_free(&r);
    scratch_close(&s);
    h_stop(h);
}

Test(batchctl, get_list_cancel_and_results)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    ran r = ctl(h, &s, "submit", EXAMPLES "/batch.json", "-l", "team=a", "-q", NULL);
    cr_assert_eq(r.status, 0);
    ran_free(&r);
    Batch__V1__Batch *a = newest(h);
    const char *slow = put(&s, "slow.ndjson",
                           "{\"id\":\"s1\",\"method\":\"GET\",\"path\":\"/s1?delay_ms=5000\"}\n"
                           "{\"id\":\"s2\",\"method\":\"GET\",\"path\":\"/s2?delay_ms=5000\"}\n"
                           "{\"id\":\"s3\",\"method\":\"GET\",\"path\":\"/s3?delay_ms=5000\"}\n");
    char file[256];
    snprintf(file, sizeof file, "%s", slow);
    r = ctl(h, &s, "submit", file, "--async", "--concurrency", "1", "-l", "team=b", NULL);
    cr_assert_eq(r.status, 0);
    char b[32];
    snprintf(b, sizeof b, "%.26s", r.out);
    ran_free(&r);

    r = ctl(h, &s, "get", a->id, NULL);
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "state:       SUCCEEDED\n") && strstr(r.out, "progress:    5/5 (100%)") &&
              strstr(r.out, "team=a"), "%s", r.out);
    ran_free(&r);
    r = ctl(h, &s, "get", b, "--json", NULL);
    cr_assert_eq(r.status, 0);
    json_t *jb = json_loads(r.out, 0, NULL);
    cr_assert_str_eq(jstr(jb, "state"), "BATCH_STATE_RUNNING", "%s", r.out);
    json_decref(jb);
    ran_free(&r);

    r = ctl(h, &s, "list", NULL);
    cr_assert_eq(r.status, 0);
    cr_assert(strncmp(r.out, "ID ", 3) == 0 && strstr(r.out, "STATE") && strstr(r.out, a->id) && strstr(r.out, b),
              "%s", r.out);
    cr_assert_lt(strstr(r.out, b), strstr(r.out, a->id), "newest first");
    ran_free(&r);
    r = ctl(h, &s, "list", "--label", "team=a", "--json", NULL);
    jlines j;
    jlines_parse(&j, r.out);
    cr_assert_eq(j.n, 1);
    cr_assert_str_eq(jstr(j.v[0], "id"), a->id);
    jlines_free(&j);
    ran_free(&r);
    r = ctl(h, &s, "list", "--state", "running", "--json", NULL);
    jlines_parse(&j, r.out);
    cr_assert_eq(j.n, 1);
    cr_assert_str_eq(jstr(j.v[0], "id"), b);
    jlines_free(&j);
    ran_free(&r);
    r = ctl(h, &s, "list", "-n", "1", NULL);
    cr_assert(strstr(r.out, b) && !strstr(r.out, a->id), "%s", r.out);
    ran_free(&r);

    r = ctl(h, &s, "cancel", b, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "CANCELLED") && !strstr(r.out, "already"), "%s", r.out);
    ran_free(&r);
    Batch__V1__Batch *cb = h_wait_end(h, b, 10);
    cr_assert_eq(cb->state, BATCH__V1__BATCH_STATE__BATCH_STATE_CANCELLED);
    batch__v1__batch__free_unpacked(cb, NULL);
    r = ctl(h, &s, "cancel", b, NULL);
    cr_assert(strstr(r.out, "had already ended CANCELLED"), "%s", r.out);
    ran_free(&r);

    r = ctl(h, &s, "results", b, "--state", "cancelled", "--format-out", "csv", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_str_eq(r.out, "id,state,http_status,error\n"
                            "s1,CANCELLED,,cancelled by CancelBatch\n"
                            "s2,CANCELLED,,cancelled by CancelBatch\n"
                            "s3,CANCELLED,,cancelled by CancelBatch\n");
    ran_free(&r);
    char out[256];
    snprintf(out, sizeof out, "%s/a.json", s.dir);
    r = ctl(h, &s, "results", a->id, "-o", out, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char *text = slurp(out);
    json_t *arr = json_loads(text, 0, NULL);
    cr_assert(json_is_array(arr) && json_array_size(arr) == 5, "-o x.json writes a JSON array: %s", text);
    json_decref(arr);
    free(text);
    ran_free(&r);

    r = ctl(h, &s, "get", "01ZZZZZZZZZZZZZZZZZZZZZZZZ", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "NOT_FOUND: batch 01ZZZZZZZZZZZZZZZZZZZZZZZZ not found"), "%s", r.err);
    ran_free(&r);
    batch__v1__batch__free_unpacked(a, NULL);
    scratch_close(&s);
    h_stop(h);
}

Test(batchctl, retry_resubmits_the_failed_items_with_their_idempotency_keys)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    char *csv = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&csv, &len);
    fprintf(f, "id,name,fail_first\n");
    for (int i = 1; i <= 30; i++) /* rows 3, 10, 17, 24: a 503 on their first attempt */
        fprintf(f, "u%02d,user %d,%d\n", i, i, i % 7 == 3 ? 1 : 0);
    fclose(f);
    char file[256];
    snprintf(file, sizeof file, "%s", put(&s, "users.csv", csv));
    free(csv);
    ran r = ctl(h, &s, "submit", file, "--path", "/users?fail_first={fail_first}", "--id-column", "id", "-q", NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    ran_free(&r);
    Batch__V1__Batch *orig = newest(h);
    cr_assert_eq(orig->counts->failed, 4);

    /* Not the input of that batch: refused. */
    r = ctl(h, &s, "retry", orig->id, EXAMPLES "/batch.ndjson", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "has 6 operations but batch"), "%s", r.err);
    ran_free(&r);

    r = ctl(h, &s, "retry", orig->id, file, "--path", "/users?fail_first={fail_first}", "--id-column", "id",
            "--format-out", "csv", NULL);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert_str_eq(r.out, "id,state,http_status,error\n"
                            "u03,SUCCEEDED,200,\nu10,SUCCEEDED,200,\nu17,SUCCEEDED,200,\nu24,SUCCEEDED,200,\n");
    cr_assert(strstr(r.err, "retrying 4 failed or cancelled items of batch"), "%s", r.err);
    ran_free(&r);
    Batch__V1__Batch *again = newest(h);
    cr_assert_str_neq(again->id, orig->id);
    cr_assert_eq(again->counts->total, 4);
    cr_assert_str_eq(label(again, "retry-of"), orig->id);
    char key[64];
    snprintf(key, sizeof key, "%s/u10", orig->id);
    cr_assert_eq(upstream_key_count(h->up, key), 2, "the retry carried the first attempt's key");

    r = ctl(h, &s, "retry", again->id, file, "--path", "/users?fail_first={fail_first}", "--id-column", "id", NULL);
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.err, "nothing to retry"), "%s", r.err);
    ran_free(&r);
    batch__v1__batch__free_unpacked(again, NULL);
    batch__v1__batch__free_unpacked(orig, NULL);
    scratch_close(&s);
    h_stop(h);
}

/* ---- watch reconnection ------------------------------------------------------------- */

/* A TCP proxy in front of batchd that can cut every connection and refuse new ones for a
 * while, as a network failure does. It keeps its port all along (a port let go could be
 * taken by any connection of a parallel test): refusing is accepting and resetting. */
typedef struct proxy {
    int listen_fd, port, target_port;
    int ctl[2];
    pthread_t thread;
    pthread_mutex_t mu;
    int accepted;
    int pairs[32][2];
    int n_pairs;
} proxy;

static int proxy_listen(void)
{
    int port = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0, "bind: %s", strerror(errno));
    cr_assert_eq(listen(fd, 16), 0);
    return fd;
}

static void proxy_cut(proxy *p)
{
    struct linger lg = {1, 0}; /* RST: an abrupt failure, not a goodbye */
    for (int i = 0; i < p->n_pairs; i++)
        for (int k = 0; k < 2; k++) {
            setsockopt(p->pairs[i][k], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(p->pairs[i][k]);
        }
    p->n_pairs = 0;
}

static void *proxy_main(void *arg)
{
    proxy *p = arg;
    double refuse_until = 0;
    for (;;) {
        struct pollfd fds[2 + 64];
        int n = 0;
        fds[n++] = (struct pollfd){p->ctl[0], POLLIN, 0};
        fds[n++] = (struct pollfd){p->listen_fd, POLLIN, 0};
        int first_pair = n;
        for (int i = 0; i < p->n_pairs; i++) {
            fds[n++] = (struct pollfd){p->pairs[i][0], POLLIN, 0};
            fds[n++] = (struct pollfd){p->pairs[i][1], POLLIN, 0};
        }
        poll(fds, (nfds_t)n, -1);
        if (fds[0].revents) {
            int cmd[2]; /* pause in ms (-1: quit), new target port (0: the same) */
            if (read(p->ctl[0], cmd, sizeof cmd) != sizeof cmd || cmd[0] < 0) {
                proxy_cut(p);
                close(p->listen_fd);
                return NULL;
            }
            proxy_cut(p);
            refuse_until = now_s() + cmd[0] / 1000.0;
            if (cmd[1])
                p->target_port = cmd[1];
            continue;
        }
        if (fds[1].revents) {
            int c = accept(p->listen_fd, NULL, NULL);
            if (c >= 0 && now_s() < refuse_until) {
                struct linger lg = {1, 0};
                setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                close(c);
                continue;
            }
            int up = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->target_port),
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            if (c >= 0 && connect(up, (struct sockaddr *)&a, sizeof a) == 0 && p->n_pairs < 32) {
                p->pairs[p->n_pairs][0] = c;
                p->pairs[p->n_pairs][1] = up;
                p->n_pairs++;
                pthread_mutex_lock(&p->mu);
                p->accepted++;
                pthread_mutex_unlock(&p->mu);
            } else {
                if (c >= 0)
                    close(c);
                close(up);
            }
            continue;
        }
        for (int i = 0; i < p->n_pairs; i++) {
            for (int k = 0; k < 2; k++) {
                if (!fds[first_pair + 2 * i + k].revents)
                    continue;
                char buf[65536];
                ssize_t got = read(p->pairs[i][k], buf, sizeof buf);
                int dead = got <= 0;
                for (ssize_t off = 0; !dead && off < got;) {
                    ssize_t w = write(p->pairs[i][1 - k], buf + off, (size_t)(got - off));
                    dead = w <= 0;
                    off += w > 0 ? w : 0;
                }
                if (dead) {
                    close(p->pairs[i][0]);
                    close(p->pairs[i][1]);
                    p->pairs[i][0] = p->pairs[p->n_pairs - 1][0];
                    p->pairs[i][1] = p->pairs[p->n_pairs - 1][1];
                    p->n_pairs--;
                    goto next_round; /* the fd table changed */
                }
            }
        }
    next_round:;
    }
}

static proxy *proxy_start(int target_port)
{
    proxy *p = calloc(1, sizeof *p);
    p->target_port = target_port;
    p->listen_fd = proxy_listen();
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    getsockname(p->listen_fd, (struct sockaddr *)&a, &alen);
    p->port = ntohs(a.sin_port);
    cr_assert_eq(pipe(p->ctl), 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_create(&p->thread, NULL, proxy_main, p);
    return p;
}

/* Cuts every connection and refuses new ones for pause_ms; then forwards to target_port
 * unless it is 0. */
static void proxy_break(proxy *p, int pause_ms, int target_port)
{
    int cmd[2] = {pause_ms, target_port};
    cr_assert_eq(write(p->ctl[1], cmd, sizeof cmd), (ssize_t)sizeof cmd);
}

static int proxy_accepted(proxy *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->accepted;
    pthread_mutex_unlock(&p->mu);
    return n;
}

static void proxy_stop(proxy *p)
{
    int quit[2] = {-1, 0};
    cr_assert_eq(write(p->ctl[1], quit, sizeof quit), (ssize_t)sizeof quit);
    pthread_join(p->thread, NULL);
    close(p->ctl[0]);
    close(p->ctl[1]);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static int port_of(const char *addr)
{
    return atoi(strrchr(addr, ':') + 1);
}

Test(batchctl, watch_resumes_after_the_connection_breaks_without_losing_or_repeating_items)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    Batch__V1__SubmitBatchRequest *req = h_request_n(30, "/slow/%u?delay_ms=80", "{\"maxConcurrency\":2,\"mode\":\"MODE_ASYNC\"}");
    Batch__V1__SubmitBatchResponse *resp = h_submit(h, req, NULL);
    cr_assert_not_null(resp);
    proxy *p = proxy_start(port_of(h->addr));
    char server[64];
    snprintf(server, sizeof server, "127.0.0.1:%d", p->port);
    const char *args[] = {"watch", resp->batch->id, "--json", "--server", server, NULL};
    child c = spawn(&s, args, NULL, 0);
    wait_for(c.out_path, "\"item\"", 4, 10);
    proxy_break(p, 300, 0);
    ran r = finish(&c, 30);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "broke") && strstr(r.err, "reconnected"), "%s", r.err);
    cr_assert_geq(proxy_accepted(p), 2, "batchctl connected again");
    jlines j;
    jlines_parse(&j, r.out);
    int seen[30] = {0};
    json_int_t last_seq = 0;
    size_t items = 0;
    for (size_t i = 0; i < j.n; i++) {
        json_t *ev_item = json_object_get(j.v[i], "item");
        if (ev_item == NULL)
            continue;
        items++;
        json_int_t seq = strtoll(jstr(ev_item, "sequence"), NULL, 10);
        cr_assert_eq(seq, last_seq + 1, "item events in sequence order, none missing or repeated: %lld after %lld",
                     (long long)seq, (long long)last_seq);
        last_seq = seq;
        int idx = atoi(jstr(ev_item, "id") + 1);
        cr_assert_eq(seen[idx]++, 0, "item %d twice", idx);
    }
    cr_assert_eq(items, 30, "%zu item events", items);
    cr_assert_str_eq(jstr(json_object_get(j.v[j.n - 1], "batch"), "state"), "BATCH_STATE_SUCCEEDED");
    jlines_free(&j);
    ran_free(&r);
    proxy_stop(p);
    batch__v1__submit_batch_response__free_unpacked(resp, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    scratch_close(&s);
    h_stop(h);
}

Test(batchctl, watch_resumes_across_a_batchd_restart_without_losing_or_repeating_items)
{
    /* A real restart on the same --data-dir: the stream ends, batchd comes back (on another
     * port, behind the same proxy address) with the batch, and batchctl resumes after the
     * last sequence it saw. */
    char *dir = h_tempdir();
    const char *flags[] = {"--data-dir", dir, "--shutdown-grace", "0s", NULL};
    harness *h = h_start(flags);
    scratch s;
    scratch_open(&s);
    Batch__V1__SubmitBatchRequest *req = h_request_n(30, "/slow/%u?delay_ms=80", "{\"maxConcurrency\":2,\"mode\":\"MODE_ASYNC\"}");
    Batch__V1__SubmitBatchResponse *resp = h_submit(h, req, NULL);
    cr_assert_not_null(resp);
    proxy *p = proxy_start(port_of(h->addr));
    char server[64];
    snprintf(server, sizeof server, "127.0.0.1:%d", p->port);
    const char *args[] = {"watch", resp->batch->id, "--json", "--server", server, NULL};
    child c = spawn(&s, args, NULL, 0);
    wait_for(c.out_path, "\"item\"", 4, 10);
    h_restart(h);
    proxy_break(p, 100, port_of(h->addr));
    ran r = finish(&c, 60);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    jlines j;
    jlines_parse(&j, r.out);
    int seen[30] = {0};
    json_int_t last_seq = 0;
    size_t items = 0;
    for (size_t i = 0; i < j.n; i++) {
        json_t *ev_item = json_object_get(j.v[i], "item");
        if (ev_item == NULL)
            continue;
        items++;
        json_int_t seq = strtoll(jstr(ev_item, "sequence"), NULL, 10);
        cr_assert_eq(seq, last_seq + 1, "sequence %lld after %lld across the restart", (long long)seq,
                     (long long)last_seq);
        last_seq = seq;
        int idx = atoi(jstr(ev_item, "id") + 1);
        cr_assert_eq(seen[idx]++, 0, "item %d twice", idx);
    }
    cr_assert_eq(items, 30, "%zu item events", items);
    cr_assert_str_eq(jstr(json_object_get(j.v[j.n - 1], "batch"), "state"), "BATCH_STATE_SUCCEEDED");
    jlines_free(&j);
    ran_free(&r);
    proxy_stop(p);
    batch__v1__submit_batch_response__free_unpacked(resp, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    scratch_close(&s);
    h_stop(h);
    h_rmdir(dir);
}

Test(batchctl, watch_ends_with_a_clear_message_when_a_restarted_batchd_lost_the_batch)
{
    /* A restart without a durable store, as the client sees it: the stream breaks, and the
     * server that answers at the same address afterwards has never heard of the batch. */
    const char *fast_stop[] = {"--shutdown-grace", "50ms", NULL};
    harness *h = h_start(fast_stop);
    harness *fresh = h_start(NULL);
    scratch s;
    scratch_open(&s);
    Batch__V1__SubmitBatchRequest *req = h_request_n(2, "/slow/%u?delay_ms=10000", "{\"mode\":\"MODE_ASYNC\"}");
    Batch__V1__SubmitBatchResponse *resp = h_submit(h, req, NULL);
    cr_assert_not_null(resp);
    proxy *p = proxy_start(port_of(h->addr));
    char server[64];
    snprintf(server, sizeof server, "127.0.0.1:%d", p->port);
    const char *args[] = {"watch", resp->batch->id, "--server", server, NULL};
    child c = spawn(&s, args, NULL, 0);
    wait_for(c.err_path, "0/2 done", 1, 10);
    proxy_break(p, 100, port_of(fresh->addr));
    ran r = finish(&c, 30);
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    char want[128];
    snprintf(want, sizeof want, "batch %s is gone: batchd at %s no longer knows it", resp->batch->id, server);
    cr_assert(strstr(r.err, "reconnecting") && strstr(r.err, want), "want %s in:\n%s", want, r.err);
    cr_assert_lt(r.secs, 10);
    ran_free(&r);
    proxy_stop(p);
    batch__v1__submit_batch_response__free_unpacked(resp, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    scratch_close(&s);
    h_stop(fresh);
    h_stop(h);
}

Test(batchctl, watch_keeps_reconnecting_then_gives_up_when_batchd_stays_away)
{
    const char *args[] = {"--shutdown-grace", "50ms", NULL};
    harness *h = h_start(args);
    scratch s;
    scratch_open(&s);
    Batch__V1__SubmitBatchRequest *req = h_request_n(2, "/slow/%u?delay_ms=10000", "{\"mode\":\"MODE_ASYNC\"}");
    Batch__V1__SubmitBatchResponse *resp = h_submit(h, req, NULL);
    cr_assert_not_null(resp);
    char server[96];
    snprintf(server, sizeof server, "BATCHD_SERVER=%s", h->addr);
    const char *env[] = {server, NULL};
    const char *wargs[] = {"watch", resp->batch->id, "--reconnect-timeout", "1500ms", NULL};
    child c = spawn(&s, wargs, env, 0);
    wait_for(c.err_path, "0/2 done", 1, 10);
    double stopped = now_s();
    h_request_stop(h); /* running items are aborted: the batch is not over, the watch breaks */
    ran r = finish(&c, 30);
    double took = now_s() - stopped;
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "broke (UNAVAILABLE"), "%s", r.err);
    cr_assert(strstr(r.err, "gave up reconnecting to batchd at"), "%s", r.err);
    char hint[96];
    snprintf(hint, sizeof hint, "batchctl watch %s", resp->batch->id);
    cr_assert(strstr(r.err, hint), "%s", r.err);
    cr_assert_geq(took, 1.5, "gave up after %.2fs, before --reconnect-timeout", took);
    cr_assert_lt(took, 8);
    ran_free(&r);
    batch__v1__submit_batch_response__free_unpacked(resp, NULL);
    batch__v1__submit_batch_request__free_unpacked(req, NULL);
    scratch_close(&s);
    h_stop(h);
}

/* ---- Ctrl-C ----------------------------------------------------------------------- */

static void interrupt_a_slow_submit(int cancel)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    for (int i = 0; i < 20; i++)
        fprintf(f, "{\"id\":\"i%d\",\"method\":\"GET\",\"path\":\"/s/%d?delay_ms=300\"}\n", i, i);
    fclose(f);
    char file[256];
    snprintf(file, sizeof file, "%s", put(&s, "slow.ndjson", text));
    free(text);
    char server[96];
    snprintf(server, sizeof server, "BATCHD_SERVER=%s", h->addr);
    const char *env[] = {server, NULL};
    const char *args[] = {"submit", file, "--concurrency", "1", cancel ? "--cancel-on-interrupt" : NULL, NULL};
    child c = spawn(&s, args, env, 0);
    wait_for(c.err_path, " accepted: 20 operations", 1, 10);
    kill(c.pid, SIGINT);
    ran r = finish(&c, 10);
    cr_assert_eq(r.status, 130, "exit %d: %s", r.status, r.err);
    cr_assert_lt(r.secs, 3, "took %.1fs to stop", r.secs);
    Batch__V1__Batch *b = newest(h);
    char hint[96];
    snprintf(hint, sizeof hint, "batchctl watch %s --server %s", b->id, h->addr);
    if (cancel) {
        cr_assert(strstr(r.err, "CANCELLED"), "%s", r.err);
        Batch__V1__Batch *end = h_wait_end(h, b->id, 5);
        cr_assert_eq(end->state, BATCH__V1__BATCH_STATE__BATCH_STATE_CANCELLED);
        batch__v1__batch__free_unpacked(end, NULL);
    } else {
        cr_assert(strstr(r.err, "goes on running") && strstr(r.err, hint), "want %s in:\n%s", hint, r.err);
        cr_assert_eq(b->state, BATCH__V1__BATCH_STATE__BATCH_STATE_RUNNING, "detached, not cancelled");
    }
    batch__v1__batch__free_unpacked(b, NULL);
    ran_free(&r);
    scratch_close(&s);
    h_stop(h);
}

Test(batchctl, ctrl_c_detaches_and_says_how_to_watch_again)
{
    interrupt_a_slow_submit(0);
}

Test(batchctl, ctrl_c_with_cancel_on_interrupt_cancels_the_batch)
{
    interrupt_a_slow_submit(1);
}

/* ---- the progress display ----------------------------------------------------------- */

static ran run_40_items(harness *h, scratch *s, int tty, const char *no_color, const char *extra)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    for (int i = 0; i < 40; i++)
        fprintf(f, "{\"id\":\"i%d\",\"method\":\"GET\",\"path\":\"/p/%d?delay_ms=%d\"}\n", i, i, i % 5 == 0 ? 40 : 20);
    fclose(f);
    char file[256], out[256], server[96];
    snprintf(file, sizeof file, "%s", put(s, "p.ndjson", text));
    snprintf(out, sizeof out, "%s/results.ndjson", s->dir);
    snprintf(server, sizeof server, "BATCHD_SERVER=%s", h->addr);
    free(text);
    const char *env[] = {server, "TERM=xterm", no_color, NULL};
    const char *args[] = {"submit", file, "--concurrency", "2", "-o", out, extra, NULL};
    child c = spawn(s, args, env, tty);
    return finish(&c, 30);
}

Test(batchctl, a_terminal_gets_a_bar_redrawn_in_place_and_a_summary)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    ran r = run_40_items(h, &s, 1, NULL, NULL);
    cr_assert_eq(r.status, 0, "%s", r.out);
    int redraws = 0;
    for (const char *p = r.out; (p = strchr(p, '\r')) != NULL; p++)
        redraws += p[1] == '[';
    cr_assert_geq(redraws, 3, "the bar is redrawn with \\r: %s", r.out);
    cr_assert(strstr(r.out, "100%") && strstr(r.out, "40/40"), "%s", r.out);
    cr_assert(strstr(r.out, "/s  ETA "), "items per second and ETA: %s", r.out);
    cr_assert(strstr(r.out, "\033[32mok "), "colours on a terminal: %s", r.out);
    cr_assert(strstr(r.out, "SUCCEEDED\033[0m: 40 succeeded, 0 failed, 0 cancelled of 40"), "%s", r.out);
    ran_free(&r);
    scratch_close(&s);
    h_stop(h);
}

Test(batchctl, no_color_keeps_the_bar_and_drops_the_colours)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    ran r = run_40_items(h, &s, 1, "NO_COLOR=1", NULL);
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert(strstr(r.out, "\r["), "%s", r.out);
    cr_assert_null(strstr(r.out, "\033[3"), "%s", r.out);
    cr_assert_null(strstr(r.out, "\033[0m"), "%s", r.out);
    cr_assert(strstr(r.out, "SUCCEEDED: 40 succeeded"), "%s", r.out);
    ran_free(&r);
    scratch_close(&s);
    h_stop(h);
}

Test(batchctl, a_pipe_gets_plain_progress_lines)
{
    harness *h = h_start(NULL);
    scratch s;
    scratch_open(&s);
    ran r = run_40_items(h, &s, 0, NULL, "--progress-interval=150ms");
    cr_assert_eq(r.status, 0, "%s", r.err);
    int lines = 0;
    for (const char *p = r.err; (p = strstr(p, " done (")) != NULL; p++)
        lines++;
    cr_assert_geq(lines, 3, "a line every 150 ms over ~0.5 s: %s", r.err);
    cr_assert_null(strchr(r.err, '\r'), "%s", r.err);
    cr_assert_null(strchr(r.err, '\033'), "%s", r.err);
    cr_assert(strstr(r.err, "SUCCEEDED: 40 succeeded"), "%s", r.err);
    ran_free(&r);
    scratch_close(&s);
    h_stop(h);
}

/* ---- help ----------------------------------------------------------------------- */

Test(batchctl, every_command_has_help_and_the_version_is_printed)
{
    scratch s;
    scratch_open(&s);
    const char *cmds[] = {"submit", "watch", "get", "list", "cancel", "results", "retry"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        ran r = ctl(NULL, &s, cmds[i], "--help", NULL);
        char want[64];
        snprintf(want, sizeof want, "usage: batchctl %s [flags]", cmds[i]);
        cr_assert_eq(r.status, 0);
        cr_assert(strstr(r.out, want) && strstr(r.out, "--server ADDR"), "%s", r.out);
        ran_free(&r);
    }
    ran r = ctl(NULL, &s, "--help", NULL);
    cr_assert_eq(r.status, 0);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        cr_assert(strstr(r.out, cmds[i]), "%s", r.out);
    ran_free(&r);
    r = ctl(NULL, &s, "--version", NULL);
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.out, "batchctl " BATCHCTL_VERSION "\n");
    ran_free(&r);
    r = ctl(NULL, &s, NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "no command given"), "%s", r.err);
    ran_free(&r);
    scratch_close(&s);
}
