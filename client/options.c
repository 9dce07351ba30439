/* batchctl's command line: a table of commands and a table of flags, in the manner of
 * curl's tool_getparam.c. Parsing and --help both read the tables. */
#include "options.h"

#include "pbtime.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct cmd_def {
    const char *name;
    const char *args;       /* positional arguments as shown in usage */
    int n_args;             /* exactly this many */
    const char *summary;    /* one line in `batchctl --help` */
    const char *about;      /* the body of `batchctl CMD --help` */
} cmd_def;

static const cmd_def cmds[BCTL_N_CMDS] = {
    [BCTL_CMD_SUBMIT] = {"submit", "FILE|-", 1, "submit a batch from a JSON, NDJSON or CSV file and follow it",
        "Reads operations from FILE (- for stdin) and submits them as one batch, then shows its\n"
        "progress on stderr and writes every item's result, in input order, to stdout or --output.\n"
        "\n"
        "Input formats (from the extension, or --format):\n"
        "  .json           a SubmitBatchRequest in the protobuf JSON mapping, as grpcurl -d @ takes:\n"
        "                  {\"operations\":[{\"id\":\"u1\",\"method\":\"POST\",\"path\":\"/users\",\n"
        "                   \"json\":{\"name\":\"Ada\"}}],\"options\":{\"maxConcurrency\":20}}\n"
        "                  Flags override the document's options.\n"
        "  .ndjson .jsonl  one Operation per line\n"
        "  .csv            a header row, then one operation per row: --method and --path (whose\n"
        "                  {column} placeholders are filled from the row), the other columns as\n"
        "                  the JSON body\n"
        "A malformed file is reported with its line and column, and nothing is submitted.\n"
        "\n"
        "Exit status: 0 every item succeeded, 2 some items failed or were cancelled, 1 the batch\n"
        "was not accepted (usage, input, connection, validation), 130 interrupted by Ctrl-C (the\n"
        "batch keeps running unless --cancel-on-interrupt).\n"
        "\n"
        "Examples:\n"
        "  batchctl submit examples/batch.json\n"
        "  batchctl submit users.csv --path '/users/{id}' --method PUT --id-column id -o results.csv\n"
        "  batchctl submit ops.ndjson --concurrency 50 --attempts 3 --label team=growth --async\n"},
    [BCTL_CMD_WATCH] = {"watch", "ID", 1, "show a batch's progress until it ends",
        "Shows the progress of batch ID until it ends. If the stream breaks (batchd restarts, the\n"
        "network fails), reconnects with backoff and resumes where it stopped, for up to\n"
        "--reconnect-timeout.\n"
        "\n"
        "Exit status: 0 every item succeeded, 2 some items failed or were cancelled, 1 error,\n"
        "130 interrupted.\n"
        "\n"
        "Examples:\n"
        "  batchctl watch 01HV6J8W4R2D0S7N3XK5Q9TB1C\n"
        "  batchctl watch 01HV6J8W4R2D0S7N3XK5Q9TB1C --json | jq -c .item\n"},
    [BCTL_CMD_GET] = {"get", "ID", 1, "show one batch",
        "Shows batch ID: state, counts, times and effective options.\n"},
    [BCTL_CMD_LIST] = {"list", "", 0, "list batches, newest first", "Lists batches, newest first.\n"},
    [BCTL_CMD_CANCEL] = {"cancel", "ID", 1, "cancel a batch",
        "Cancels batch ID: pending items are not run and running ones are aborted. A batch that\n"
        "already ended is left as it is.\n"},
    [BCTL_CMD_RESULTS] = {"results", "ID", 1, "write a batch's results",
        "Writes the recorded results of batch ID in input order.\n"
        "\n"
        "Examples:\n"
        "  batchctl results 01HV6J8W4R2D0S7N3XK5Q9TB1C --state failed --format-out csv\n"},
    [BCTL_CMD_RETRY] = {"retry", "ID", 1, "resubmit the failed and cancelled items of a batch",
        "Submits the operations of batch ID whose items failed or were cancelled as a new batch\n"
        "labelled retry-of=ID, in their original order, with the original batch's options unless\n"
        "flags say otherwise; then follows it as submit does. batchd keeps the operations of\n"
        "every batch and batchctl reads them back, so no input file is needed.\n"
        "\n"
        "Each operation is sent as its first attempt was: with its own idempotency key, else\n"
        "with ID/ITEM, ITEM being its id or, if it has none, its index in the batch (0 for the\n"
        "first), which also becomes its id. The upstream sees a retry of the same request.\n"
        "\n"
        "Batch ID must have ended. A batchd too old to list a batch's operations answers\n"
        "UNIMPLEMENTED: upgrade it.\n"
        "\n"
        "Exit status: as submit; 0 also when nothing needed a retry (nothing is submitted).\n"
        "\n"
        "Examples:\n"
        "  batchctl retry 01HV6J8W4R2D0S7N3XK5Q9TB1C -o retry.csv\n"
        "  batchctl retry 01HV6J8W4R2D0S7N3XK5Q9TB1C --attempts 3 --concurrency 5\n"},
};

