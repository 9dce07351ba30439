/* google.rpc.Status construction. Details are kept as plain C lists and turned into
 * protobuf-c messages only when packed, so building an error never half-fails. */
#include "rpcstatus.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/rpc/error_details.pb-c.h"
#include "pbtime.h"

#define TYPE_URL_PREFIX "type.googleapis.com/"

typedef struct pair {
    char *a, *b;
} pair;

typedef struct pairs {
    pair *v;
    size_t n, cap;
} pairs;

struct rpcstatus {
    grpc_status_code code;
    char *message;
    pairs field_violations;   /* field, description */
    pairs quota_violations;   /* subject, description */
    pairs error_metadata;     /* key, value */
    char *reason;             /* ErrorInfo.reason, NULL if none */
    int64_t retry_delay_ns;   /* RetryInfo, -1 if none */
};

static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        return NULL;
    return s;
}

static void pairs_add(pairs *p, char *a, char *b)
{
    if (a == NULL || b == NULL)
        goto fail;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        pair *v = realloc(p->v, cap * sizeof *v);
        if (v == NULL)
            goto fail;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (pair){a, b};
    return;
fail: /* out of memory: the detail is dropped, the status itself still goes out */
    free(a);
    free(b);
}

static void pairs_free(pairs *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].a);
        free(p->v[i].b);
    }
    free(p->v);
}

rpcstatus *rpcstatus_new(grpc_status_code code, const char *fmt, ...)
{
    rpcstatus *st = calloc(1, sizeof *st);
    if (st == NULL)
        return NULL;
    st->code = code;
    st->retry_delay_ns = -1;
    va_list ap;
    va_start(ap, fmt);
    st->message = vformat(fmt, ap);
    va_end(ap);
    return st;
}

void rpcstatus_free(rpcstatus *st)
{
    if (st == NULL)
        return;
    free(st->message);
    free(st->reason);
    pairs_free(&st->field_violations);
    pairs_free(&st->quota_violations);
    pairs_free(&st->error_metadata);
    free(st);
}

grpc_status_code rpcstatus_code(const rpcstatus *st) { return st->code; }
const char *rpcstatus_message(const rpcstatus *st) { return st->message ? st->message : ""; }
const char *rpcstatus_reason(const rpcstatus *st) { return st->reason; }
size_t rpcstatus_violation_count(const rpcstatus *st) { return st->field_violations.n; }

void rpcstatus_set_message(rpcstatus *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = vformat(fmt, ap);
    va_end(ap);
    if (m) {
        free(st->message);
        st->message = m;
    }
}

void rpcstatus_field_violation(rpcstatus *st, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *d = vformat(fmt, ap);
    va_end(ap);
    pairs_add(&st->field_violations, strdup(field), d);
}

void rpcstatus_quota_violation(rpcstatus *st, const char *subject, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *d = vformat(fmt, ap);
    va_end(ap);
    pairs_add(&st->quota_violations, strdup(subject), d);
}

void rpcstatus_retry_after(rpcstatus *st, int64_t delay_ns)
{
    st->retry_delay_ns = delay_ns < 0 ? 0 : delay_ns;
}

void rpcstatus_error_info(rpcstatus *st, const char *reason)
{
    char *r = strdup(reason);
    if (r) {
        free(st->reason);
        st->reason = r;
    }
}

void rpcstatus_error_metadata(rpcstatus *st, const char *key, const char *value)
{
    pairs_add(&st->error_metadata, strdup(key), strdup(value));
}

/* One packed detail: an Any with its type URL. */
typedef struct any_buf {
    Google__Protobuf__Any any;
    char *url;
    uint8_t *data;
} any_buf;

static int any_pack(any_buf *out, const ProtobufCMessage *msg)
{
    google__protobuf__any__init(&out->any);
    size_t len = protobuf_c_message_get_packed_size(msg);
    out->data = malloc(len ? len : 1);
    if (asprintf(&out->url, TYPE_URL_PREFIX "%s", msg->descriptor->name) < 0)
        out->url = NULL;
    if (out->data == NULL || out->url == NULL)
        return -1;
    protobuf_c_message_pack(msg, out->data);
    out->any.type_url = out->url;
    out->any.value.data = out->data;
    out->any.value.len = len;
    return 0;
}

/* Packs the BadRequest, keeping as many violations as fit in the details budget and
 * summarising the rest in one last entry, so that the trailer is never refused. */
