/* The protobuf JSON mapping over protobuf-c descriptors: JSON -> message (errors carry the
 * JSON path, and a line and column when parsing text) and message -> JSON, with the
 * well-known types in their special forms.
 *
 * One module in one file, past the usual size: both directions share the field model, the
 * error paths and the Duration/Timestamp/base64 formats, and a split would mostly export
 * those helpers to each other. */
#include "pbjson.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
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
#include "pbvalue.h"

/* Ranges of the mapping: Duration is about +-10000 years, Timestamp years 0001 to 9999. */
#define DURATION_MAX_SECONDS 315576000000LL
#define TIMESTAMP_MIN_SECONDS (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define TIMESTAMP_MAX_SECONDS 253402300799LL   /* 9999-12-31T23:59:59Z */
#define NANOS_PER_SECOND 1000000000

/* Error messages quote input; a long value is cut so that the message stays one line. */
#define QUOTE_MAX 64

#define MEMBER(msg, off) ((void *)((char *)(msg) + (off)))
#define CMEMBER(msg, off) ((const void *)((const char *)(msg) + (off)))

/* ---- the field model ---------------------------------------------------------------- */

/* Size of one value in a protobuf-c struct or repeated array. */
static size_t value_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        /* 32-bit numbers, float, protobuf_c_boolean (an int) and enums (forced to int size) */
        return 4;
    }
}

static bool is_pointer_type(ProtobufCType type)
{
    return type == PROTOBUF_C_TYPE_STRING || type == PROTOBUF_C_TYPE_MESSAGE;
}

static bool is_oneof(const ProtobufCFieldDescriptor *f)
{
    return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
}

/* A protobuf-c map field is a repeated field of entry messages; the descriptor does not say
 * which repeated fields are maps, so this recognises the entry message protoc generates: a
 * nested type named after the field (MapEntryName: "labels" -> "LabelsEntry") holding
 * exactly key = 1 and value = 2. */
static bool is_map(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return false;
    const ProtobufCMessageDescriptor *e = f->descriptor;
    if (e->n_fields != 2 || e->fields[0].id != 1 || strcmp(e->fields[0].name, "key") != 0 ||
        e->fields[1].id != 2 || strcmp(e->fields[1].name, "value") != 0)
        return false;
    size_t plen = strlen(parent->name);
    if (strncmp(e->name, parent->name, plen) != 0 || e->name[plen] != '.')
        return false;
    const char *s = e->short_name;
    bool upper = true;
    for (const char *n = f->name; *n; n++) {
        if (*n == '_') {
            upper = true;
            continue;
        }
        char want = upper && *n >= 'a' && *n <= 'z' ? (char)(*n - 'a' + 'A') : *n;
        upper = false;
        if (*s++ != want)
            return false;
    }
    return strcmp(s, "Entry") == 0 && strcmp(e->name + plen + 1, e->short_name) == 0;
}

/* The json_name protoc derives (ToJsonName): each '_' dropped, the character after it
 * upper-cased. protobuf-c does not keep the json_name option, so a custom one is lost. */
static bool json_name_matches(const char *name, const char *key)
{
    bool upper = false;
    for (; *name; name++) {
        if (*name == '_') {
            upper = true;
            continue;
        }
        char want = upper && *name >= 'a' && *name <= 'z' ? (char)(*name - 'a' + 'A') : *name;
        upper = false;
        if (*key++ != want)
            return false;
    }
    return *key == '\0';
}

/* out has room for strlen(name) + 1 bytes. */
static void json_name_write(const char *name, char *out)
{
    bool upper = false;
    for (; *name; name++) {
        if (*name == '_') {
            upper = true;
            continue;
        }
        *out++ = upper && *name >= 'a' && *name <= 'z' ? (char)(*name - 'a' + 'A') : *name;
        upper = false;
    }
    *out = '\0';
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d,
                                                  const char *key)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);
    for (unsigned i = 0; f == NULL && i < d->n_fields; i++)
        if (json_name_matches(d->fields[i].name, key))
            f = &d->fields[i];
    return f;
}

enum wkt {
    WKT_NONE,
    WKT_ANY,
    WKT_DURATION,
    WKT_TIMESTAMP,
    WKT_VALUE,
    WKT_STRUCT,
    WKT_LIST_VALUE,
    WKT_FIELD_MASK,
    WKT_WRAPPER,
};

static const char *const wrapper_names[] = {
    "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",   "google.protobuf.StringValue", "google.protobuf.BytesValue",
};

/* The types this library generates are recognised by descriptor; FieldMask and the wrappers
 * are not generated here, so a program that links them is recognised by name (and shape). */
static enum wkt wkt_of(const ProtobufCMessageDescriptor *d)
{
    if (d == &google__protobuf__any__descriptor)
        return WKT_ANY;
    if (d == &google__protobuf__duration__descriptor)
        return WKT_DURATION;
    if (d == &google__protobuf__timestamp__descriptor)
        return WKT_TIMESTAMP;
    if (d == &google__protobuf__value__descriptor)
        return WKT_VALUE;
    if (d == &google__protobuf__struct__descriptor)
        return WKT_STRUCT;
    if (d == &google__protobuf__list_value__descriptor)
        return WKT_LIST_VALUE;
    if (strncmp(d->name, "google.protobuf.", 16) != 0 || d->n_fields != 1)
        return WKT_NONE;
    const ProtobufCFieldDescriptor *f = &d->fields[0];
    if (strcmp(d->name, "google.protobuf.FieldMask") == 0)
        return f->label == PROTOBUF_C_LABEL_REPEATED && f->type == PROTOBUF_C_TYPE_STRING
                   ? WKT_FIELD_MASK
                   : WKT_NONE;
    for (size_t i = 0; i < sizeof wrapper_names / sizeof *wrapper_names; i++)
        if (strcmp(d->name, wrapper_names[i]) == 0)
            return f->id == 1 && f->label != PROTOBUF_C_LABEL_REPEATED ? WKT_WRAPPER : WKT_NONE;
    return WKT_NONE;
}

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

static bool takes_null(const ProtobufCFieldDescriptor *f)
{
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return f->descriptor == &google__protobuf__value__descriptor;
    if (f->type == PROTOBUF_C_TYPE_ENUM)
        return strcmp(((const ProtobufCEnumDescriptor *)f->descriptor)->name,
                      "google.protobuf.NullValue") == 0;
    return false;
}

/* ---- paths and errors --------------------------------------------------------------- */

enum path_kind { PATH_FIELD, PATH_KEY, PATH_INDEX };

/* One step from the root to the value being converted. Steps live on the C stack of the
 * recursion, each pointing at its parent (NULL: the root); keys are borrowed from the JSON
 * being parsed or the message being printed. */
struct path {
    const struct path *up;
    enum path_kind kind;
    const char *key;
    size_t index;
};

/* The state of one conversion, either direction. */
typedef struct conv {
    const pbjson_options *opt;
    unsigned max_depth;
    char *err; /* the first failure: it is the cause, later ones are its consequences */
    /* The failing path, root first, kept for pbjson_parse_text to find in the text. */
    struct path *err_steps;
    size_t n_err_steps;
    bool err_at_key;
} conv;

/* JSON-style string literal of len bytes at s, cut after max bytes (at a character
 * boundary) with "..." appended. */
static void put_quoted(FILE *f, const char *s, size_t len, size_t max)
{
    bool cut = len > max;
    if (cut) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputs(cut ? "...\"" : "\"", f);
}