typedef enum opt_kind {
    K_STRING, K_U32, K_DURATION, K_RATE, K_FLAG, K_LABEL, K_FORMAT_IN, K_FORMAT_OUT,
    K_ITEM_STATE, K_BATCH_STATE, K_HELP, K_VERSION,
} opt_kind;

typedef enum opt_group { G_INPUT, G_BATCH, G_FOLLOW, G_OUTPUT, G_GLOBAL, N_GROUPS } opt_group;

static const char *const group_titles[N_GROUPS] = {
    "Input", "Batch options", "Following", "Output", "Global flags",
};

typedef struct opt_def {
    const char *name;
    char short_name;        /* 0: none */
    const char *arg;        /* placeholder shown in help; NULL: takes no value */
    opt_kind kind;
    size_t offset;          /* into bctl_opts */
    unsigned cmds;          /* bit per bctl_cmd it applies to */
    opt_group group;
    const char *help;
} opt_def;

#define OFF(f) offsetof(bctl_opts, f)
#define C(x) (1u << BCTL_CMD_##x)
#define ALL (~0u)
#define SENDS (C(SUBMIT) | C(RETRY)) /* the batch options */
#define FOLLOWS (C(SUBMIT) | C(RETRY) | C(WATCH))

static const opt_def opts[] = {
    {"format", 'f', "json|ndjson|csv", K_FORMAT_IN, OFF(format), C(SUBMIT), G_INPUT,
     "input format (default: from the extension: .json, .ndjson or .jsonl, .csv)"},
    {"method", 'X', "METHOD", K_STRING, OFF(csv.method), C(SUBMIT), G_INPUT,
     "CSV: HTTP method of every row (default POST)"},
    {"path", 0, "TEMPLATE", K_STRING, OFF(csv.path), C(SUBMIT), G_INPUT,
     "CSV: path of every row, required; {column} is replaced by the row's value, URL-encoded, "
     "and that column is left out of the body"},
    {"id-column", 0, "COLUMN", K_STRING, OFF(csv.id_column), C(SUBMIT), G_INPUT,
     "CSV: the column holding each row's id (default: the row number, 1 for the first row)"},
    {"csv-strings", 0, NULL, K_FLAG, OFF(csv.strings), C(SUBMIT), G_INPUT,
     "CSV: every body value is a string (default: numbers, true, false and null are typed)"},

    {"concurrency", 'c', "N", K_U32, OFF(concurrency), SENDS, G_BATCH,
     "items running at once (default: the server's, 10)"},
    {"attempts", 0, "N", K_U32, OFF(attempts), SENDS, G_BATCH,
     "attempts per item, the first included; connection errors, timeouts, 429, 502, 503 and 504 "
     "are retried (default 1)"},
    {"item-timeout", 0, "DUR", K_DURATION, OFF(item_timeout_ns), SENDS, G_BATCH,
     "timeout of each attempt (default: the server's, 30s)"},
    {"rate", 0, "N", K_RATE, OFF(rate), SENDS, G_BATCH, "item starts per second (default: unlimited)"},
    {"stop-on-failure", 0, NULL, K_FLAG, OFF(stop_on_failure), SENDS, G_BATCH,
     "cancel what remains after the first failed item"},
    {"target", 't', "NAME", K_STRING, OFF(target), C(SUBMIT), G_BATCH,
     "target of every operation that names none (default: the server's first target)"},
    {"request-id", 0, "ID", K_STRING, OFF(request_id), SENDS, G_BATCH,
     "idempotency key of the submission: the same id again returns the original batch"},
    {"label", 'l', "KEY=VALUE", K_LABEL, 0, SENDS, G_BATCH, "label the batch (repeatable)"},
    {"validate-only", 0, NULL, K_FLAG, OFF(validate_only), SENDS, G_BATCH,
     "have batchd validate the batch, and create nothing"},
    {"async", 0, NULL, K_FLAG, OFF(async), SENDS, G_BATCH,
     "print the batch id on stdout and exit without following the batch"},

    {"cancel-on-interrupt", 0, NULL, K_FLAG, OFF(cancel_on_interrupt), FOLLOWS, G_FOLLOW,
     "on Ctrl-C cancel the batch (default: detach from it and let it run)"},
    {"reconnect-timeout", 0, "DUR", K_DURATION, OFF(reconnect_timeout_ns), FOLLOWS, G_FOLLOW,
     "how long to keep reconnecting when the stream from batchd breaks (default 60s)"},
    {"quiet", 'q', NULL, K_FLAG, OFF(quiet), FOLLOWS, G_FOLLOW,
     "no progress display and no summary line"},
    {"progress-interval", 0, "DUR", K_DURATION, OFF(progress_interval_ns), FOLLOWS, G_FOLLOW,
     "period of the plain progress lines written when stderr is not a terminal (default 2s); "
     "on a terminal the bar is redrawn up to 10 times a second"},
    {"json", 0, NULL, K_FLAG, OFF(json), C(WATCH), G_FOLLOW,
     "print every event (the snapshot, each ended item, progress, the final state) as a JSON "
     "line on stdout"},

    {"output", 'o', "FILE", K_STRING, OFF(output), SENDS | C(RESULTS), G_OUTPUT,
     "write the results to FILE instead of stdout"},
    {"format-out", 0, "ndjson|csv|json", K_FORMAT_OUT, OFF(format_out), SENDS | C(RESULTS), G_OUTPUT,
     "results format (default: from --output's extension, else ndjson); csv has the columns "
     "id,state,http_status,error"},
    {"state", 0, "succeeded|failed|cancelled", K_ITEM_STATE, OFF(item_state), C(RESULTS), G_OUTPUT,
     "only the results in this state"},
    {"state", 0, "STATE", K_BATCH_STATE, OFF(batch_state), C(LIST), G_OUTPUT,
     "only batches in this state: pending, running, succeeded, completed_with_failures, "
     "cancelled, failed"},
    {"label", 'l', "KEY=VALUE", K_LABEL, 0, C(LIST), G_OUTPUT,
     "only batches with this label (repeatable: all must match)"},
    {"limit", 'n', "N", K_U32, OFF(limit), C(LIST), G_OUTPUT, "show at most N batches (default 50; 0: all)"},
    {"json", 0, NULL, K_FLAG, OFF(json), C(GET), G_OUTPUT, "print the batch as JSON"},
    {"json", 0, NULL, K_FLAG, OFF(json), C(LIST), G_OUTPUT, "print one JSON object per batch and line"},

    {"server", 's', "ADDR", K_STRING, OFF(server), ALL, G_GLOBAL,
     "batchd's address (default: $BATCHD_SERVER, else " BCTL_DEFAULT_SERVER ")"},
    {"timeout", 0, "DUR", K_DURATION, OFF(timeout_ns), ALL, G_GLOBAL,
     "deadline of each call to batchd, and longest wait for the next result of a stream (default 30s)"},
    {"help", 'h', NULL, K_HELP, 0, ALL, G_GLOBAL, "show help (batchctl CMD --help: the command's)"},
    {"version", 0, NULL, K_VERSION, 0, ALL, G_GLOBAL, "show the version"},
};
#define N_OPTS (sizeof opts / sizeof opts[0])

