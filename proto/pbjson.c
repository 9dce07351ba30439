/* The protobuf JSON mapping over protobuf-c descriptors: the entry points, and what both
 * directions share: the field model, recognising the well-known types, the conversion state
 * and its errors, which carry the JSON path (and a line and column when parsing text).
 *
 * The rest of the module: pbjson_parse.c (JSON -> message), pbjson_print.c (message ->
 * JSON), pbjson_wkt.c (the well-known types' special forms), pbjson_base64.c (bytes) and
 * pbjson_position.c (where in the text an error is); pbjson_int.h is what they share. */
#include "pbjson.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "pbjson_int.h"

/* Error messages quote input; a long value is cut so that the message stays one line. */
#define QUOTE_MAX 64

/* ---- the field model ---------------------------------------------------------------- */

/* Size of one value in a protobuf-c struct or repeated array. */
size_t pbjson__value_size(ProtobufCType type)
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

bool pbjson__is_pointer_type(ProtobufCType type)
{
    return type == PROTOBUF_C_TYPE_STRING || type == PROTOBUF_C_TYPE_MESSAGE;
}

bool pbjson__is_oneof(const ProtobufCFieldDescriptor *f)
{
    return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
}

/* A protobuf-c map field is a repeated field of entry messages; the descriptor does not say
 * which repeated fields are maps, so this recognises the entry message protoc generates: a
 * nested type named after the field (MapEntryName: "labels" -> "LabelsEntry") holding
 * exactly key = 1 and value = 2. */
bool pbjson__is_map(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f)
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
void pbjson__json_name_write(const char *name, char *out)
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

const ProtobufCFieldDescriptor *pbjson__find_field(const ProtobufCMessageDescriptor *d,
                                                   const char *key)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);
    for (unsigned i = 0; f == NULL && i < d->n_fields; i++)
        if (json_name_matches(d->fields[i].name, key))
            f = &d->fields[i];
    return f;
}

static const char *const wrapper_names[] = {
    "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",   "google.protobuf.StringValue", "google.protobuf.BytesValue",
};

/* The types this library generates are recognised by descriptor; FieldMask and the wrappers
 * are not generated here, so a program that links them is recognised by name (and shape). */
enum wkt pbjson__wkt_of(const ProtobufCMessageDescriptor *d)
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

/* ---- paths and errors --------------------------------------------------------------- */

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
char *pbjson__quote(const char *s, size_t len)
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
void pbjson__fail(conv *c, const struct path *p, bool at_key, const char *fmt, ...)
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

void pbjson__fail_oom(conv *c, const struct path *p)
{
    pbjson__fail(c, p, false, "out of memory");
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
void pbjson__fail_type(conv *c, const struct path *p, const char *expected, const json_t *j)
{
    if (json_is_string(j)) {
        char *q = pbjson__quote(json_string_value(j), json_string_length(j));
        pbjson__fail(c, p, false, "expected %s, got string %s", expected, q ? q : "");
        free(q);
    } else {
        pbjson__fail(c, p, false, "expected %s, got %s", expected, json_kind(j));
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
    ProtobufCMessage *m = pbjson__parse_message(&c, desc, json, NULL, 1);
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
    ProtobufCMessage *m = pbjson__parse_message(&c, desc, j, NULL, 1);
    if (m == NULL) {
        size_t offset;
        if (pos != NULL && c.err != NULL &&
            pbjson__locate(text, len, c.err_steps, c.n_err_steps, c.err_at_key, &offset))
            pbjson__position_at(text, offset, pos);
        conv_finish(&c, err);
    } else {
        free(c.err_steps);
    }
    json_decref(j); /* after pbjson__locate: the error path borrows its keys */
    return m;
}

json_t *pbjson_print(const ProtobufCMessage *msg, const pbjson_options *opt, char **err)
{
    if (err != NULL)
        *err = NULL;
    conv c;
    conv_init(&c, opt);
    json_t *j = pbjson__print_message(&c, msg, NULL, 1);
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