/* s quoted for an error message; malloc'd, NULL on ENOMEM. */
static char *quote(const char *s, size_t len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (f == NULL)
        return NULL;
    put_quoted(f, s, len, QUOTE_MAX);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static bool is_identifier(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

/* operations[3].timeout, options.labels["env"]: fields with a dot, map keys and names that
 * are not identifiers in brackets. */
static void put_path(FILE *f, const struct path *p)
{
    if (p == NULL)
        return;
    put_path(f, p->up);
    if (p->kind == PATH_INDEX) {
        fprintf(f, "[%zu]", p->index);
    } else if (p->kind == PATH_FIELD && is_identifier(p->key)) {
        fprintf(f, "%s%s", p->up ? "." : "", p->key);
    } else {
        fputc('[', f);
        put_quoted(f, p->key, strlen(p->key), SIZE_MAX);
        fputc(']', f);
    }
}

/* Records the failure "path: reason" unless one is recorded already. at_key: the member
 * name is at fault (an unknown or repeated field), not its value. */
__attribute__((format(printf, 4, 5)))
static void fail(conv *c, const struct path *p, bool at_key, const char *fmt, ...)
{
    if (c->err != NULL)
        return;
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (f == NULL)
        return;
    put_path(f, p);
    if (p != NULL)
        fputs(": ", f);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    if (fclose(f) != 0) {
        free(buf);
        return;
    }
    c->err = buf;

    size_t n = 0;
    for (const struct path *s = p; s; s = s->up)
        n++;
    c->err_at_key = at_key;
    c->err_steps = n ? calloc(n, sizeof *c->err_steps) : NULL;
    if (c->err_steps == NULL)
        return;
    c->n_err_steps = n;
    for (const struct path *s = p; s; s = s->up)
        c->err_steps[--n] = *s;
}

static void fail_oom(conv *c, const struct path *p)
{
    fail(c, p, false, "out of memory");
}

static const char *json_kind(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    default:
        return "null";
    }
}

/* "expected a number, got boolean" / "... got string "abc"" */
static void fail_type(conv *c, const struct path *p, const char *expected, const json_t *j)
{
    if (json_is_string(j)) {
        char *q = quote(json_string_value(j), json_string_length(j));
        fail(c, p, false, "expected %s, got string %s", expected, q ? q : "");
        free(q);
    } else {
        fail(c, p, false, "expected %s, got %s", expected, json_kind(j));
    }
}

/* ---- base64 ------------------------------------------------------------------------- */

static const char base64_digits[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard alphabet with padding, as the mapping prints bytes. Malloc'd, NUL-terminated. */
static char *base64_encode(const uint8_t *data, size_t len, size_t *out_len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        out[o++] = base64_digits[v >> 18 & 63];
        out[o++] = base64_digits[v >> 12 & 63];
        out[o++] = base64_digits[v >> 6 & 63];
        out[o++] = base64_digits[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0);
        out[o++] = base64_digits[v >> 18 & 63];
        out[o++] = base64_digits[v >> 12 & 63];
        out[o++] = i + 1 < len ? base64_digits[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* Both alphabets are accepted: the mapping reads standard and URL-safe base64. */
static int base64_digit(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

static int parse_base64(conv *c, const struct path *p, const char *s, size_t len,
                        ProtobufCBinaryData *out)
{
    size_t pads = 0;
    while (pads < 2 && pads < len && s[len - pads - 1] == '=')
        pads++;
    size_t n = len - pads;
    /* Padding is optional, but when given it completes the last group of four. */
    if ((pads > 0 && len % 4 != 0) || n % 4 == 1) {
        fail(c, p, false, "invalid base64: %zu characters cannot encode whole bytes", len);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (base64_digit(ch) >= 0)
            continue;
        if (ch > 0x20 && ch < 0x7f)
            fail(c, p, false, "invalid base64: unexpected character '%c' at offset %zu", ch, i);
        else
            fail(c, p, false, "invalid base64: unexpected byte 0x%02x at offset %zu", ch, i);
        return -1;
    }
    size_t out_len = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    uint8_t *data = NULL;
    if (out_len > 0 && (data = malloc(out_len)) == NULL) {
        fail_oom(c, p);
        return -1;
    }
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 6 | (uint32_t)base64_digit((unsigned char)s[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            data[o++] = (uint8_t)(acc >> bits);
        }
    }
    out->data = data;
    out->len = out_len;
    return 0;
}

/* ---- Duration and Timestamp text ---------------------------------------------------- */

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

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
    for ((*i)++; *i < len && is_digit(s[*i]); (*i)++) {
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
    for (; i < len && is_digit(s[i]); i++)
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
static int duration_to_text(int64_t seconds, int32_t nanos, char *buf, size_t size)
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
        if (!is_digit(s[i]))
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
static int timestamp_to_text(int64_t seconds, int32_t nanos, char *buf, size_t size)
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

/* ---- parsing: scalars --------------------------------------------------------------- */

/* parse_value results. SKIPPED: an unknown enum name under ignore_unknown_fields. */
enum { PARSED = 0, FAILED = -1, SKIPPED = 1 };

static const char *int_type_name(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_ENUM:
        return "int32";
    case PROTOBUF_C_TYPE_SINT32:
        return "sint32";
    case PROTOBUF_C_TYPE_SFIXED32:
        return "sfixed32";
    case PROTOBUF_C_TYPE_UINT32:
        return "uint32";
    case PROTOBUF_C_TYPE_FIXED32:
        return "fixed32";
    case PROTOBUF_C_TYPE_INT64:
        return "int64";
    case PROTOBUF_C_TYPE_SINT64:
        return "sint64";
    case PROTOBUF_C_TYPE_SFIXED64:
        return "sfixed64";
    case PROTOBUF_C_TYPE_UINT64:
        return "uint64";
    default:
        return "fixed64";
    }
}

/* "-?[0-9]+" as sign and magnitude. Returns 0, -1 when not an integer, -2 past 64 bits. */
static int decimal_from_text(const char *s, size_t len, bool *neg, uint64_t *mag)
{
    size_t i = 0;
    *neg = len > 0 && s[0] == '-';
    if (*neg)
        i++;
    if (i == len)
        return -1;
    *mag = 0;
    bool overflow = false;
    for (; i < len; i++) {
        if (!is_digit(s[i]))
            return -1;
        unsigned digit = (unsigned)(s[i] - '0');
        if (*mag > (UINT64_MAX - digit) / 10)
            overflow = true;
        else
            *mag = *mag * 10 + digit;
    }
    return overflow ? -2 : 0;
}

/* JSON's number grammar, which numbers inside strings must follow too: strtod would also
 * take hex, "inf", "nan" and leading blanks. */
static bool is_json_number(const char *s, size_t len)
{
    size_t i = 0;
    if (i < len && s[i] == '-')
        i++;
    if (i < len && s[i] == '0')
        i++;
    else if (i < len && is_digit(s[i]))
        while (i < len && is_digit(s[i]))
            i++;
    else
        return false;
    if (i < len && s[i] == '.') {
        if (++i >= len || !is_digit(s[i]))
            return false;
        while (i < len && is_digit(s[i]))
            i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        if (++i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= len || !is_digit(s[i]))
            return false;
        while (i < len && is_digit(s[i]))
            i++;
    }
    return i == len;
}

static int store_int(conv *c, const struct path *p, ProtobufCType t, bool neg, uint64_t mag,
                     void *dst)
{
    bool wide = t == PROTOBUF_C_TYPE_INT64 || t == PROTOBUF_C_TYPE_SINT64 ||
                t == PROTOBUF_C_TYPE_SFIXED64 || t == PROTOBUF_C_TYPE_UINT64 ||
                t == PROTOBUF_C_TYPE_FIXED64;
    bool is_unsigned = t == PROTOBUF_C_TYPE_UINT32 || t == PROTOBUF_C_TYPE_FIXED32 ||
                       t == PROTOBUF_C_TYPE_UINT64 || t == PROTOBUF_C_TYPE_FIXED64;
    uint64_t max = wide ? (is_unsigned ? UINT64_MAX : INT64_MAX)
                        : (is_unsigned ? UINT32_MAX : INT32_MAX);
    uint64_t max_neg = is_unsigned ? 0 : max + 1;
    if (neg ? mag > max_neg : mag > max) {
        fail(c, p, false, "%s%" PRIu64 " is out of range for %s", neg ? "-" : "", mag,
             int_type_name(t));
        return FAILED;
    }
    /* Negation in uint64 then conversion: two's complement, and no overflow at INT64_MIN. */
    uint64_t bits = neg ? 0 - mag : mag;
    if (!wide)
        *(uint32_t *)dst = (uint32_t)bits;
    else
        *(uint64_t *)dst = bits;
    return PARSED;
}

/* Integers come as JSON numbers (integral reals included, 1e3) or decimal strings, which
 * carry 64-bit values past a double's 53 bits. */
static int parse_int(conv *c, const struct path *p, const json_t *j, ProtobufCType t, void *dst)
{
    bool neg;
    uint64_t mag;
    switch (json_typeof(j)) {
    case JSON_INTEGER: {
        json_int_t v = json_integer_value(j);
        neg = v < 0;
        mag = neg ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
        break;
    }
    case JSON_REAL: {
        /* Range first, so that the conversion is defined; then integral if it converts back
         * unchanged. (No trunc(): batchproto does not link libm, and -O0 would call it.) */
        double d = json_real_value(j), a = d < 0 ? -d : d;
        if (!(a < 18446744073709551616.0)) {
            fail(c, p, false, "%.17g is out of range for %s", d, int_type_name(t));
            return FAILED;
        }
        mag = (uint64_t)a;
        if ((double)mag != a) {
            fail(c, p, false, "expected an integer, got %.17g", d);
            return FAILED;
        }
        neg = d < 0;
        break;
    }
    case JSON_STRING: {
        const char *s = json_string_value(j);
        size_t len = json_string_length(j);
        int r = decimal_from_text(s, len, &neg, &mag);
        if (r == 0)
            break;
        char *q = quote(s, len);
        if (r == -2)
            fail(c, p, false, "%s is out of range for %s", q ? q : "", int_type_name(t));
        else if (is_json_number(s, len))
            fail(c, p, false, "expected an integer, got %s", q ? q : "");
        else
            fail(c, p, false, "expected a number, got string %s", q ? q : "");
        free(q);
        return FAILED;
    }
    default:
        fail_type(c, p, "a number", j);
        return FAILED;
    }
    return store_int(c, p, t, neg, mag, dst);
}

/* Numbers, numeric strings and the strings "NaN", "Infinity" and "-Infinity". strtod and
 * the printers use the C locale's '.', which these programs never change. */
static int parse_float(conv *c, const struct path *p, const json_t *j, bool single, void *dst)
{
    double d;
    if (json_is_number(j)) {
        d = json_number_value(j);
    } else if (json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t len = json_string_length(j);
        if (strcmp(s, "NaN") == 0 && len == 3) {
            d = NAN;
        } else if (strcmp(s, "Infinity") == 0 && len == 8) {
            d = INFINITY;
        } else if (strcmp(s, "-Infinity") == 0 && len == 9) {
            d = -INFINITY;
        } else if (is_json_number(s, len)) {
            d = strtod(s, NULL);
            if (isinf(d)) {
                char *q = quote(s, len);
                fail(c, p, false, "%s is out of range for %s", q ? q : "",
                     single ? "float" : "double");
                free(q);
                return FAILED;
            }
        } else {
            fail_type(c, p, "a number", j);
            return FAILED;
        }
    } else {
        fail_type(c, p, "a number", j);
        return FAILED;
    }
    if (!single) {
        *(double *)dst = d;
        return PARSED;
    }
    /* Out of range is what overflows as a float: printers write FLT_MAX as 3.4028235e+38,
     * a little above it as a double, which must read back as FLT_MAX. */
    if (isfinite(d) && isinf((float)d)) {
        fail(c, p, false, "%.17g is out of range for float", d);
        return FAILED;
    }
    *(float *)dst = (float)d;
    return PARSED;
}

static int parse_enum(conv *c, const struct path *p, const json_t *j,
                      const ProtobufCEnumDescriptor *ed, void *dst)
{
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        const ProtobufCEnumValue *v = NULL;
        if (strlen(s) == json_string_length(j))
            v = protobuf_c_enum_descriptor_get_value_by_name(ed, s);
        if (v != NULL) {
            *(int32_t *)dst = v->value;
            return PARSED;
        }
        if (c->opt->ignore_unknown_fields)
            return SKIPPED;
        char *q = quote(s, json_string_length(j));
        fail(c, p, false, "unknown value %s for enum %s", q ? q : "", ed->name);
        free(q);
        return FAILED;
    }
    if (json_is_null(j)) { /* only reached for google.protobuf.NullValue */
        *(int32_t *)dst = 0;
        return PARSED;
    }
    if (json_is_number(j))
        return parse_int(c, p, j, PROTOBUF_C_TYPE_ENUM, dst);
    fail_type(c, p, "an enum name or number", j);
    return FAILED;
}

static int parse_string(conv *c, const struct path *p, const json_t *j, char **dst)
{
    if (!json_is_string(j)) {
        fail_type(c, p, "a string", j);
        return FAILED;
    }
    const char *s = json_string_value(j);
    size_t len = json_string_length(j);
    if (memchr(s, '\0', len) != NULL) {
        fail(c, p, false, "strings with a NUL character are not supported");
        return FAILED;
    }
    if ((*dst = strndup(s, len)) == NULL) {
        fail_oom(c, p);
        return FAILED;
    }
    return PARSED;
}

/* ---- parsing: messages -------------------------------------------------------------- */

static ProtobufCMessage *parse_message(conv *c, const ProtobufCMessageDescriptor *d,
                                       const json_t *j, const struct path *p, unsigned depth);
static ProtobufCMessage *parse_object(conv *c, const ProtobufCMessageDescriptor *d,
                                      const json_t *j, const struct path *p, unsigned depth,
                                      bool in_any);

static ProtobufCMessage *new_message(conv *c, const struct path *p,
                                     const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (m == NULL) {
        fail_oom(c, p);
        return NULL;
    }
    protobuf_c_message_init(d, m);
    return m;
}

/* Converts j to one value of f (a singular field, an element of a repeated field or a map
 * entry's value) at dst. Owned results (strings, bytes, messages) are stored only once
 * complete, so that dst never holds a half-built value free_unpacked would trip on. */
static int parse_value(conv *c, const ProtobufCFieldDescriptor *f, const json_t *j,
                       const struct path *p, unsigned depth, void *dst)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return parse_int(c, p, j, f->type, dst);
    case PROTOBUF_C_TYPE_FLOAT:
        return parse_float(c, p, j, true, dst);
    case PROTOBUF_C_TYPE_DOUBLE:
        return parse_float(c, p, j, false, dst);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(j)) {
            fail_type(c, p, "true or false", j);
            return FAILED;
        }
        *(protobuf_c_boolean *)dst = json_is_true(j);
        return PARSED;
    case PROTOBUF_C_TYPE_ENUM:
        return parse_enum(c, p, j, f->descriptor, dst);
    case PROTOBUF_C_TYPE_STRING:
        return parse_string(c, p, j, dst);
    case PROTOBUF_C_TYPE_BYTES:
        if (!json_is_string(j)) {
            fail_type(c, p, "a base64 string", j);
            return FAILED;
        }
        return parse_base64(c, p, json_string_value(j), json_string_length(j), dst);
    case PROTOBUF_C_TYPE_MESSAGE: {
        ProtobufCMessage *m = parse_message(c, f->descriptor, j, p, depth + 1);
        if (m == NULL)
            return FAILED;
        *(ProtobufCMessage **)dst = m;
        return PARSED;
    }
    }
    fail(c, p, false, "unsupported field type %d", (int)f->type);
    return FAILED;
}

/* Sets what says f holds a value: the oneof case, or has_ of a proto2 optional scalar
 * (strings and messages are present when their pointer is set). */
static void mark_present(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    if (is_oneof(f))
        *(uint32_t *)MEMBER(msg, f->quantifier_offset) = f->id;
    else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && !is_pointer_type(f->type))
        *(protobuf_c_boolean *)MEMBER(msg, f->quantifier_offset) = 1;
}