static int pack_bad_request(const rpcstatus *st, any_buf *out)
{
    size_t n = st->field_violations.n;
    Google__Rpc__BadRequest br = GOOGLE__RPC__BAD_REQUEST__INIT;
    Google__Rpc__BadRequest__FieldViolation *fv = calloc(n + 1, sizeof *fv);
    Google__Rpc__BadRequest__FieldViolation **fvp = calloc(n + 1, sizeof *fvp);
    char more[128];
    int rc = -1;
    if (fv == NULL || fvp == NULL)
        goto done;
    size_t used = 0, kept = 0;
    for (; kept < n; kept++) {
        const pair *p = &st->field_violations.v[kept];
        size_t cost = strlen(p->a) + strlen(p->b) + 8;
        if (used + cost > RPCSTATUS_DETAILS_BUDGET - sizeof more)
            break;
        used += cost;
        google__rpc__bad_request__field_violation__init(&fv[kept]);
        fv[kept].field = p->a;
        fv[kept].description = p->b;
        fvp[kept] = &fv[kept];
    }
    br.n_field_violations = kept;
    if (kept < n) {
        snprintf(more, sizeof more, "%zu more violations not listed (error details are limited to %d bytes)",
                 n - kept, RPCSTATUS_DETAILS_BUDGET);
        google__rpc__bad_request__field_violation__init(&fv[kept]);
        fv[kept].field = "";
        fv[kept].description = more;
        fvp[kept] = &fv[kept];
        br.n_field_violations++;
    }
    br.field_violations = fvp;
    rc = any_pack(out, &br.base);
done:
    free(fv);
    free(fvp);
    return rc;
}

static int pack_quota(const rpcstatus *st, any_buf *out)
{
    size_t n = st->quota_violations.n;
    Google__Rpc__QuotaFailure qf = GOOGLE__RPC__QUOTA_FAILURE__INIT;
    Google__Rpc__QuotaFailure__Violation *v = calloc(n, sizeof *v);
    Google__Rpc__QuotaFailure__Violation **vp = calloc(n, sizeof *vp);
    int rc = -1;
    if (v && vp) {
        for (size_t i = 0; i < n; i++) {
            google__rpc__quota_failure__violation__init(&v[i]);
            v[i].subject = st->quota_violations.v[i].a;
            v[i].description = st->quota_violations.v[i].b;
            vp[i] = &v[i];
        }
        qf.n_violations = n;
        qf.violations = vp;
        rc = any_pack(out, &qf.base);
    }
    free(v);
    free(vp);
    return rc;
}

static int pack_error_info(const rpcstatus *st, any_buf *out)
{
    size_t n = st->error_metadata.n;
    Google__Rpc__ErrorInfo ei = GOOGLE__RPC__ERROR_INFO__INIT;
    Google__Rpc__ErrorInfo__MetadataEntry *e = calloc(n ? n : 1, sizeof *e);
    Google__Rpc__ErrorInfo__MetadataEntry **ep = calloc(n ? n : 1, sizeof *ep);
    int rc = -1;
    if (e && ep) {
        for (size_t i = 0; i < n; i++) {
            google__rpc__error_info__metadata_entry__init(&e[i]);
            e[i].key = st->error_metadata.v[i].a;
            e[i].value = st->error_metadata.v[i].b;
            ep[i] = &e[i];
        }
        ei.reason = st->reason;
        ei.domain = RPCSTATUS_DOMAIN;
        ei.n_metadata = n;
        ei.metadata = ep;
        rc = any_pack(out, &ei.base);
    }
    free(e);
    free(ep);
    return rc;
}

static int pack_retry(const rpcstatus *st, any_buf *out)
{
    Google__Rpc__RetryInfo ri = GOOGLE__RPC__RETRY_INFO__INIT;
    Google__Protobuf__Duration d;
    pbtime_duration_set(&d, st->retry_delay_ns);
    ri.retry_delay = &d;
    return any_pack(out, &ri.base);
}

uint8_t *rpcstatus_pack(const rpcstatus *st, size_t *len)
{
    any_buf bufs[4];
    Google__Protobuf__Any *anys[4];
    size_t n = 0;
    int failed = 0;
    memset(bufs, 0, sizeof bufs);
    if (st->field_violations.n)
        failed |= pack_bad_request(st, &bufs[n++]);
    if (st->quota_violations.n)
        failed |= pack_quota(st, &bufs[n++]);
    if (st->retry_delay_ns >= 0)
        failed |= pack_retry(st, &bufs[n++]);
    if (st->reason)
        failed |= pack_error_info(st, &bufs[n++]);

    uint8_t *out = NULL;
    if (!failed) {
        Google__Rpc__Status s = GOOGLE__RPC__STATUS__INIT;
        s.code = st->code;
        s.message = (char *)rpcstatus_message(st);
        for (size_t i = 0; i < n; i++)
            anys[i] = &bufs[i].any;
        s.n_details = n;
        s.details = anys;
        *len = protobuf_c_message_get_packed_size(&s.base);
        out = malloc(*len ? *len : 1);
        if (out)
            protobuf_c_message_pack(&s.base, out);
    }
    for (size_t i = 0; i < n; i++) {
        free(bufs[i].url);
        free(bufs[i].data);
    }
    return out;
}

Google__Rpc__Status *rpcstatus_unpack(const uint8_t *data, size_t len)
{
    return google__rpc__status__unpack(NULL, len, data);
}

ProtobufCMessage *rpcstatus_unpack_detail(const Google__Protobuf__Any *any,
                                          const ProtobufCMessageDescriptor *desc)
{
    const char *url = any->type_url;
    const char *slash = url ? strrchr(url, '/') : NULL;
    if (slash == NULL || strcmp(slash + 1, desc->name) != 0)
        return NULL;
    return protobuf_c_message_unpack(desc, NULL, any->value.len, any->value.data);
}
