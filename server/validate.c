/* SubmitBatchRequest validation. Field paths follow the proto names, e.g.
 * operations[17].path or operations[3].headers["Host"]. */
#include "validate.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pbgrpc.h"
#include "pbtime.h"
#include "pbvalue.h"

static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};

/* Hop-by-hop and framing headers: batchd and libcurl own these, a client may not set them. */
static const char *const forbidden_headers[] = {
    "Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection",
    "TE", "Trailer", "Upgrade", "Expect", "HTTP2-Settings",
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static int valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n;
        if (*p < 0x80)
            n = 0;
        else if ((*p & 0xe0) == 0xc0 && *p >= 0xc2)
            n = 1;
        else if ((*p & 0xf0) == 0xe0)
            n = 2;
        else if ((*p & 0xf8) == 0xf0 && *p <= 0xf4)
            n = 3;
        else
            return 0;
        p++;
        for (int i = 0; i < n; i++, p++)
            if ((*p & 0xc0) != 0x80)
                return 0;
    }
    return 1;
}

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static int visible_ascii(const char *s, int allow_space)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c > 0x7e || c < 0x20 || (c == ' ' && !allow_space))
            return 0;
    }
    return 1;
}

static int is_tchar(int c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void check_text_field(rpcstatus *st, const char *field, const char *v, size_t max)
{
    if (strlen(v) > max)
        rpcstatus_field_violation(st, field, "longer than %zu bytes", max);
    else if (!valid_utf8(v))
        rpcstatus_field_violation(st, field, "not valid UTF-8");
    else if (has_control(v))
        rpcstatus_field_violation(st, field, "must not contain control characters");
}

/* Returns a description of what is wrong with path, or NULL. */
static const char *path_problem(const char *path)
{
    if (path[0] == '\0')
        return "required";
    if (path[0] != '/')
        return "must start with \"/\" (a path on the target, not a URL)";
    if (path[1] == '/')
        return "must not start with \"//\" (a scheme-relative URL names a host)";
    if (strlen(path) > VALIDATE_MAX_PATH)
        return "longer than 8192 bytes";
    for (const char *p = path; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f)
            return "must not contain spaces, control or non-ASCII characters (percent-encode them)";
        if (c == '\\')
            return "must not contain backslashes";
        if (c == '#')
            return "must not contain a fragment (\"#\")";
    }
    /* Dot segments would let a path climb out of the target's base path. */
    size_t end = strcspn(path, "?");
    for (size_t i = 0; i < end; i++) {
        if (path[i] != '/')
            continue;
        size_t j = i + 1;
        size_t dots = 0;
        while (j < end && path[j] == '.')
            dots++, j++;
        if ((dots == 1 || dots == 2) && (j == end || path[j] == '/'))
            return "must not contain \".\" or \"..\" segments";
    }
    return NULL;
}

static int forbidden_header(const char *name)
{
    for (size_t i = 0; i < N(forbidden_headers); i++)
        if (strcasecmp(name, forbidden_headers[i]) == 0)
            return 1;
    return 0;
}

static void check_duration(rpcstatus *st, const char *field, const Google__Protobuf__Duration *d,
                           int64_t max_ns, int refuse_over_max)
{
    int64_t ns;
    if (pbtime_duration_ns(d, &ns) < 0)
        rpcstatus_field_violation(st, field, "not a valid duration");
    else if (ns < 0)
        rpcstatus_field_violation(st, field, "must not be negative");
    else if (refuse_over_max && ns > max_ns)
        rpcstatus_field_violation(st, field, "longer than the server's limit of %lld ms",
                                  (long long)(max_ns / PBTIME_NS_PER_MS));
}