/* The array is attached to msg before it is filled and the count raised per element, so
 * that protobuf_c_message_free_unpacked(msg) frees exactly what was converted so far. */
static int parse_repeated(conv *c, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                          const json_t *j, const struct path *p, unsigned depth)
{
    if (!json_is_array(j)) {
        fail_type(c, p, "an array", j);
        return -1;
    }
    size_t n = json_array_size(j), size = value_size(f->type);
    size_t *count = MEMBER(msg, f->quantifier_offset);
    void **array = MEMBER(msg, f->offset);
    if (n == 0)
        return 0;
    if ((*array = calloc(n, size)) == NULL) {
        fail_oom(c, p);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(j, i);
        struct path ep = {p, PATH_INDEX, NULL, i};
        if (json_is_null(e) && !takes_null(f)) {
            fail(c, &ep, false, "null is not allowed in a repeated field");
            return -1;
        }
        int r = parse_value(c, f, e, &ep, depth, (char *)*array + *count * size);
        if (r == FAILED)
            return -1;
        if (r == PARSED)
            (*count)++;
    }
    return 0;
}

/* Map keys are JSON member names: strings for every key type, "true"/"false" for bool. */
static int parse_map_key(conv *c, const ProtobufCFieldDescriptor *kf, const char *key,
                         const struct path *p, void *dst)
{
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING:
        if ((*(char **)dst = strdup(key)) == NULL) {
            fail_oom(c, p);
            return FAILED;
        }
        return PARSED;
    case PROTOBUF_C_TYPE_BOOL:
        if (strcmp(key, "true") != 0 && strcmp(key, "false") != 0) {
            fail(c, p, true, "expected a bool map key, \"true\" or \"false\"");
            return FAILED;
        }
        *(protobuf_c_boolean *)dst = key[0] == 't';
        return PARSED;
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
    case PROTOBUF_C_TYPE_ENUM:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        fail(c, p, true, "unsupported map key type");
        return FAILED;
    default: {
        bool neg;
        uint64_t mag;
        int r = decimal_from_text(key, strlen(key), &neg, &mag);
        if (r == -1) {
            fail(c, p, true, "expected an integer map key");
            return FAILED;
        }
        if (r == -2) {
            fail(c, p, true, "map key out of range for %s", int_type_name(kf->type));
            return FAILED;
        }
        return store_int(c, p, kf->type, neg, mag, dst);
    }
    }
}

