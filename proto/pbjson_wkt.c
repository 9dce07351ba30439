/* The well-known types in their special JSON forms, both directions: Duration "1.5s",
 * Timestamp RFC 3339, Value/Struct/ListValue as plain JSON (through pbvalue), Any as
 * {"@type": url, ...}, FieldMask "a,b.c", the wrappers as their bare value. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "pbjson_int.h"
#include "pbvalue.h"

/* Ranges of the mapping: Duration is about +-10000 years, Timestamp years 0001 to 9999. */
#define DURATION_MAX_SECONDS 315576000000LL
#define TIMESTAMP_MIN_SECONDS (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define TIMESTAMP_MAX_SECONDS 253402300799LL   /* 9999-12-31T23:59:59Z */
#define NANOS_PER_SECOND 1000000000

/* ---- the types an Any may hold ------------------------------------------------------ */

/* What an Any may hold without the caller naming it: the types of this library that
 * travel in google.rpc.Status details, and the well-known types. */
static const ProtobufCMessageDescriptor *const builtin_any_types[] = {
    &google__protobuf__any__descriptor,
    &google__protobuf__duration__descriptor,
    &google__protobuf__timestamp__descriptor,
    &google__protobuf__struct__descriptor,
    &google__protobuf__value__descriptor,
    &google__protobuf__list_value__descriptor,
    &google__protobuf__empty__descriptor,
    &google__rpc__status__descriptor,
    &google__rpc__error_info__descriptor,
    &google__rpc__retry_info__descriptor,
    &google__rpc__debug_info__descriptor,
    &google__rpc__quota_failure__descriptor,
    &google__rpc__precondition_failure__descriptor,
    &google__rpc__bad_request__descriptor,
    &google__rpc__request_info__descriptor,
    &google__rpc__resource_info__descriptor,
    &google__rpc__help__descriptor,
    &google__rpc__localized_message__descriptor,
};

/* The message type named by the last segment of a type URL
 * ("type.googleapis.com/google.rpc.BadRequest"), or NULL. */
static const ProtobufCMessageDescriptor *any_type(const pbjson_options *opt, const char *url)
{
    const char *slash = strrchr(url, '/');
    const char *name = slash ? slash + 1 : url;
    for (size_t i = 0; i < opt->n_any_types; i++)
        if (strcmp(opt->any_types[i]->name, name) == 0)
            return opt->any_types[i];
    for (size_t i = 0; i < sizeof builtin_any_types / sizeof *builtin_any_types; i++)
        if (strcmp(builtin_any_types[i]->name, name) == 0)
            return builtin_any_types[i];
    return NULL;
}

/* ---- Duration and Timestamp text ---------------------------------------------------- */

/* Protobuf prints fractions of a second with 0, 3, 6 or 9 digits. nanos in [0, 1e9). */
static void fraction_text(int32_t nanos, char *buf, size_t size)
{
    if (nanos == 0)
        buf[0] = '\0';
    else if (nanos % 1000000 == 0)
        snprintf(buf, size, ".%03" PRId32, nanos / 1000000);
    else if (nanos % 1000 == 0)
        snprintf(buf, size, ".%06" PRId32, nanos / 1000);
    else
        snprintf(buf, size, ".%09" PRId32, nanos);
}

/* Reads "." and 1 to 9 digits at s[*i] if present, as nanoseconds. -1 on a bad fraction. */
static int fraction_from_text(const char *s, size_t len, size_t *i, int32_t *nanos)
{
    *nanos = 0;
    if (*i >= len || s[*i] != '.')
        return 0;
    unsigned digits = 0;
    for ((*i)++; *i < len && pbjson__is_digit(s[*i]); (*i)++) {
        if (++digits > 9)
            return -1;
        *nanos = *nanos * 10 + (s[*i] - '0');
    }
    if (digits == 0)
        return -1;
    for (; digits < 9; digits++)
        *nanos *= 10;
    return 0;
}