const char *opt_cmd_name(bctl_cmd cmd)
{
    return cmd > BCTL_CMD_NONE && cmd < BCTL_N_CMDS ? cmds[cmd].name : "batchctl";
}

static bctl_cmd find_cmd(const char *name)
{
    for (int c = BCTL_CMD_NONE + 1; c < BCTL_N_CMDS; c++)
        if (strcmp(cmds[c].name, name) == 0)
            return (bctl_cmd)c;
    return BCTL_CMD_NONE;
}

/* ---- help ------------------------------------------------------------------------- */

/* Prints text wrapped at width columns, continuation lines indented by indent; the cursor
 * is at column col when it starts. */
static void wrap(FILE *f, const char *text, int col, int indent, int width)
{
    int fresh = 1; /* nothing written on this line yet */
    while (*text) {
        size_t word = strcspn(text, " ");
        if (!fresh && col + 1 + (int)word > width) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
            fresh = 1;
        }
        if (!fresh) {
            fputc(' ', f);
            col++;
        }
        fwrite(text, 1, word, f);
        col += (int)word;
        fresh = 0;
        text += word;
        while (*text == ' ')
            text++;
    }
    fputc('\n', f);
}

static void flag_line(FILE *f, const opt_def *d)
{
    char left[96];
    int n = d->short_name ? snprintf(left, sizeof left, "-%c, --%s", d->short_name, d->name)
                          : snprintf(left, sizeof left, "    --%s", d->name);
    if (d->arg)
        snprintf(left + n, sizeof left - (size_t)n, " %s", d->arg);
    if (strlen(left) > 28) {
        fprintf(f, "  %s\n%32s", left, "");
    } else {
        fprintf(f, "  %-28s  ", left);
    }
    wrap(f, d->help, 32, 32, 92);
}