static int parse_map(conv *c, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                     const json_t *j, const struct path *p, unsigned depth)
{
    if (!json_is_object(j)) {
        fail_type(c, p, "an object", j);
        return -1;
    }
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    size_t n = json_object_size(j);
    size_t *count = MEMBER(msg, f->quantifier_offset);
    ProtobufCMessage ***entries = MEMBER(msg, f->offset);
    if (n == 0)
        return 0;
    if ((*entries = calloc(n, sizeof **entries)) == NULL) {
        fail_oom(c, p);
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        struct path kp = {p, PATH_KEY, key, 0};
        ProtobufCMessage *entry = new_message(c, &kp, ed);
        if (entry == NULL)
            return -1;
        (*entries)[(*count)++] = entry;
        if (parse_map_key(c, kf, key, &kp, MEMBER(entry, kf->offset)) == FAILED)
            return -1;
        mark_present(entry, kf);
        if (json_is_null(v) && !takes_null(vf)) {
            fail(c, &kp, false, "map values cannot be null");
            return -1;
        }
        int r = parse_value(c, vf, v, &kp, depth, MEMBER(entry, vf->offset));
        if (r == FAILED)
            return -1;
        if (r == SKIPPED) { /* an unknown enum name, ignored: the entry goes */
            protobuf_c_message_free_unpacked(entry, NULL);
            (*count)--;
            continue;
        }
        mark_present(entry, vf);
    }
    return 0;
}

/* One member of a JSON object. null means the default, i.e. the field stays unset, except
 * for google.protobuf.Value (a null_value) and google.protobuf.NullValue. */
static int parse_field(conv *c, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                       const json_t *j, const struct path *p, unsigned depth)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return is_map(msg->descriptor, f) ? parse_map(c, msg, f, j, p, depth)
                                          : parse_repeated(c, msg, f, j, p, depth);
    int r = parse_value(c, f, j, p, depth, MEMBER(msg, f->offset));
    if (r == PARSED)
        mark_present(msg, f);
    return r == FAILED ? -1 : 0;
}

static ProtobufCMessage *parse_object(conv *c, const ProtobufCMessageDescriptor *d,
                                      const json_t *j, const struct path *p, unsigned depth,
                                      bool in_any)
{
    if (!json_is_object(j)) {
        fail_type(c, p, "an object", j);
        return NULL;
    }
    /* The member name that gave each field: a field may be named two ways, once. */
    const char **given = calloc(d->n_fields ? d->n_fields : 1, sizeof *given);
    ProtobufCMessage *msg = given ? new_message(c, p, d) : NULL;
    if (msg == NULL) {
        fail_oom(c, p);
        goto fail;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        struct path fp = {p, PATH_FIELD, key, 0};
        if (in_any && strcmp(key, "@type") == 0)
            continue;
        const ProtobufCFieldDescriptor *f = find_field(d, key);
        if (f == NULL) {
            if (c->opt->ignore_unknown_fields)
                continue;
            fail(c, &fp, true, "unknown field in %s", d->name);
            goto fail;
        }
        size_t i = (size_t)(f - d->fields);
        if (given[i] != NULL) {
            fail(c, &fp, true, "field already given as \"%s\"", given[i]);
            goto fail;
        }
        given[i] = key;
        if (json_is_null(v) && !takes_null(f))
            continue;
        if (is_oneof(f)) {
            uint32_t set = *(const uint32_t *)MEMBER(msg, f->quantifier_offset);
            if (set != 0) {
                const ProtobufCFieldDescriptor *other = protobuf_c_message_descriptor_get_field(d, set);
                const char *other_key = other ? given[other - d->fields] : NULL;
                fail(c, &fp, true, "cannot be set together with \"%s\" (members of one oneof)",
                     other_key ? other_key : "?");
                goto fail;
            }
        }
        if (parse_field(c, msg, f, v, &fp, depth) < 0)
            goto fail;
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        if (d->fields[i].label == PROTOBUF_C_LABEL_REQUIRED && given[i] == NULL) {
            fail(c, p, false, "missing required field \"%s\" of %s", d->fields[i].name, d->name);
            goto fail;
        }
    }
    free(given);
    return msg;

fail:
    free(given);
    if (msg != NULL)
        protobuf_c_message_free_unpacked(msg, NULL);
    return NULL;
}