/* "-?[0-9]+(.[0-9]{1,9})?s". Returns 0, -1 for bad syntax, -2 for out of range. */
static int duration_from_text(const char *s, size_t len, int64_t *seconds, int32_t *nanos)
{
    size_t i = 0;
    bool neg = i < len && s[i] == '-';
    if (neg)
        i++;
    size_t start = i;
    int64_t secs = 0;
    for (; i < len && pbjson__is_digit(s[i]); i++)
        if (secs <= DURATION_MAX_SECONDS) /* past it the value only has to stay too big */
            secs = secs * 10 + (s[i] - '0');
    if (i == start || fraction_from_text(s, len, &i, nanos) < 0 || i + 1 != len || s[i] != 's')
        return -1;
    if (secs > DURATION_MAX_SECONDS)
        return -2;
    *seconds = neg ? -secs : secs;
    if (neg)
        *nanos = -*nanos;
    return 0;
}

/* Returns -1 when (seconds, nanos) is not a valid Duration. */
int pbjson__duration_to_text(int64_t seconds, int32_t nanos, char *buf, size_t size)
{
    if (seconds < -DURATION_MAX_SECONDS || seconds > DURATION_MAX_SECONDS ||
        nanos <= -NANOS_PER_SECOND || nanos >= NANOS_PER_SECOND || (seconds > 0 && nanos < 0) ||
        (seconds < 0 && nanos > 0))
        return -1;
    bool neg = seconds < 0 || nanos < 0;
    char frac[16];
    fraction_text(neg ? -nanos : nanos, frac, sizeof frac);
    snprintf(buf, size, "%s%" PRId64 "%ss", neg ? "-" : "", neg ? -seconds : seconds, frac);
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool digits_at(const char *s, size_t n, int *out)
{
    *out = 0;
    for (size_t i = 0; i < n; i++) {
        if (!pbjson__is_digit(s[i]))
            return false;
        *out = *out * 10 + (s[i] - '0');
    }
    return true;
}

/* RFC 3339 as the mapping uses it: "YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM)" (T and Z
 * in either case, as RFC 3339 allows). Returns 0, -1 for bad syntax, -2 for out of range. */
static int timestamp_from_text(const char *s, size_t len, int64_t *seconds, int32_t *nanos)
{
    int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    if (len < 20 || !digits_at(s, 4, &y) || s[4] != '-' || !digits_at(s + 5, 2, &mo) ||
        s[7] != '-' || !digits_at(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
        !digits_at(s + 11, 2, &h) || s[13] != ':' || !digits_at(s + 14, 2, &mi) ||
        s[16] != ':' || !digits_at(s + 17, 2, &sec))
        return -1;
    size_t i = 19;
    if (fraction_from_text(s, len, &i, nanos) < 0 || i >= len)
        return -1;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        sign = s[i] == '+' ? 1 : -1;
        if (len - i < 6 || !digits_at(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            !digits_at(s + i + 4, 2, &om))
            return -1;
        i += 6;
    } else {
        return -1;
    }
    static const int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (i != len || mo < 1 || mo > 12 || d < 1 || d > month_days[mo - 1] ||
        (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || sec > 59 || oh > 23 || om > 59)
        return -1;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
                sign * (oh * 3600 + om * 60);
    if (t < TIMESTAMP_MIN_SECONDS || t > TIMESTAMP_MAX_SECONDS)
        return -2;
    *seconds = t;
    return 0;
}

/* Always UTC ("Z"). Returns -1 when (seconds, nanos) is not a valid Timestamp. */
int pbjson__timestamp_to_text(int64_t seconds, int32_t nanos, char *buf, size_t size)
{
    if (seconds < TIMESTAMP_MIN_SECONDS || seconds > TIMESTAMP_MAX_SECONDS || nanos < 0 ||
        nanos >= NANOS_PER_SECOND)
        return -1;
    int64_t days = seconds / 86400, rem = seconds % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    char frac[16];
    fraction_text(nanos, frac, sizeof frac);
    snprintf(buf, size, "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d%sZ", y, m, d, (int)(rem / 3600),
             (int)(rem / 60 % 60), (int)(rem % 60), frac);
    return 0;
}

/* ---- parsing ------------------------------------------------------------------------ */

ProtobufCMessage *pbjson__parse_duration(conv *c, const json_t *j, const struct path *p)
{
    if (!json_is_string(j)) {
        pbjson__fail_type(c, p, "a duration string such as \"1.5s\"", j);
        return NULL;
    }
    int64_t seconds;
    int32_t nanos;
    int r = duration_from_text(json_string_value(j), json_string_length(j), &seconds, &nanos);
    if (r < 0) {
        char *q = pbjson__quote(json_string_value(j), json_string_length(j));
        if (r == -1)
            pbjson__fail(c, p, false, "invalid duration %s (expected e.g. \"1.5s\")", q ? q : "");
        else
            pbjson__fail(c, p, false, "duration %s is out of range (at most %llds either way)",
                         q ? q : "", DURATION_MAX_SECONDS);
        free(q);
        return NULL;
    }
    Google__Protobuf__Duration *du = malloc(sizeof *du);
    if (du == NULL) {
        pbjson__fail_oom(c, p);
        return NULL;
    }
    google__protobuf__duration__init(du);
    du->seconds = seconds;
    du->nanos = nanos;
    return &du->base;
}

ProtobufCMessage *pbjson__parse_timestamp(conv *c, const json_t *j, const struct path *p)
{
    if (!json_is_string(j)) {
        pbjson__fail_type(c, p, "an RFC 3339 timestamp string", j);
        return NULL;
    }
    int64_t seconds;
    int32_t nanos;
    int r = timestamp_from_text(json_string_value(j), json_string_length(j), &seconds, &nanos);
    if (r < 0) {
        char *q = pbjson__quote(json_string_value(j), json_string_length(j));
        if (r == -1)
            pbjson__fail(c, p, false,
                         "invalid timestamp %s (expected RFC 3339, e.g. \"2026-11-22T10:00:00Z\")",
                         q ? q : "");
        else
            pbjson__fail(c, p, false, "timestamp %s is out of range (years 0001 to 9999)",
                         q ? q : "");
        free(q);
        return NULL;
    }
    Google__Protobuf__Timestamp *ts = malloc(sizeof *ts);
    if (ts == NULL) {
        pbjson__fail_oom(c, p);
        return NULL;
    }
    google__protobuf__timestamp__init(ts);
    ts->seconds = seconds;
    ts->nanos = nanos;
    return &ts->base;
}

/* Levels of arrays and objects in j, counted only until they pass cap: the count stops
 * descending there, so hostile nesting costs no deeper recursion than the limit. */
static unsigned json_nesting(const json_t *j, unsigned cap)
{
    if (!json_is_object(j) && !json_is_array(j))
        return 0;
    if (cap == 0)
        return 1;
    unsigned deepest = 0;
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j) && deepest < cap; i++) {
            unsigned n = json_nesting(json_array_get(j, i), cap - 1);
            deepest = n > deepest ? n : deepest;
        }
    } else {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)j, key, v) {
            unsigned n = json_nesting(v, cap - 1);
            deepest = n > deepest ? n : deepest;
            if (deepest >= cap)
                break;
        }
    }
    return 1 + deepest;
}