void opt_usage(FILE *f, bctl_cmd cmd)
{
    if (cmd == BCTL_CMD_NONE) {
        fputs("usage: batchctl [--server ADDR] [--timeout DUR] COMMAND [flags] [args]\n"
              "\n"
              "The command-line client of batchd: submit batches of HTTP operations from JSON,\n"
              "NDJSON or CSV files, follow their progress, read their results, retry failures.\n"
              "\n"
              "Commands:\n",
              f);
        for (int c = BCTL_CMD_NONE + 1; c < BCTL_N_CMDS; c++) {
            char left[40];
            snprintf(left, sizeof left, "%s %s", cmds[c].name, cmds[c].args);
            fprintf(f, "  %-20s %s\n", left, cmds[c].summary);
        }
        fprintf(f, "\n%s:\n", group_titles[G_GLOBAL]);
        for (size_t i = 0; i < N_OPTS; i++)
            if (opts[i].group == G_GLOBAL)
                flag_line(f, &opts[i]);
        fputs("\nDurations: 30s, 1.5s, 250ms, 2m, 1h (a bare number is seconds).\n"
              "Run 'batchctl COMMAND --help' for a command's flags.\n",
              f);
        return;
    }
    const cmd_def *c = &cmds[cmd];
    fprintf(f, "usage: batchctl %s [flags]%s%s\n\n%s", c->name, c->args[0] ? " " : "", c->args, c->about);
    for (int g = 0; g < N_GROUPS; g++) {
        int shown = 0;
        for (size_t i = 0; i < N_OPTS; i++) {
            if (opts[i].group != (opt_group)g || !(opts[i].cmds & (1u << cmd)))
                continue;
            if (!shown++)
                fprintf(f, "\n%s:\n", group_titles[g]);
            flag_line(f, &opts[i]);
        }
    }
}