static ProtobufCMessage *parse_duration(conv *c, const json_t *j, const struct path *p)
{
    if (!json_is_string(j)) {
        fail_type(c, p, "a duration string such as \"1.5s\"", j);
        return NULL;
    }
    int64_t seconds;
    int32_t nanos;
    int r = duration_from_text(json_string_value(j), json_string_length(j), &seconds, &nanos);
    if (r < 0) {
        char *q = quote(json_string_value(j), json_string_length(j));
        if (r == -1)
            fail(c, p, false, "invalid duration %s (expected e.g. \"1.5s\")", q ? q : "");
        else
            fail(c, p, false, "duration %s is out of range (at most %llds either way)", q ? q : "",
                 DURATION_MAX_SECONDS);
        free(q);
        return NULL;
    }
    Google__Protobuf__Duration *du = malloc(sizeof *du);
    if (du == NULL) {
        fail_oom(c, p);
        return NULL;
    }
    google__protobuf__duration__init(du);
    du->seconds = seconds;
    du->nanos = nanos;
    return &du->base;
}

static ProtobufCMessage *parse_timestamp(conv *c, const json_t *j, const struct path *p)
{
    if (!json_is_string(j)) {
        fail_type(c, p, "an RFC 3339 timestamp string", j);
        return NULL;
    }
    int64_t seconds;
    int32_t nanos;
    int r = timestamp_from_text(json_string_value(j), json_string_length(j), &seconds, &nanos);
    if (r < 0) {
        char *q = quote(json_string_value(j), json_string_length(j));
        if (r == -1)
            fail(c, p, false,
                 "invalid timestamp %s (expected RFC 3339, e.g. \"2026-11-22T10:00:00Z\")",
                 q ? q : "");
        else
            fail(c, p, false, "timestamp %s is out of range (years 0001 to 9999)", q ? q : "");
        free(q);
        return NULL;
    }
    Google__Protobuf__Timestamp *ts = malloc(sizeof *ts);
    if (ts == NULL) {
        fail_oom(c, p);
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
static ProtobufCMessage *parse_struct_kind(conv *c, enum wkt kind, const json_t *j,
                                           const struct path *p, unsigned depth)
{
    if (kind == WKT_STRUCT && !json_is_object(j)) {
        fail_type(c, p, "an object", j);
        return NULL;
    }
    if (kind == WKT_LIST_VALUE && !json_is_array(j)) {
        fail_type(c, p, "an array", j);
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
        fail(c, p, false, "nesting deeper than %u levels", limit);
        return NULL;
    }
    Google__Protobuf__Value *v = pbvalue_from_json(j);
    if (v == NULL) {
        fail_oom(c, p);
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
static ProtobufCMessage *parse_any(conv *c, const json_t *j, const struct path *p,
                                   unsigned depth)
{
    if (!json_is_object(j)) {
        fail_type(c, p, "an object", j);
        return NULL;
    }
    Google__Protobuf__Any *any = malloc(sizeof *any);
    ProtobufCMessage *inner = NULL;
    uint8_t *packed = NULL;
    if (any == NULL) {
        fail_oom(c, p);
        return NULL;
    }
    google__protobuf__any__init(any);
    if (json_object_size(j) == 0)
        return &any->base;

    const json_t *t = json_object_get(j, "@type");
    struct path tp = {p, PATH_FIELD, "@type", 0};
    if (t == NULL) {
        fail(c, p, false, "an Any needs \"@type\"");
        goto fail;
    }
    if (!json_is_string(t)) {
        fail_type(c, &tp, "a type URL string", t);
        goto fail;
    }
    const char *url = json_string_value(t);
    const ProtobufCMessageDescriptor *d = any_type(c->opt, url);
    if (d == NULL) {
        char *q = quote(url, json_string_length(t));
        fail(c, &tp, false, "cannot resolve Any type %s (not a type this program knows)",
             q ? q : "");
        free(q);
        goto fail;
    }
    if (depth + 1 > c->max_depth) {
        fail(c, p, false, "nesting deeper than %u levels", c->max_depth);
        goto fail;
    }
    if (wkt_of(d) != WKT_NONE) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)j, key, v) {
            struct path fp = {p, PATH_FIELD, key, 0};
            if (strcmp(key, "@type") != 0 && strcmp(key, "value") != 0 &&
                !c->opt->ignore_unknown_fields) {
                fail(c, &fp, true, "unknown field in an Any holding %s", d->name);
                goto fail;
            }
        }
        struct path vp = {p, PATH_FIELD, "value", 0};
        const json_t *value = json_object_get(j, "value");
        if (value == NULL) {
            fail(c, p, false, "an Any holding %s needs \"value\"", d->name);
            goto fail;
        }
        inner = parse_message(c, d, value, &vp, depth + 1);
    } else {
        inner = parse_object(c, d, j, p, depth + 1, true);
    }
    if (inner == NULL)
        goto fail;

    size_t len = protobuf_c_message_get_packed_size(inner);
    if ((packed = malloc(len ? len : 1)) == NULL || (any->type_url = strdup(url)) == NULL) {
        fail_oom(c, p);
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
static ProtobufCMessage *parse_field_mask(conv *c, const ProtobufCMessageDescriptor *d,
                                          const json_t *j, const struct path *p)
{
    if (!json_is_string(j)) {
        fail_type(c, p, "a string of comma-separated field paths", j);
        return NULL;
    }
    const char *s = json_string_value(j);
    size_t len = json_string_length(j);
    const ProtobufCFieldDescriptor *f = &d->fields[0];
    ProtobufCMessage *msg = new_message(c, p, d);
    if (msg == NULL)
        return NULL;
    size_t *count = MEMBER(msg, f->quantifier_offset);
    char ***paths = MEMBER(msg, f->offset);
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += s[i] == ',';
    if ((*paths = calloc(n, sizeof **paths)) == NULL) {
        fail_oom(c, p);
        goto fail;
    }
    for (size_t start = 0; start < len;) {
        size_t end = start;
        while (end < len && s[end] != ',')
            end++;
        if (end > start) {
            if (memchr(s + start, '_', end - start) != NULL || memchr(s + start, '\0', end - start)) {
                char *q = quote(s + start, end - start);
                fail(c, p, false, "invalid field mask path %s (JSON paths are lowerCamelCase)",
                     q ? q : "");
                free(q);
                goto fail;
            }
            char *out = malloc(2 * (end - start) + 1), *o = out;
            if (out == NULL) {
                fail_oom(c, p);
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

static ProtobufCMessage *parse_wrapper(conv *c, const ProtobufCMessageDescriptor *d,
                                       const json_t *j, const struct path *p, unsigned depth)
{
    ProtobufCMessage *msg = new_message(c, p, d);
    if (msg == NULL)
        return NULL;
    const ProtobufCFieldDescriptor *f = &d->fields[0];
    if (parse_value(c, f, j, p, depth, MEMBER(msg, f->offset)) != PARSED) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return NULL;
    }
    mark_present(msg, f);
    return msg;
}

static ProtobufCMessage *parse_message(conv *c, const ProtobufCMessageDescriptor *d,
                                       const json_t *j, const struct path *p, unsigned depth)
{
    if (depth > c->max_depth) {
        fail(c, p, false, "nesting deeper than %u levels", c->max_depth);
        return NULL;
    }
    enum wkt kind = wkt_of(d);
    switch (kind) {
    case WKT_ANY:
        return parse_any(c, j, p, depth);
    case WKT_DURATION:
        return parse_duration(c, j, p);
    case WKT_TIMESTAMP:
        return parse_timestamp(c, j, p);
    case WKT_VALUE:
    case WKT_STRUCT:
    case WKT_LIST_VALUE:
        return parse_struct_kind(c, kind, j, p, depth);
    case WKT_FIELD_MASK:
        return parse_field_mask(c, d, j, p);
    case WKT_WRAPPER:
        return parse_wrapper(c, d, j, p, depth);
    case WKT_NONE:
        break;
    }
    return parse_object(c, d, j, p, depth, false);
}

/* ---- printing ----------------------------------------------------------------------- */

static json_t *print_message(conv *c, const ProtobufCMessage *m, const struct path *p,
                             unsigned depth);
static int print_fields(conv *c, const ProtobufCMessage *m, const struct path *p,
                        unsigned depth, json_t *obj);

/* Whether f holds a value, decided as protobuf-c's packer decides it, so that the JSON and
 * the wire form of a message agree. */
static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const void *v = CMEMBER(m, f->offset);
    const void *q = CMEMBER(m, f->quantifier_offset);
    const void *ptr = is_pointer_type(f->type) ? *(const void *const *)v : NULL;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)q > 0;
    if (f->label == PROTOBUF_C_LABEL_REQUIRED)
        return true;
    if (is_oneof(f))
        return *(const uint32_t *)q == f->id &&
               (!is_pointer_type(f->type) || (ptr != NULL && ptr != f->default_value));
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
        return is_pointer_type(f->type) ? ptr != NULL && ptr != f->default_value
                                        : *(const protobuf_c_boolean *)q != 0;
    /* proto3 without presence: set when not zero */
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)v != 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)v != 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)v != 0;
    case PROTOBUF_C_TYPE_STRING:
        return ptr != NULL && *(const char *)ptr != '\0';
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)v)->len > 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return ptr != NULL;
    default:
        return *(const uint32_t *)v != 0;
    }
}