static void check_headers(rpcstatus *st, const char *f, const Batch__V1__Operation *op)
{
    char field[VALIDATE_MAX_HEADER_NAME + 160];
    if (op->n_headers > VALIDATE_MAX_HEADERS)
        rpcstatus_field_violation(st, f, "more than %d headers", VALIDATE_MAX_HEADERS);
    for (size_t h = 0; h < op->n_headers && h < VALIDATE_MAX_HEADERS; h++) {
        const char *name = op->headers[h]->key, *value = op->headers[h]->value;
        int name_ok = name[0] != '\0' && strlen(name) <= VALIDATE_MAX_HEADER_NAME;
        for (const char *p = name; name_ok && *p; p++)
            name_ok = is_tchar((unsigned char)*p);
        snprintf(field, sizeof field, "%s[\"%.*s\"]", f, name_ok ? VALIDATE_MAX_HEADER_NAME : 0,
                 name_ok ? name : "");
        if (!name_ok) {
            rpcstatus_field_violation(st, field, "header name #%zu is not a valid HTTP token "
                                      "(1-256 letters, digits or !#$%%&'*+-.^_`|~)", h + 1);
            continue;
        }
        if (forbidden_header(name))
            rpcstatus_field_violation(st, field, "%s is a hop-by-hop or framing header that batchd sets", name);
        if (strlen(value) > VALIDATE_MAX_HEADER_VALUE)
            rpcstatus_field_violation(st, field, "value longer than %d bytes", VALIDATE_MAX_HEADER_VALUE);
        else if (strpbrk(value, "\r\n"))
            rpcstatus_field_violation(st, field, "value must not contain CR or LF");
        else {
            for (const char *p = value; *p; p++) {
                unsigned char c = (unsigned char)*p;
                if ((c < 0x20 && c != '\t') || c == 0x7f) {
                    rpcstatus_field_violation(st, field, "value must not contain control characters");
                    break;
                }
            }
        }
        if (strcasecmp(name, "Idempotency-Key") == 0 && op->idempotency_key[0] &&
            strcmp(value, op->idempotency_key) != 0)
            rpcstatus_field_violation(st, field, "differs from idempotency_key");
    }
}