/* Value, Struct and ListValue, through pbvalue. A Struct or ListValue is itself the
 * outermost object or array, so its nesting starts one level lower than a Value's. */
ProtobufCMessage *pbjson__parse_struct_kind(conv *c, enum wkt kind, const json_t *j,
                                            const struct path *p, unsigned depth)
{
    if (kind == WKT_STRUCT && !json_is_object(j)) {
        pbjson__fail_type(c, p, "an object", j);
        return NULL;
    }
    if (kind == WKT_LIST_VALUE && !json_is_array(j)) {
        pbjson__fail_type(c, p, "an array", j);
        return NULL;
    }
    /* Levels left under max_depth (depth <= max_depth here), and pbvalue's own bound. */
    unsigned room = c->max_depth - depth + (kind == WKT_VALUE ? 0 : 1);
    unsigned limit = c->max_depth;
    if (room > PBVALUE_MAX_DEPTH) {
        room = PBVALUE_MAX_DEPTH;
        limit = PBVALUE_MAX_DEPTH;
    }
    if (json_nesting(j, room) > room) {
        pbjson__fail(c, p, false, "nesting deeper than %u levels", limit);
        return NULL;
    }
    Google__Protobuf__Value *v = pbvalue_from_json(j);
    if (v == NULL) {
        pbjson__fail_oom(c, p);
        return NULL;
    }
    if (kind == WKT_VALUE)
        return &v->base;
    /* Take the container out of the Value pbvalue built around it. */
    ProtobufCMessage *inner;
    if (kind == WKT_STRUCT) {
        inner = &v->struct_value->base;
        v->struct_value = NULL;
    } else {
        inner = &v->list_value->base;
        v->list_value = NULL;
    }
    v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET;
    protobuf_c_message_free_unpacked(&v->base, NULL);
    return inner;
}