static json_t *print_float(float x)
{
    if (isnan(x))
        return json_string("NaN");
    if (isinf(x))
        return json_string(x < 0 ? "-Infinity" : "Infinity");
    /* The shortest of 6 to 9 significant digits that reads back as x, as protobuf's
     * printers write floats, rather than the widened double's 17 digits. */
    char buf[40];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)x);
        if ((float)strtod(buf, NULL) == x)
            break;
    }
    return json_real(strtod(buf, NULL));
}

static json_t *print_enum(conv *c, const ProtobufCEnumDescriptor *ed, int32_t v)
{
    if (c->opt->enums_as_ints)
        return json_integer(v);
    if (strcmp(ed->name, "google.protobuf.NullValue") == 0)
        return json_null();
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);
    return ev ? json_string(ev->name) : json_integer(v); /* unknown values stay numbers */
}

/* A message field that counts as present but has no message (a proto2 required one left
 * NULL) prints as the default instance, as protobuf-c packs it. */
static json_t *print_default_message(conv *c, const ProtobufCMessageDescriptor *d,
                                     const struct path *p, unsigned depth)
{
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (m == NULL) {
        fail_oom(c, p);
        return NULL;
    }
    protobuf_c_message_init(d, m);
    json_t *j = print_message(c, m, p, depth);
    free(m); /* an initialised message owns nothing */
    return j;
}

/* One value of f (singular, an element or a map value) at v. */
static json_t *print_value(conv *c, const ProtobufCFieldDescriptor *f, const void *v,
                           const struct path *p, unsigned depth)
{
    json_t *j = NULL;
    char buf[32];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        j = json_integer(*(const int32_t *)v);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        j = json_integer(*(const uint32_t *)v);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, sizeof buf, "%" PRId64, *(const int64_t *)v);
        j = json_string(buf);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, sizeof buf, "%" PRIu64, *(const uint64_t *)v);
        j = json_string(buf);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        j = print_float(*(const float *)v);
        break;
    case PROTOBUF_C_TYPE_DOUBLE: {
        double d = *(const double *)v;
        j = isnan(d) ? json_string("NaN")
            : isinf(d) ? json_string(d < 0 ? "-Infinity" : "Infinity")
                       : json_real(d);
        break;
    }
    case PROTOBUF_C_TYPE_BOOL:
        j = json_boolean(*(const protobuf_c_boolean *)v);
        break;
    case PROTOBUF_C_TYPE_ENUM:
        j = print_enum(c, f->descriptor, *(const int32_t *)v);
        break;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)v;
        if ((j = json_string(s ? s : "")) == NULL) {
            fail(c, p, false, "string is not valid UTF-8");
            return NULL;
        }
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = v;
        size_t len;
        char *text = base64_encode(bd->data, bd->len, &len);
        j = text ? json_stringn(text, len) : NULL;
        free(text);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)v;
        return m ? print_message(c, m, p, depth + 1)
                 : print_default_message(c, f->descriptor, p, depth + 1);
    }
    }
    if (j == NULL)
        fail_oom(c, p);
    return j;
}

static json_t *print_repeated(conv *c, const ProtobufCMessage *m,
                              const ProtobufCFieldDescriptor *f, const struct path *p,
                              unsigned depth)
{
    size_t n = *(const size_t *)CMEMBER(m, f->quantifier_offset), size = value_size(f->type);
    const char *array = *(void *const *)CMEMBER(m, f->offset);
    json_t *out = json_array();
    if (out == NULL) {
        fail_oom(c, p);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        struct path ep = {p, PATH_INDEX, NULL, i};
        json_t *e = print_value(c, f, array + i * size, &ep, depth);
        if (e == NULL || json_array_append_new(out, e) < 0) {
            fail_oom(c, &ep);
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

static const char *map_key_text(const ProtobufCFieldDescriptor *kf, const void *v, char *buf,
                                size_t size)
{
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)v;
        return s ? s : "";
    }
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)v ? "true" : "false";
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        snprintf(buf, size, "%" PRId32, *(const int32_t *)v);
        return buf;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        snprintf(buf, size, "%" PRIu32, *(const uint32_t *)v);
        return buf;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, size, "%" PRId64, *(const int64_t *)v);
        return buf;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, size, "%" PRIu64, *(const uint64_t *)v);
        return buf;
    default:
        return NULL;
    }
}

/* Entries print in their order; a key given twice keeps its last value, as on the wire. */
static json_t *print_map(conv *c, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                         const struct path *p, unsigned depth)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    size_t n = *(const size_t *)CMEMBER(m, f->quantifier_offset);
    ProtobufCMessage *const *entries = *(ProtobufCMessage *const *const *)CMEMBER(m, f->offset);
    json_t *out = json_object();
    if (out == NULL) {
        fail_oom(c, p);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (entries[i] == NULL)
            continue;
        char buf[32];
        const char *key = map_key_text(kf, CMEMBER(entries[i], kf->offset), buf, sizeof buf);
        if (key == NULL) {
            fail(c, p, false, "unsupported map key type");
            goto fail;
        }
        struct path kp = {p, PATH_KEY, key, 0};
        json_t *v = print_value(c, vf, CMEMBER(entries[i], vf->offset), &kp, depth);
        if (v == NULL)
            goto fail;
        if (json_object_set_new(out, key, v) < 0) {
            fail(c, &kp, false, "map key is not valid UTF-8");
            goto fail;
        }
    }
    return out;

fail:
    json_decref(out);
    return NULL;
}