/* ---- values ------------------------------------------------------------------------ */

const char *opt_label_value(const char *label, size_t *key_len)
{
    const char *eq = strchr(label, '=');
    *key_len = (size_t)(eq - label);
    return eq + 1;
}

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_state(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (names[i] && strcasecmp(s, names[i]) == 0)
            return i;
    return -1;
}

static const char *const item_states[] = {NULL, NULL, NULL, "succeeded", "failed", "cancelled"};
static const char *const batch_states[] = {NULL, "pending", "running", "succeeded",
                                           "completed_with_failures", "cancelled", "failed"};

/* Stores value for d. Returns 0, or -1 after printing why value is wrong. */
static int set_value(bctl_opts *o, const opt_def *d, const char *value, FILE *err)
{
    void *field = (char *)o + d->offset;
    int bad = 0;
    switch (d->kind) {
    case K_STRING:
        *(const char **)field = value;
        break;
    case K_U32:
        bad = parse_u32(value, field) < 0;
        break;
    case K_DURATION:
        bad = pbtime_parse_duration(value, field) < 0;
        break;
    case K_RATE: {
        char *end;
        errno = 0;
        double r = strtod(value, &end);
        bad = end == value || *end || errno || !isfinite(r) || r < 0;
        if (!bad)
            *(double *)field = r;
        break;
    }
    case K_LABEL: {
        const char *eq = strchr(value, '=');
        bad = eq == NULL || eq == value;
        if (!bad) {
            const char **l = realloc(o->labels, (o->n_labels + 1) * sizeof *l);
            if (l == NULL) {
                fprintf(err, "batchctl: out of memory\n");
                return -1;
            }
            o->labels = l;
            o->labels[o->n_labels++] = value;
        }
        break;
    }
    case K_FORMAT_IN: {
        input_format f = input_format_parse(value);
        bad = f == INPUT_AUTO;
        *(input_format *)field = f;
        break;
    }
    case K_FORMAT_OUT: {
        out_format f = out_format_parse(value);
        bad = f == OUT_AUTO;
        *(out_format *)field = f;
        break;
    }
    case K_ITEM_STATE:
    case K_BATCH_STATE: {
        int item = d->kind == K_ITEM_STATE;
        int v = item ? parse_state(value, item_states, 6) : parse_state(value, batch_states, 7);
        bad = v < 0;
        *(int *)field = v;
        break;
    }
    default:
        break;
    }
    if (bad)
        fprintf(err, "batchctl: --%s: invalid value '%s' (expected %s)\n", d->name, value, d->arg);
    return bad ? -1 : 0;
}

/* ---- argv ------------------------------------------------------------------------- */

/* The flag called name (long, or the short letter when len is 1 and is_short) that applies
 * to cmd; *other is set when the name exists for other commands only. */
static const opt_def *find_opt(const char *name, size_t len, int is_short, bctl_cmd cmd, int *other)
{
    *other = 0;
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_def *d = &opts[i];
        int match = is_short ? d->short_name == name[0]
                             : strlen(d->name) == len && strncmp(d->name, name, len) == 0;
        if (!match)
            continue;
        if (cmd == BCTL_CMD_NONE ? d->cmds == ALL : (d->cmds & (1u << cmd)) != 0)
            return d;
        *other = 1;
    }
    return NULL;
}

static opt_result try_help(const bctl_opts *o, FILE *err)
{
    if (o->cmd != BCTL_CMD_NONE)
        fprintf(err, "Try 'batchctl %s --help'.\n", opt_cmd_name(o->cmd));
    else
        fputs("Try 'batchctl --help'.\n", err);
    return OPT_USAGE;
}