/* {"@type": url, fields...}, or {"@type": url, "value": special form} for the well-known
 * types that have one; {} is the empty Any. The message found is packed into value. */
ProtobufCMessage *pbjson__parse_any(conv *c, const json_t *j, const struct path *p,
                                    unsigned depth)
{
    if (!json_is_object(j)) {
        pbjson__fail_type(c, p, "an object", j);
        return NULL;
    }
    Google__Protobuf__Any *any = malloc(sizeof *any);
    ProtobufCMessage *inner = NULL;
    uint8_t *packed = NULL;
    if (any == NULL) {
        pbjson__fail_oom(c, p);
        return NULL;
    }
    google__protobuf__any__init(any);
    if (json_object_size(j) == 0)
        return &any->base;

    const json_t *t = json_object_get(j, "@type");
    struct path tp = {p, PATH_FIELD, "@type", 0};
    if (t == NULL) {
        pbjson__fail(c, p, false, "an Any needs \"@type\"");
        goto fail;
    }
    if (!json_is_string(t)) {
        pbjson__fail_type(c, &tp, "a type URL string", t);
        goto fail;
    }
    const char *url = json_string_value(t);
    const ProtobufCMessageDescriptor *d = any_type(c->opt, url);
    if (d == NULL) {
        char *q = pbjson__quote(url, json_string_length(t));
        pbjson__fail(c, &tp, false, "cannot resolve Any type %s (not a type this program knows)",
                     q ? q : "");
        free(q);
        goto fail;
    }
    if (depth + 1 > c->max_depth) {
        pbjson__fail(c, p, false, "nesting deeper than %u levels", c->max_depth);
        goto fail;
    }
    if (pbjson__wkt_of(d) != WKT_NONE) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)j, key, v) {
            struct path fp = {p, PATH_FIELD, key, 0};
            if (strcmp(key, "@type") != 0 && strcmp(key, "value") != 0 &&
                !c->opt->ignore_unknown_fields) {
                pbjson__fail(c, &fp, true, "unknown field in an Any holding %s", d->name);
                goto fail;
            }
        }
        struct path vp = {p, PATH_FIELD, "value", 0};
        const json_t *value = json_object_get(j, "value");
        if (value == NULL) {
            pbjson__fail(c, p, false, "an Any holding %s needs \"value\"", d->name);
            goto fail;
        }
        inner = pbjson__parse_message(c, d, value, &vp, depth + 1);
    } else {
        inner = pbjson__parse_object(c, d, j, p, depth + 1, true);
    }
    if (inner == NULL)
        goto fail;

    size_t len = protobuf_c_message_get_packed_size(inner);
    if ((packed = malloc(len ? len : 1)) == NULL || (any->type_url = strdup(url)) == NULL) {
        pbjson__fail_oom(c, p);
        goto fail;
    }
    protobuf_c_message_pack(inner, packed);
    protobuf_c_message_free_unpacked(inner, NULL);
    if (len == 0) {
        free(packed);
        packed = NULL;
    }
    any->value.data = packed;
    any->value.len = len;
    return &any->base;

fail:
    free(packed);
    if (inner != NULL)
        protobuf_c_message_free_unpacked(inner, NULL);
    protobuf_c_message_free_unpacked(&any->base, NULL);
    return NULL;
}