/* Adds the members of a regular message to obj, in field-number order. */
static int print_fields(conv *c, const ProtobufCMessage *m, const struct path *p,
                        unsigned depth, json_t *obj)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        bool present = field_present(m, f);
        /* emit_defaults covers the fields without presence: proto3 scalars and repeated. */
        bool no_presence = f->label == PROTOBUF_C_LABEL_REPEATED ||
                           (f->label == PROTOBUF_C_LABEL_NONE && !is_oneof(f) &&
                            f->type != PROTOBUF_C_TYPE_MESSAGE);
        if (!present && !(c->opt->emit_defaults && no_presence))
            continue;

        char small[128], *heap = NULL;
        const char *name = f->name;
        if (!c->opt->original_names) {
            size_t len = strlen(f->name);
            char *buf = len < sizeof small ? small : (heap = malloc(len + 1));
            if (buf == NULL) {
                fail_oom(c, p);
                return -1;
            }
            json_name_write(f->name, buf);
            name = buf;
        }
        struct path fp = {p, PATH_FIELD, name, 0};
        json_t *v;
        if (f->label != PROTOBUF_C_LABEL_REPEATED)
            v = print_value(c, f, CMEMBER(m, f->offset), &fp, depth);
        else if (is_map(d, f))
            v = print_map(c, m, f, &fp, depth);
        else
            v = print_repeated(c, m, f, &fp, depth);
        int r = v != NULL && json_object_set_new(obj, name, v) == 0 ? 0 : -1;
        if (r < 0)
            fail_oom(c, &fp);
        free(heap);
        if (r < 0)
            return -1;
    }
    return 0;
}

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

static json_t *print_struct_kind(conv *c, enum wkt kind, const ProtobufCMessage *m,
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
        fail(c, p, false, "nesting deeper than %u levels", c->max_depth);
        return NULL;
    }
    const char *why = "out of memory";
    json_t *j = pbvalue_to_json(v, &why);
    if (j == NULL)
        fail(c, p, false, "%s", why);
    return j;
}

static json_t *print_any(conv *c, const ProtobufCMessage *m, const struct path *p,
                         unsigned depth)
{
    const Google__Protobuf__Any *any = (const Google__Protobuf__Any *)m;
    const char *url = any->type_url ? any->type_url : "";
    if (*url == '\0' && any->value.len == 0)
        return json_object();
    const ProtobufCMessageDescriptor *d = any_type(c->opt, url);
    if (d == NULL) {
        char *q = quote(url, strlen(url));
        fail(c, p, false, "cannot print an Any of unknown type %s", q ? q : "");
        free(q);
        return NULL;
    }
    if (depth + 1 > c->max_depth) {
        fail(c, p, false, "nesting deeper than %u levels", c->max_depth);
        return NULL;
    }
    ProtobufCMessage *inner = protobuf_c_message_unpack(d, NULL, any->value.len, any->value.data);
    if (inner == NULL) {
        fail(c, p, false, "the value of this Any is not a valid %s", d->name);
        return NULL;
    }
    json_t *out = json_object(), *t = json_string(url);
    if (out == NULL || t == NULL) {
        if (t == NULL)
            fail(c, p, false, "type URL is not valid UTF-8");
        json_decref(t);
        goto fail;
    }
    if (json_object_set_new(out, "@type", t) < 0) { /* "@type" first, as protobuf prints it */
        fail_oom(c, p);
        goto fail;
    }
    if (wkt_of(d) != WKT_NONE) {
        struct path vp = {p, PATH_FIELD, "value", 0};
        json_t *v = print_message(c, inner, &vp, depth + 1);
        if (v == NULL || json_object_set_new(out, "value", v) < 0) {
            fail_oom(c, &vp);
            goto fail;
        }
    } else if (print_fields(c, inner, p, depth + 1, out) < 0) {
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
static json_t *print_field_mask(conv *c, const ProtobufCMessage *m, const struct path *p)
{
    const ProtobufCFieldDescriptor *f = &m->descriptor->fields[0];
    size_t n = *(const size_t *)CMEMBER(m, f->quantifier_offset);
    char *const *paths = *(char *const *const *)CMEMBER(m, f->offset);
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    if (out == NULL) {
        fail_oom(c, p);
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
        fail_oom(c, p);
    } else if (bad != NULL) {
        char *q = quote(bad, strlen(bad));
        fail(c, p, false, "field mask path %s has no lowerCamelCase form", q ? q : "");
        free(q);
    } else if ((j = json_stringn(buf, size)) == NULL) {
        fail(c, p, false, "field mask is not valid UTF-8");
    }
    free(buf);
    return j;
}

static json_t *print_message(conv *c, const ProtobufCMessage *m, const struct path *p,
                             unsigned depth)
{
    if (depth > c->max_depth) {
        fail(c, p, false, "nesting deeper than %u levels", c->max_depth);
        return NULL;
    }
    const ProtobufCMessageDescriptor *d = m->descriptor;
    char buf[64]; /* a Duration or Timestamp text */
    enum wkt kind = wkt_of(d);
    switch (kind) {
    case WKT_DURATION: {
        const Google__Protobuf__Duration *du = (const Google__Protobuf__Duration *)m;
        if (duration_to_text(du->seconds, du->nanos, buf, sizeof buf) < 0) {
            fail(c, p, false, "invalid Duration (seconds %" PRId64 ", nanos %" PRId32 ")",
                 du->seconds, du->nanos);
            return NULL;
        }
        break;
    }
    case WKT_TIMESTAMP: {
        const Google__Protobuf__Timestamp *ts = (const Google__Protobuf__Timestamp *)m;
        if (timestamp_to_text(ts->seconds, ts->nanos, buf, sizeof buf) < 0) {
            fail(c, p, false, "invalid Timestamp (seconds %" PRId64 ", nanos %" PRId32 ")",
                 ts->seconds, ts->nanos);
            return NULL;
        }
        break;
    }
    case WKT_VALUE:
    case WKT_STRUCT:
    case WKT_LIST_VALUE:
        return print_struct_kind(c, kind, m, p, depth);
    case WKT_ANY:
        return print_any(c, m, p, depth);
    case WKT_FIELD_MASK:
        return print_field_mask(c, m, p);
    case WKT_WRAPPER:
        return print_value(c, &d->fields[0], CMEMBER(m, d->fields[0].offset), p, depth);
    case WKT_NONE: {
        json_t *obj = json_object();
        if (obj == NULL) {
            fail_oom(c, p);
            return NULL;
        }
        if (print_fields(c, m, p, depth, obj) < 0) {
            json_decref(obj);
            return NULL;
        }
        return obj;
    }
    }
    json_t *j = json_string(buf);
    if (j == NULL)
        fail_oom(c, p);
    return j;
}

/* ---- positions in the text ---------------------------------------------------------- */

/* jansson keeps no position per value, so pbjson_parse_text follows the failing path
 * through the text again. The text is known to be valid JSON (jansson just parsed it), which
 * keeps this scanner small; it still checks every bound. */
typedef struct scanner {
    const char *s;
    size_t len, i;
} scanner;

static int peek(const scanner *sc)
{
    return sc->i < sc->len ? (unsigned char)sc->s[sc->i] : -1;
}

static void scan_blank(scanner *sc)
{
    while (peek(sc) == ' ' || peek(sc) == '\t' || peek(sc) == '\n' || peek(sc) == '\r')
        sc->i++;
}

static void scan_string(scanner *sc)
{
    for (sc->i++; sc->i < sc->len && sc->s[sc->i] != '"'; sc->i++)
        if (sc->s[sc->i] == '\\')
            sc->i++;
    sc->i++;
}

/* Skips one value. Containers are skipped by counting brackets outside strings, so deep
 * input costs no recursion. */
static void scan_value(scanner *sc)
{
    size_t open = 0;
    do {
        int ch = peek(sc);
        switch (ch) {
        case -1:
            return;
        case '"':
            scan_string(sc);
            break;
        case '{':
        case '[':
            open++;
            sc->i++;
            break;
        case '}':
        case ']':
            open--;
            sc->i++;
            break;
        case ',':
        case ':':
        case ' ':
        case '\t':
        case '\r':
        case '\n':
            sc->i++;
            break;
        default: /* a number or a literal */
            while (peek(sc) >= 0 && strchr(",]} \t\r\n", peek(sc)) == NULL)
                sc->i++;
        }
    } while (open > 0);
}

static unsigned hex4(const char *s)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char ch = s[k];
        v = v << 4 | (unsigned)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
    }
    return v;
}