static opt_result usage_error(const bctl_opts *o, FILE *err, const char *fmt, const char *a, const char *b)
{
    fputs("batchctl: ", err);
    fprintf(err, fmt, a, b);
    fputc('\n', err);
    return try_help(o, err);
}

static void defaults(bctl_opts *o, const char *env_server)
{
    memset(o, 0, sizeof *o);
    o->server = env_server && *env_server ? env_server : BCTL_DEFAULT_SERVER;
    o->timeout_ns = 30 * 1000000000LL;
    o->item_timeout_ns = -1;
    o->rate = -1;
    o->reconnect_timeout_ns = 60 * 1000000000LL;
    o->progress_interval_ns = 2 * 1000000000LL;
    o->limit = 50;
}

opt_result opt_parse(bctl_opts *o, int argc, char **argv, const char *env_server, FILE *out, FILE *err)
{
    defaults(o, env_server);
    int help = 0, version = 0, only_args = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_args || a[0] != '-' || strcmp(a, "-") == 0) {
            if (o->cmd == BCTL_CMD_NONE) {
                if (strcmp(a, "help") == 0) { /* `batchctl help [CMD]`, as gh and kubectl have */
                    help = 1;
                    if (i + 1 < argc && (o->cmd = find_cmd(argv[i + 1])) != BCTL_CMD_NONE)
                        i++;
                    continue;
                }
                if ((o->cmd = find_cmd(a)) == BCTL_CMD_NONE)
                    return usage_error(o, err, "unknown command '%s'%s", a, "");
            } else if (o->n_args < 2) {
                o->args[o->n_args++] = a;
            } else {
                return usage_error(o, err, "unexpected argument '%s'%s", a, "");
            }
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_args = 1;
            continue;
        }
        int is_short = a[1] != '-';
        const char *name = a + (is_short ? 1 : 2);
        const char *eq = is_short ? NULL : strchr(name, '=');
        size_t len = is_short ? 1 : eq ? (size_t)(eq - name) : strlen(name);
        int other = 0;
        const opt_def *d = find_opt(name, len, is_short, o->cmd, &other);
        if (d == NULL) {
            if (other && o->cmd == BCTL_CMD_NONE)
                return usage_error(o, err, "%s must come after the command%s", a, "");
            if (other)
                return usage_error(o, err, "%s does not apply to %s", a, opt_cmd_name(o->cmd));
            return usage_error(o, err, "unknown flag '%s'%s", a, "");
        }
        const char *value = NULL;
        if (d->arg) {
            if (eq)
                value = eq + 1;
            else if (is_short && name[1])
                value = name + 1; /* -ofile */
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return usage_error(o, err, "%s needs a value (%s)", a, d->arg);
        } else if (eq || (is_short && name[1])) {
            return usage_error(o, err, "%s takes no value%s", a, "");
        }
        if (d->kind == K_HELP)
            help = 1;
        else if (d->kind == K_VERSION)
            version = 1;
        else if (d->kind == K_FLAG)
            *(int *)((char *)o + d->offset) = 1;
        else if (set_value(o, d, value, err) < 0)
            return try_help(o, err);
    }
    if (version) {
        fprintf(out, "batchctl %s\n", BATCHCTL_VERSION);
        return OPT_DONE;
    }
    if (help) {
        opt_usage(out, o->cmd);
        return OPT_DONE;
    }
    if (o->cmd == BCTL_CMD_NONE)
        return usage_error(o, err, "no command given%s%s", "", "");
    if (o->n_args != cmds[o->cmd].n_args)
        return usage_error(o, err, "%s takes %s", opt_cmd_name(o->cmd),
                           cmds[o->cmd].n_args ? cmds[o->cmd].args : "no arguments");
    return OPT_RUN;
}

void opt_free(bctl_opts *o)
{
    free(o->labels);
    o->labels = NULL;
    o->n_labels = 0;
}