static void check_body(const config *cfg, rpcstatus *st, const char *f, const Batch__V1__Operation *op,
                       int is_head)
{
    char field[64];
    size_t len = 0;
    switch (op->body_case) {
    case BATCH__V1__OPERATION__BODY_JSON: {
        snprintf(field, sizeof field, "%s.json", f);
        const char *why = "missing";
        json_t *j = op->json ? pbvalue_to_json(op->json, &why) : NULL;
        if (j == NULL) {
            rpcstatus_field_violation(st, field, "not valid JSON: %s", why);
            return;
        }
        len = json_dumpb(j, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(j);
        break;
    }
    case BATCH__V1__OPERATION__BODY_RAW:
        snprintf(field, sizeof field, "%s.raw", f);
        len = op->raw.len;
        break;
    case BATCH__V1__OPERATION__BODY_TEXT:
        snprintf(field, sizeof field, "%s.text", f);
        len = strlen(op->text);
        break;
    default:
        return;
    }
    if (is_head)
        rpcstatus_field_violation(st, field, "a HEAD request has no body");
    if (len > cfg->max_body_bytes)
        rpcstatus_field_violation(st, field, "body of %zu bytes is larger than the limit of %zu",
                                  len, cfg->max_body_bytes);
}

/* Open-addressing set of item ids, for duplicate detection in O(n). */
typedef struct idset {
    const char **slots;
    size_t mask;
} idset;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

/* Returns 1 if id was already present. */
static int idset_add(idset *set, const char *id)
{
    for (size_t k = hash_str(id) & set->mask;; k = (k + 1) & set->mask) {
        if (set->slots[k] == NULL) {
            set->slots[k] = id;
            return 0;
        }
        if (strcmp(set->slots[k], id) == 0)
            return 1;
    }
}

static void check_operation(const config *cfg, rpcstatus *st, const Batch__V1__Operation *op,
                            size_t i, uint8_t *target_of)
{
    char f[48], field[96];
    snprintf(f, sizeof f, "operations[%zu]", i);

    snprintf(field, sizeof field, "%s.id", f);
    check_text_field(st, field, op->id, VALIDATE_MAX_ID);

    snprintf(field, sizeof field, "%s.target", f);
    target_of[i] = 0;
    if (op->target[0]) {
        size_t t = 0;
        while (t < cfg->n_targets && strcmp(cfg->targets[t].name, op->target) != 0)
            t++;
        if (t == cfg->n_targets) {
            char known[256] = "";
            for (size_t k = 0; k < cfg->n_targets; k++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", k ? ", " : "",
                         cfg->targets[k].name);
            rpcstatus_field_violation(st, field, "unknown target \"%.64s\" (configured: %s)",
                                      valid_utf8(op->target) ? op->target : "?", known);
        } else {
            target_of[i] = (uint8_t)t;
        }
    }

    snprintf(field, sizeof field, "%s.method", f);
    int is_head = 0;
    if (op->method[0] == '\0') {
        rpcstatus_field_violation(st, field, "required (GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS)");
    } else {
        size_t m = 0;
        while (m < N(methods) && strcasecmp(op->method, methods[m]) != 0)
            m++;
        if (m == N(methods))
            rpcstatus_field_violation(st, field, "unsupported method \"%.16s\" (expected GET, HEAD, POST, "
                                      "PUT, PATCH, DELETE or OPTIONS)",
                                      visible_ascii(op->method, 0) ? op->method : "?");
        is_head = m == 1;
    }

    snprintf(field, sizeof field, "%s.path", f);
    const char *why = path_problem(op->path);
    if (why)
        rpcstatus_field_violation(st, field, "%s", why);

    snprintf(field, sizeof field, "%s.headers", f);
    check_headers(st, field, op);
    check_body(cfg, st, f, op, is_head);

    snprintf(field, sizeof field, "%s.idempotency_key", f);
    if (strlen(op->idempotency_key) > VALIDATE_MAX_IDEMPOTENCY_KEY)
        rpcstatus_field_violation(st, field, "longer than %d bytes", VALIDATE_MAX_IDEMPOTENCY_KEY);
    else if (!visible_ascii(op->idempotency_key, 1))
        rpcstatus_field_violation(st, field, "must be printable ASCII (it is sent as a header)");

    if (op->timeout) {
        snprintf(field, sizeof field, "%s.timeout", f);
        check_duration(st, field, op->timeout, cfg->max_item_timeout_ns, 1);
    }
}

static void check_options(const config *cfg, rpcstatus *st, const Batch__V1__BatchOptions *o)
{
    if (o == NULL)
        return;
    if (o->mode != BATCH__V1__MODE__MODE_UNSPECIFIED && o->mode != BATCH__V1__MODE__MODE_SYNC &&
        o->mode != BATCH__V1__MODE__MODE_ASYNC)
        rpcstatus_field_violation(st, "options.mode", "unknown mode %d", o->mode);
    if (o->item_timeout)
        check_duration(st, "options.item_timeout", o->item_timeout, cfg->max_item_timeout_ns, 0);
    if (!isfinite(o->max_rate) || o->max_rate < 0)
        rpcstatus_field_violation(st, "options.max_rate", "must be a finite number >= 0 (0: unlimited)");
    if (o->n_labels > VALIDATE_MAX_LABELS)
        rpcstatus_field_violation(st, "options.labels", "more than %d labels", VALIDATE_MAX_LABELS);
    for (size_t i = 0; i < o->n_labels && i < VALIDATE_MAX_LABELS; i++) {
        const char *k = o->labels[i]->key;
        char field[VALIDATE_MAX_LABEL_KEY + 32];
        int key_ok = k[0] && strlen(k) <= VALIDATE_MAX_LABEL_KEY;
        for (const char *p = k; key_ok && *p; p++)
            key_ok = isalnum((unsigned char)*p) || strchr("-_./", *p);
        snprintf(field, sizeof field, "options.labels[\"%s\"]", key_ok ? k : "");
        if (!key_ok)
            rpcstatus_field_violation(st, field, "label key #%zu must be 1-%d letters, digits or -_./",
                                      i + 1, VALIDATE_MAX_LABEL_KEY);
        check_text_field(st, field, o->labels[i]->value, VALIDATE_MAX_LABEL_VALUE);
    }
}

size_t validate_request(const config *cfg, const Batch__V1__SubmitBatchRequest *req, rpcstatus *st,
                        uint8_t *target_of)
{
    size_t before = rpcstatus_violation_count(st);
    if (req->n_operations == 0)
        rpcstatus_field_violation(st, "operations", "at least one operation is required");
    if (strlen(req->request_id) > VALIDATE_MAX_REQUEST_ID || !visible_ascii(req->request_id, 0))
        rpcstatus_field_violation(st, "request_id", "must be 1-%d printable ASCII characters without spaces",
                                  VALIDATE_MAX_REQUEST_ID);
    check_options(cfg, st, req->options);

    size_t cap = 16;
    while (cap < req->n_operations * 2)
        cap *= 2;
    idset ids = {calloc(cap, sizeof(char *)), cap - 1};
    /* Two items with one key would each be "the" request the upstream deduplicates. */
    idset keys = {calloc(cap, sizeof(char *)), cap - 1};
    char *index_ids = malloc(req->n_operations * 21 + 1); /* decimal indexes of id-less items */
    for (size_t i = 0; i < req->n_operations; i++) {
        const Batch__V1__Operation *op = req->operations[i];
        check_operation(cfg, st, op, i, target_of);
        if (keys.slots && op->idempotency_key[0] && idset_add(&keys, op->idempotency_key)) {
            char field[64];
            snprintf(field, sizeof field, "operations[%zu].idempotency_key", i);
            rpcstatus_field_violation(st, field, "the same key as another operation of this batch");
        }
        if (ids.slots == NULL || index_ids == NULL)
            continue; /* no memory for the duplicate check; everything else still runs */
        const char *id = op->id;
        if (id[0] == '\0') {
            id = index_ids + i * 21;
            snprintf(index_ids + i * 21, 21, "%zu", i);
        }
        if (idset_add(&ids, id)) {
            char field[48];
            snprintf(field, sizeof field, "operations[%zu].id", i);
            rpcstatus_field_violation(st, field, "duplicate id \"%.128s\"", valid_utf8(id) ? id : "?");
        }
    }
    free(ids.slots);
    free(keys.slots);
    free(index_ids);
    return rpcstatus_violation_count(st) - before;
}

Batch__V1__BatchOptions *validate_effective_options(const config *cfg, const Batch__V1__BatchOptions *in)
{
    Batch__V1__BatchOptions o = BATCH__V1__BATCH_OPTIONS__INIT;
    Google__Protobuf__Duration timeout;
    if (in)
        o = *in; /* shallow: labels are borrowed until the copy below */
    if (o.max_concurrency == 0)
        o.max_concurrency = cfg->default_concurrency;
    if (o.max_concurrency > cfg->max_batch_concurrency)
        o.max_concurrency = cfg->max_batch_concurrency;
    if (o.max_attempts == 0)
        o.max_attempts = 1;
    if (o.max_attempts > cfg->max_attempts)
        o.max_attempts = cfg->max_attempts;
    int64_t ns = 0;
    if (o.item_timeout == NULL || pbtime_duration_ns(o.item_timeout, &ns) < 0 || ns <= 0)
        ns = cfg->default_item_timeout_ns;
    if (ns > cfg->max_item_timeout_ns)
        ns = cfg->max_item_timeout_ns;
    pbtime_duration_set(&timeout, ns);
    o.item_timeout = &timeout;
    if (cfg->max_rate > 0 && (o.max_rate == 0 || o.max_rate > cfg->max_rate))
        o.max_rate = cfg->max_rate;
    /* A deep copy that free_unpacked can release: pack and unpack. */
    size_t len = 0;
    uint8_t *buf = pbgrpc_pack_bytes(&o.base, &len);
    if (buf == NULL)
        return NULL;
    Batch__V1__BatchOptions *copy = batch__v1__batch_options__unpack(NULL, len, buf);
    free(buf);
    return copy;
}