/* Decodes the escape at sc (a backslash) into UTF-8 in out[4]; returns its length. */
static size_t scan_escape(scanner *sc, char *out)
{
    const char *s = sc->s;
    if (sc->i + 1 >= sc->len) {
        sc->i = sc->len;
        return 0;
    }
    char e = s[sc->i + 1];
    sc->i += 2;
    switch (e) {
    case 'b': out[0] = '\b'; return 1;
    case 'f': out[0] = '\f'; return 1;
    case 'n': out[0] = '\n'; return 1;
    case 'r': out[0] = '\r'; return 1;
    case 't': out[0] = '\t'; return 1;
    case 'u': break;
    default: out[0] = e; return 1;
    }
    if (sc->len - sc->i < 4) {
        sc->i = sc->len;
        return 0;
    }
    unsigned cp = hex4(s + sc->i);
    sc->i += 4;
    if (cp >= 0xD800 && cp < 0xDC00 && sc->len - sc->i >= 6 && s[sc->i] == '\\' &&
        s[sc->i + 1] == 'u') {
        unsigned lo = hex4(s + sc->i + 2);
        if (lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            sc->i += 6;
        }
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reads the member name at sc and tells whether it decodes to want. */
static bool scan_key_is(scanner *sc, const char *want)
{
    size_t w = 0;
    bool same = true;
    for (sc->i++; sc->i < sc->len && sc->s[sc->i] != '"';) {
        char buf[4];
        size_t n;
        if (sc->s[sc->i] == '\\') {
            n = scan_escape(sc, buf);
        } else {
            buf[0] = sc->s[sc->i++];
            n = 1;
        }
        for (size_t k = 0; same && k < n; k++)
            same = want[w + k] == buf[k]; /* stops at want's NUL: no read past it */
        w += n;
    }
    sc->i++;
    return same && want[w] == '\0';
}

/* Byte offset of the value at the end of steps (or of its member name when at_key). */
static bool locate(const char *text, size_t len, const struct path *steps, size_t n,
                   bool at_key, size_t *offset)
{
    scanner sc = {text, len, 0};
    scan_blank(&sc);
    for (size_t k = 0; k < n; k++) {
        const struct path *st = &steps[k];
        if (st->kind == PATH_INDEX) {
            if (peek(&sc) != '[')
                return false;
            sc.i++;
            for (size_t e = 0;; e++) {
                scan_blank(&sc);
                if (peek(&sc) < 0 || peek(&sc) == ']')
                    return false;
                if (e == st->index)
                    break;
                scan_value(&sc);
                scan_blank(&sc);
                if (peek(&sc) == ',')
                    sc.i++;
            }
            continue;
        }
        if (peek(&sc) != '{')
            return false;
        sc.i++;
        for (;;) {
            scan_blank(&sc);
            if (peek(&sc) != '"')
                return false;
            size_t key_at = sc.i;
            bool match = scan_key_is(&sc, st->key);
            scan_blank(&sc);
            if (peek(&sc) != ':')
                return false;
            sc.i++;
            scan_blank(&sc);
            if (match && k + 1 == n && at_key) {
                *offset = key_at;
                return true;
            }
            if (match)
                break;
            scan_value(&sc);
            scan_blank(&sc);
            if (peek(&sc) == ',')
                sc.i++;
        }
    }
    *offset = sc.i;
    return sc.i <= len;
}

static void position_at(const char *text, size_t offset, pbjson_position *pos)
{
    pos->line = 1;
    pos->column = 1;
    pos->offset = offset;
    for (size_t i = 0; i < offset; i++) {
        if (text[i] == '\n') {
            pos->line++;
            pos->column = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            pos->column++; /* characters, not bytes: the first byte of each UTF-8 sequence */
        }
    }
}

/* ---- entry points ------------------------------------------------------------------- */

static void conv_init(conv *c, const pbjson_options *opt)
{
    static const pbjson_options defaults; /* all zero: the mapping's defaults */
    memset(c, 0, sizeof *c);
    c->opt = opt ? opt : &defaults;
    c->max_depth = c->opt->max_depth ? c->opt->max_depth : PBJSON_DEFAULT_MAX_DEPTH;
}

/* Hands the error to the caller (or drops it) and frees the rest of c. */
static void conv_finish(conv *c, char **err)
{
    if (err != NULL)
        *err = c->err ? c->err : strdup("out of memory");
    else
        free(c->err);
    free(c->err_steps);
}

ProtobufCMessage *pbjson_parse(const ProtobufCMessageDescriptor *desc, const json_t *json,
                               const pbjson_options *opt, char **err)
{
    if (err != NULL)
        *err = NULL;
    conv c;
    conv_init(&c, opt);
    ProtobufCMessage *m = parse_message(&c, desc, json, NULL, 1);
    if (m != NULL) {
        free(c.err_steps);
        return m;
    }
    conv_finish(&c, err);
    return NULL;
}

ProtobufCMessage *pbjson_parse_text(const ProtobufCMessageDescriptor *desc, const char *text,
                                    size_t len, const pbjson_options *opt, char **err,
                                    pbjson_position *pos)
{
    if (err != NULL)
        *err = NULL;
    if (pos != NULL)
        memset(pos, 0, sizeof *pos);
    json_error_t jerr;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL) {
        if (err != NULL && asprintf(err, "invalid JSON: %s", jerr.text) < 0)
            *err = NULL;
        if (pos != NULL) {
            pos->line = jerr.line > 0 ? jerr.line : 0;
            pos->column = jerr.column > 0 ? jerr.column : 0;
            pos->offset = jerr.position > 0 ? (size_t)jerr.position : 0;
        }
        return NULL;
    }
    conv c;
    conv_init(&c, opt);
    ProtobufCMessage *m = parse_message(&c, desc, j, NULL, 1);
    if (m == NULL) {
        size_t offset;
        if (pos != NULL && c.err != NULL &&
            locate(text, len, c.err_steps, c.n_err_steps, c.err_at_key, &offset))
            position_at(text, offset, pos);
        conv_finish(&c, err);
    } else {
        free(c.err_steps);
    }
    json_decref(j); /* after locate: the error path borrows its keys */
    return m;
}

json_t *pbjson_print(const ProtobufCMessage *msg, const pbjson_options *opt, char **err)
{
    if (err != NULL)
        *err = NULL;
    conv c;
    conv_init(&c, opt);
    json_t *j = print_message(&c, msg, NULL, 1);
    if (j != NULL) {
        free(c.err_steps);
        return j;
    }
    conv_finish(&c, err);
    return NULL;
}

char *pbjson_print_text(const ProtobufCMessage *msg, const pbjson_options *opt,
                        size_t json_flags, char **err)
{
    json_t *j = pbjson_print(msg, opt, err);
    if (j == NULL)
        return NULL;
    char *text = json_dumps(j, json_flags | JSON_ENCODE_ANY);
    json_decref(j);
    if (text == NULL && err != NULL)
        *err = strdup("out of memory");
    return text;
}
