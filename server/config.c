/* Command-line parsing for batchd. One table holds every flag with its help text, so
 * `batchd --help` always lists exactly what the parser accepts. */
#include "config.h"

#include "pbtime.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_SEC 1000000000LL

enum opt_kind { OPT_STR, OPT_U32, OPT_SIZE, OPT_DURATION, OPT_DOUBLE, OPT_BOOL_ON, OPT_BOOL_OFF,
                OPT_TARGET, OPT_SYNC, OPT_LOG, OPT_HELP, OPT_VERSION };

typedef struct opt {
    const char *name;
    const char *arg;  /* placeholder shown in --help; NULL: takes no argument */
    enum opt_kind kind;
    size_t offset;    /* into config */
    const char *help;
} opt;

#define OFF(f) offsetof(config, f)

static const opt opts[] = {
    {"listen", "ADDR", OPT_STR, OFF(listen), "gRPC listen address (default 127.0.0.1:50051)"},
    {"target", "NAME=URL[,concurrency=N][,rate=R]", OPT_TARGET, 0,
     "upstream target (repeatable; the first is the default). concurrency caps the items "
     "running against it at once, rate caps item starts per second"},
    {"max-items", "N", OPT_U32, OFF(max_items), "operations per batch (default 1000)"},
    {"sync-threshold", "N", OPT_U32, OFF(sync_threshold),
     "auto mode answers batches of up to N items when they end (default 100)"},
    {"max-inflight", "N", OPT_U32, OFF(max_inflight),
     "items running at once across all batches (default 256)"},
    {"default-concurrency", "N", OPT_U32, OFF(default_concurrency),
     "a batch's max_concurrency when it sets none (default 10)"},
    {"max-concurrency", "N", OPT_U32, OFF(max_batch_concurrency),
     "cap of a batch's max_concurrency (default 256)"},
    {"max-attempts", "N", OPT_U32, OFF(max_attempts), "cap of a batch's max_attempts (default 10)"},
    {"max-rate", "R", OPT_DOUBLE, OFF(max_rate), "cap of a batch's max_rate, starts/s (default: none)"},
    {"item-timeout", "DUR", OPT_DURATION, OFF(default_item_timeout_ns),
     "per-attempt timeout when the batch and operation set none (default 30s)"},
    {"max-item-timeout", "DUR", OPT_DURATION, OFF(max_item_timeout_ns),
     "longest per-attempt timeout accepted (default 10m)"},
    {"retry-backoff", "DUR", OPT_DURATION, OFF(backoff_base_ns),
     "first retry delay, doubled per attempt, with jitter (default 100ms)"},
    {"max-retry-delay", "DUR", OPT_DURATION, OFF(backoff_max_ns),
     "longest retry delay, Retry-After included (default 30s)"},
    {"max-body-bytes", "N", OPT_SIZE, OFF(max_body_bytes),
     "request body of one operation (default 1048576)"},
    {"max-response-bytes", "N", OPT_SIZE, OFF(max_response_bytes),
     "response body kept per item; the rest is read and dropped (default 65536)"},
    {"max-sync-response-bytes", "N", OPT_SIZE, OFF(max_sync_response_bytes),
     "size of a synchronous SubmitBatch answer; results beyond it are left for ListResults "
     "(default 4194304, gRPC's default receive limit)"},
    {"max-watchers", "N", OPT_U32, OFF(max_watchers), "WatchBatch streams open at once (default 10000)"},
    {"shutdown-grace", "DUR", OPT_DURATION, OFF(shutdown_grace_ns),
     "on SIGTERM/SIGINT, running items may finish for this long (default 10s)"},
    {"no-reflection", NULL, OPT_BOOL_OFF, OFF(reflection), "do not serve gRPC server reflection"},
    {"data-dir", "DIR", OPT_STR, OFF(data_dir),
     "keep batches, operations and results in SQLite under DIR, and resume unfinished batches "
     "after a restart (default: in memory, lost when batchd stops)"},
    {"sync", "full|normal", OPT_SYNC, OFF(sync),
     "with --data-dir: fsync at every commit (full, default: nothing acknowledged is lost even on "
     "power loss) or only at checkpoints (normal: survives a crash of batchd, not of the machine)"},
    {"retention", "DUR", OPT_DURATION, OFF(retention_ns),
     "ended batches and their results are deleted this long after they end (default 7d)"},
    {"idempotency-ttl", "DUR", OPT_DURATION, OFF(idempotency_ttl_ns),
     "a request_id returns its batch, and an item's idempotency_key its earlier success, for this long "
     "(default 24h)"},
    {"log-level", "error|warn|info|debug", OPT_LOG, OFF(log_level), "default info"},
    {"help", NULL, OPT_HELP, 0, "show this help"},
    {"version", NULL, OPT_VERSION, 0, "show the version"},
};
#define N_OPTS (sizeof opts / sizeof opts[0])