/* "fooBar,baz.quxQuux" -> paths ["foo_bar", "baz.qux_quux"]; empty segments are skipped. */
ProtobufCMessage *pbjson__parse_field_mask(conv *c, const ProtobufCMessageDescriptor *d,
                                           const json_t *j, const struct path *p)
{
    if (!json_is_string(j)) {
        pbjson__fail_type(c, p, "a string of comma-separated field paths", j);
        return NULL;
    }
    const char *s = json_string_value(j);
    size_t len = json_string_length(j);
    const ProtobufCFieldDescriptor *f = &d->fields[0];
    ProtobufCMessage *msg = pbjson__new_message(c, p, d);
    if (msg == NULL)
        return NULL;
    size_t *count = MEMBER(msg, f->quantifier_offset);
    char ***paths = MEMBER(msg, f->offset);
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += s[i] == ',';
    if ((*paths = calloc(n, sizeof **paths)) == NULL) {
        pbjson__fail_oom(c, p);
        goto fail;
    }
    for (size_t start = 0; start < len;) {
        size_t end = start;
        while (end < len && s[end] != ',')
            end++;
        if (end > start) {
            if (memchr(s + start, '_', end - start) != NULL || memchr(s + start, '\0', end - start)) {
                char *q = pbjson__quote(s + start, end - start);
                pbjson__fail(c, p, false,
                             "invalid field mask path %s (JSON paths are lowerCamelCase)",
                             q ? q : "");
                free(q);
                goto fail;
            }
            char *out = malloc(2 * (end - start) + 1), *o = out;
            if (out == NULL) {
                pbjson__fail_oom(c, p);
                goto fail;
            }
            for (size_t i = start; i < end; i++) {
                if (s[i] >= 'A' && s[i] <= 'Z') {
                    *o++ = '_';
                    *o++ = (char)(s[i] - 'A' + 'a');
                } else {
                    *o++ = s[i];
                }
            }
            *o = '\0';
            (*paths)[(*count)++] = out;
        }
        start = end + 1;
    }
    return msg;

fail:
    protobuf_c_message_free_unpacked(msg, NULL);
    return NULL;
}

ProtobufCMessage *pbjson__parse_wrapper(conv *c, const ProtobufCMessageDescriptor *d,
                                        const json_t *j, const struct path *p, unsigned depth)
{
    ProtobufCMessage *msg = pbjson__new_message(c, p, d);
    if (msg == NULL)
        return NULL;
    const ProtobufCFieldDescriptor *f = &d->fields[0];
    if (pbjson__parse_value(c, f, j, p, depth, MEMBER(msg, f->offset)) != PARSED) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return NULL;
    }
    pbjson__mark_present(msg, f);
    return msg;
}

/* ---- printing ----------------------------------------------------------------------- */

/* Levels of Struct and ListValue inside v, counted only until they pass cap. */
static unsigned value_nesting(const Google__Protobuf__Value *v, unsigned cap)
{
    size_t n;
    if (v == NULL)
        return 0;
    if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE && v->struct_value)
        n = v->struct_value->n_fields;
    else if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE && v->list_value)
        n = v->list_value->n_values;
    else
        return 0;
    if (cap == 0)
        return 1;
    unsigned deepest = 0;
    for (size_t i = 0; i < n && deepest < cap; i++) {
        const Google__Protobuf__Value *child =
            v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE
                ? (v->struct_value->fields[i] ? v->struct_value->fields[i]->value : NULL)
                : v->list_value->values[i];
        unsigned k = value_nesting(child, cap - 1);
        deepest = k > deepest ? k : deepest;
    }
    return 1 + deepest;
}

json_t *pbjson__print_struct_kind(conv *c, enum wkt kind, const ProtobufCMessage *m,
                                  const struct path *p, unsigned depth)
{
    /* Struct and ListValue go through pbvalue wrapped in a Value that borrows them. */
    Google__Protobuf__Value wrap = GOOGLE__PROTOBUF__VALUE__INIT;
    const Google__Protobuf__Value *v = &wrap;
    if (kind == WKT_VALUE) {
        v = (const Google__Protobuf__Value *)m;
        /* Unset is printed as null, as protobuf's printers do, rather than refused. */
        if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET)
            return json_null();
    } else if (kind == WKT_STRUCT) {
        wrap.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        wrap.struct_value = (Google__Protobuf__Struct *)m;
    } else {
        wrap.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        wrap.list_value = (Google__Protobuf__ListValue *)m;
    }
    unsigned own = kind == WKT_VALUE ? 0 : 1;
    unsigned room = c->max_depth - depth + own;
    if (value_nesting(v, room) > room) {
        pbjson__fail(c, p, false, "nesting deeper than %u levels", c->max_depth);
        return NULL;
    }
    const char *why = "out of memory";
    json_t *j = pbvalue_to_json(v, &why);
    if (j == NULL)
        pbjson__fail(c, p, false, "%s", why);
    return j;
}