void config_defaults(config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_items = 1000;
    cfg->sync_threshold = 100;
    cfg->max_inflight = 256;
    cfg->default_concurrency = 10;
    cfg->max_batch_concurrency = 256;
    cfg->max_attempts = 10;
    cfg->default_item_timeout_ns = 30 * NS_PER_SEC;
    cfg->max_item_timeout_ns = 600 * NS_PER_SEC;
    cfg->backoff_base_ns = NS_PER_SEC / 10;
    cfg->backoff_max_ns = 30 * NS_PER_SEC;
    cfg->max_body_bytes = 1 << 20;
    cfg->max_response_bytes = 64 << 10;
    cfg->max_sync_response_bytes = 4 << 20;
    cfg->max_watchers = 10000;
    cfg->shutdown_grace_ns = 10 * NS_PER_SEC;
    cfg->reflection = 1;
    cfg->sync = STORE_SYNC_FULL;
    cfg->retention_ns = 7 * 86400 * NS_PER_SEC;
    cfg->idempotency_ttl_ns = 86400 * NS_PER_SEC;
    cfg->log_level = LOG_INFO;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static int valid_target_name(const char *s)
{
    if (*s == '\0' || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
            return 0;
    return 1;
}

int config_add_target(config *cfg, const char *spec, char *err, size_t errlen)
{
    char *copy = strdup(spec), *save = NULL;
    target_config t = {0};
    if (copy == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char *first = strtok_r(copy, ",", &save);
    char *eq = first ? strchr(first, '=') : NULL;
    if (eq == NULL) {
        snprintf(err, errlen, "--target %s: expected NAME=URL", spec);
        goto fail;
    }
    *eq = '\0';
    const char *name = first, *url = eq + 1;
    if (!valid_target_name(name)) {
        snprintf(err, errlen, "--target %s: name must be 1-64 letters, digits, '-', '_' or '.'", spec);
        goto fail;
    }
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        snprintf(err, errlen, "--target %s: URL must start with http:// or https://", spec);
        goto fail;
    }
    if (strpbrk(url, " \t\r\n?#")) {
        snprintf(err, errlen, "--target %s: URL must not hold spaces, a query or a fragment", spec);
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_targets; i++) {
        if (strcmp(cfg->targets[i].name, name) == 0) {
            snprintf(err, errlen, "--target %s: target %s given twice", spec, name);
            goto fail;
        }
    }
    for (char *kv; (kv = strtok_r(NULL, ",", &save));) {
        uint64_t u;
        char *end;
        if (strncmp(kv, "concurrency=", 12) == 0 && parse_u64(kv + 12, 1000000, &u) == 0 && u > 0) {
            t.max_concurrency = (uint32_t)u;
        } else if (strncmp(kv, "rate=", 5) == 0) {
            t.max_rate = strtod(kv + 5, &end);
            if (*end || !isfinite(t.max_rate) || t.max_rate <= 0) {
                snprintf(err, errlen, "--target %s: rate must be a positive number", spec);
                goto fail;
            }
        } else {
            snprintf(err, errlen, "--target %s: unknown or invalid setting '%s' "
                     "(expected concurrency=N or rate=R)", spec, kv);
            goto fail;
        }
    }
    size_t ulen = strlen(url);
    while (ulen > 0 && url[ulen - 1] == '/')
        ulen--; /* paths start with '/': keep exactly one */
    t.name = strdup(name);
    t.url = strndup(url, ulen);
    target_config *v = realloc(cfg->targets, (cfg->n_targets + 1) * sizeof *v);
    if (t.name == NULL || t.url == NULL || v == NULL) {
        if (v)
            cfg->targets = v;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    cfg->targets = v;
    cfg->targets[cfg->n_targets++] = t;
    free(copy);
    return 0;
fail:
    free(t.name);
    free(t.url);
    free(copy);
    return -1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: batchd [OPTIONS] --target NAME=URL ...\n"
            "\n"
            "batchd runs batches of HTTP operations against configured upstream targets.\n"
            "Clients submit batches over gRPC (batch.v1.BatchService) and watch their progress.\n"
            "\nOptions:\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", opts[i].name, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        if (strlen(left) > 28)
            fprintf(out, "  %s\n  %-28s ", left, "");
        else
            fprintf(out, "  %-28s ", left);
        /* Words wrapped under their column, lines of at most 100 characters. */
        const char *p = opts[i].help;
        size_t col = 31;
        while (*p) {
            size_t w = strcspn(p, " ");
            if (col > 31 && col + 1 + w > 100) {
                fprintf(out, "\n%31s", "");
                col = 31;
            } else if (col > 31) {
                fputc(' ', out);
                col++;
            }
            fprintf(out, "%.*s", (int)w, p);
            col += w;
            p += w;
            while (*p == ' ')
                p++;
        }
        fputc('\n', out);
    }
    fprintf(out,
            "\nDurations: 500ms, 30s, 5m, 2h, 7d (a bare number is seconds).\n"
            "Example:\n"
            "  batchd --target api=http://127.0.0.1:8080,concurrency=64,rate=500 \\\n"
            "         --target billing=https://billing.internal --data-dir ./data\n");
}

static int apply(config *cfg, const opt *o, const char *arg)
{
    char *field = (char *)cfg + o->offset;
    char err[256];
    uint64_t u;
    switch (o->kind) {
    case OPT_STR: {
        char *s = strdup(arg);
        if (s == NULL)
            return -1;
        free(*(char **)field);
        *(char **)field = s;
        return 0;
    }
    case OPT_U32:
        if (parse_u64(arg, UINT32_MAX, &u) < 0 || u == 0)
            break;
        *(uint32_t *)field = (uint32_t)u;
        return 0;
    case OPT_SIZE:
        if (parse_u64(arg, (uint64_t)1 << 40, &u) < 0 || u == 0)
            break;
        *(size_t *)field = (size_t)u;
        return 0;
    case OPT_DURATION:
        if (pbtime_parse_duration(arg, (int64_t *)field) < 0)
            break;
        if (o->offset == OFF(default_item_timeout_ns))
            cfg->item_timeout_given = 1;
        return 0;
    case OPT_DOUBLE: {
        char *end;
        double d = strtod(arg, &end);
        if (*end || !isfinite(d) || d < 0)
            break;
        *(double *)field = d;
        return 0;
    }
    case OPT_BOOL_ON:
        *(int *)field = 1;
        return 0;
    case OPT_BOOL_OFF:
        *(int *)field = 0;
        return 0;
    case OPT_TARGET:
        if (config_add_target(cfg, arg, err, sizeof err) < 0) {
            fprintf(stderr, "batchd: %s\n", err);
            return -1;
        }
        return 0;
    case OPT_SYNC:
        if (strcmp(arg, "full") == 0)
            cfg->sync = STORE_SYNC_FULL;
        else if (strcmp(arg, "normal") == 0)
            cfg->sync = STORE_SYNC_NORMAL;
        else
            break;
        return 0;
    case OPT_LOG:
        if (log_level_parse(arg, &cfg->log_level) < 0)
            break;
        return 0;
    case OPT_HELP:
    case OPT_VERSION:
        return 0;
    }
    fprintf(stderr, "batchd: invalid value '%s' for --%s (expected %s)\n", arg, o->name, o->arg);
    return -1;
}

int config_parse(config *cfg, int argc, char **argv)
{
    struct option lopts[N_OPTS + 1];
    for (size_t i = 0; i < N_OPTS; i++)
        lopts[i] = (struct option){opts[i].name, opts[i].arg ? required_argument : no_argument, NULL,
                                   (int)i};
    lopts[N_OPTS] = (struct option){0};
    optind = 1;
    opterr = 0;
    for (;;) {
        int idx = -1;
        int c = getopt_long(argc, argv, ":h", lopts, &idx);
        if (c == -1)
            break;
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == '?' || c == ':') {
            const char *bad = argv[optind - 1];
            fprintf(stderr, "batchd: %s: %s\nTry 'batchd --help'.\n", bad,
                    c == ':' ? "missing value" : "unknown option");
            return -1;
        }
        const opt *o = &opts[c];
        if (o->kind == OPT_HELP) {
            usage(stdout);
            return 1;
        }
        if (o->kind == OPT_VERSION) {
            printf("batchd %s\n", BATCHD_VERSION);
            return 1;
        }
        if (apply(cfg, o, optarg) < 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "batchd: unexpected argument '%s'\nTry 'batchd --help'.\n", argv[optind]);
        return -1;
    }
    return 0;
}

int config_finish(config *cfg, char *err, size_t errlen)
{
    if (cfg->listen == NULL && (cfg->listen = strdup("127.0.0.1:50051")) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg->n_targets == 0) {
        snprintf(err, errlen, "no upstream target: give at least one --target NAME=URL");
        return -1;
    }
    if (cfg->default_concurrency > cfg->max_batch_concurrency)
        cfg->default_concurrency = cfg->max_batch_concurrency;
    if (cfg->default_item_timeout_ns > cfg->max_item_timeout_ns) {
        if (cfg->item_timeout_given) {
            snprintf(err, errlen, "--item-timeout is longer than --max-item-timeout");
            return -1;
        }
        cfg->default_item_timeout_ns = cfg->max_item_timeout_ns; /* the default yields to the cap */
    }
    if (cfg->sync_threshold > cfg->max_items)
        cfg->sync_threshold = cfg->max_items;
    /* The largest valid request: every operation at its body limit plus room for its
     * path, headers and ids (bounded by validation), and the batch's own fields. */
    uint64_t per_op = (uint64_t)cfg->max_body_bytes + 96 * 1024;
    uint64_t total = per_op * cfg->max_items + 1024 * 1024;
    /* ...but one request never gets more than 256 MiB of memory: larger ones are refused
     * by gRPC itself with RESOURCE_EXHAUSTED before they are buffered. */
    const uint64_t ceiling = 256u << 20;
    cfg->max_request_bytes = (size_t)(total > ceiling ? ceiling : total);
    return 0;
}

void config_free(config *cfg)
{
    for (size_t i = 0; i < cfg->n_targets; i++) {
        free(cfg->targets[i].name);
        free(cfg->targets[i].url);
    }
    free(cfg->targets);
    free(cfg->listen);
    free(cfg->data_dir);
    memset(cfg, 0, sizeof *cfg);
}