json_t *pbjson__print_any(conv *c, const ProtobufCMessage *m, const struct path *p,
                          unsigned depth)
{
    const Google__Protobuf__Any *any = (const Google__Protobuf__Any *)m;
    const char *url = any->type_url ? any->type_url : "";
    if (*url == '\0' && any->value.len == 0)
        return json_object();
    const ProtobufCMessageDescriptor *d = any_type(c->opt, url);
    if (d == NULL) {
        char *q = pbjson__quote(url, strlen(url));
        pbjson__fail(c, p, false, "cannot print an Any of unknown type %s", q ? q : "");
        free(q);
        return NULL;
    }
    if (depth + 1 > c->max_depth) {
        pbjson__fail(c, p, false, "nesting deeper than %u levels", c->max_depth);
        return NULL;
    }
    ProtobufCMessage *inner = protobuf_c_message_unpack(d, NULL, any->value.len, any->value.data);
    if (inner == NULL) {
        pbjson__fail(c, p, false, "the value of this Any is not a valid %s", d->name);
        return NULL;
    }
    json_t *out = json_object(), *t = json_string(url);
    if (out == NULL || t == NULL) {
        if (t == NULL)
            pbjson__fail(c, p, false, "type URL is not valid UTF-8");
        json_decref(t);
        goto fail;
    }
    if (json_object_set_new(out, "@type", t) < 0) { /* "@type" first, as protobuf prints it */
        pbjson__fail_oom(c, p);
        goto fail;
    }
    if (pbjson__wkt_of(d) != WKT_NONE) {
        struct path vp = {p, PATH_FIELD, "value", 0};
        json_t *v = pbjson__print_message(c, inner, &vp, depth + 1);
        if (v == NULL || json_object_set_new(out, "value", v) < 0) {
            pbjson__fail_oom(c, &vp);
            goto fail;
        }
    } else if (pbjson__print_fields(c, inner, p, depth + 1, out) < 0) {
        goto fail;
    }
    protobuf_c_message_free_unpacked(inner, NULL);
    return out;

fail:
    json_decref(out);
    protobuf_c_message_free_unpacked(inner, NULL);
    return NULL;
}

/* paths ["foo_bar", "baz.qux"] -> "fooBar,baz.qux". A path that would not read back the
 * same (upper case, or '_' not followed by a lower-case letter) is refused. */
json_t *pbjson__print_field_mask(conv *c, const ProtobufCMessage *m, const struct path *p)
{
    const ProtobufCFieldDescriptor *f = &m->descriptor->fields[0];
    size_t n = *(const size_t *)CMEMBER(m, f->quantifier_offset);
    char *const *paths = *(char *const *const *)CMEMBER(m, f->offset);
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    if (out == NULL) {
        pbjson__fail_oom(c, p);
        return NULL;
    }
    const char *bad = NULL;
    for (size_t i = 0; i < n && bad == NULL; i++) {
        const char *s = paths[i] ? paths[i] : "";
        if (i > 0)
            fputc(',', out);
        for (const char *ch = s; *ch && bad == NULL; ch++) {
            if (*ch >= 'A' && *ch <= 'Z')
                bad = s;
            else if (*ch != '_')
                fputc(*ch, out);
            else if (ch[1] >= 'a' && ch[1] <= 'z')
                fputc(*++ch - 'a' + 'A', out);
            else
                bad = s;
        }
    }
    json_t *j = NULL;
    if (fclose(out) != 0) {
        pbjson__fail_oom(c, p);
    } else if (bad != NULL) {
        char *q = pbjson__quote(bad, strlen(bad));
        pbjson__fail(c, p, false, "field mask path %s has no lowerCamelCase form", q ? q : "");
        free(q);
    } else if ((j = json_stringn(buf, size)) == NULL) {
        pbjson__fail(c, p, false, "field mask is not valid UTF-8");
    }
    free(buf);
    return j;
}
