/* The protobuf JSON mapping, JSON -> message: scalars, repeated fields, maps and regular
 * messages; the well-known types are handed to pbjson_wkt.c. */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/struct.pb-c.h"
#include "pbjson_int.h"

/* ---- parsing: scalars --------------------------------------------------------------- */

/* Whether JSON null is a value of f (google.protobuf.Value, NullValue) rather than "unset". */
static bool takes_null(const ProtobufCFieldDescriptor *f)
{
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return f->descriptor == &google__protobuf__value__descriptor;
    if (f->type == PROTOBUF_C_TYPE_ENUM)
        return strcmp(((const ProtobufCEnumDescriptor *)f->descriptor)->name,
                      "google.protobuf.NullValue") == 0;
    return false;
}

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
        if (!pbjson__is_digit(s[i]))
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
    else if (i < len && pbjson__is_digit(s[i]))
        while (i < len && pbjson__is_digit(s[i]))
            i++;
    else
        return false;
    if (i < len && s[i] == '.') {
        if (++i >= len || !pbjson__is_digit(s[i]))
            return false;
        while (i < len && pbjson__is_digit(s[i]))
            i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        if (++i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= len || !pbjson__is_digit(s[i]))
            return false;
        while (i < len && pbjson__is_digit(s[i]))
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
        pbjson__fail(c, p, false, "%s%" PRIu64 " is out of range for %s", neg ? "-" : "", mag,
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
            pbjson__fail(c, p, false, "%.17g is out of range for %s", d, int_type_name(t));
            return FAILED;
        }
        mag = (uint64_t)a;
        if ((double)mag != a) {
            pbjson__fail(c, p, false, "expected an integer, got %.17g", d);
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
        char *q = pbjson__quote(s, len);
        if (r == -2)
            pbjson__fail(c, p, false, "%s is out of range for %s", q ? q : "", int_type_name(t));
        else if (is_json_number(s, len))
            pbjson__fail(c, p, false, "expected an integer, got %s", q ? q : "");
        else
            pbjson__fail(c, p, false, "expected a number, got string %s", q ? q : "");
        free(q);
        return FAILED;
    }
    default:
        pbjson__fail_type(c, p, "a number", j);
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
                char *q = pbjson__quote(s, len);
                pbjson__fail(c, p, false, "%s is out of range for %s", q ? q : "",
                             single ? "float" : "double");
                free(q);
                return FAILED;
            }
        } else {
            pbjson__fail_type(c, p, "a number", j);
            return FAILED;
        }
    } else {
        pbjson__fail_type(c, p, "a number", j);
        return FAILED;
    }
    if (!single) {
        *(double *)dst = d;
        return PARSED;
    }
    /* Out of range is what overflows as a float: printers write FLT_MAX as 3.4028235e+38,
     * a little above it as a double, which must read back as FLT_MAX. */
    if (isfinite(d) && isinf((float)d)) {
        pbjson__fail(c, p, false, "%.17g is out of range for float", d);
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
        char *q = pbjson__quote(s, json_string_length(j));
        pbjson__fail(c, p, false, "unknown value %s for enum %s", q ? q : "", ed->name);
        free(q);
        return FAILED;
    }
    if (json_is_null(j)) { /* only reached for google.protobuf.NullValue */
        *(int32_t *)dst = 0;
        return PARSED;
    }
    if (json_is_number(j))
        return parse_int(c, p, j, PROTOBUF_C_TYPE_ENUM, dst);
    pbjson__fail_type(c, p, "an enum name or number", j);
    return FAILED;
}

static int parse_string(conv *c, const struct path *p, const json_t *j, char **dst)
{
    if (!json_is_string(j)) {
        pbjson__fail_type(c, p, "a string", j);
        return FAILED;
    }
    const char *s = json_string_value(j);
    size_t len = json_string_length(j);
    if (memchr(s, '\0', len) != NULL) {
        pbjson__fail(c, p, false, "strings with a NUL character are not supported");
        return FAILED;
    }
    if ((*dst = strndup(s, len)) == NULL) {
        pbjson__fail_oom(c, p);
        return FAILED;
    }
    return PARSED;
}

/* ---- parsing: messages -------------------------------------------------------------- */

ProtobufCMessage *pbjson__new_message(conv *c, const struct path *p,
                                      const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (m == NULL) {
        pbjson__fail_oom(c, p);
        return NULL;
    }
    protobuf_c_message_init(d, m);
    return m;
}

/* Converts j to one value of f (a singular field, an element of a repeated field or a map
 * entry's value) at dst. Owned results (strings, bytes, messages) are stored only once
 * complete, so that dst never holds a half-built value free_unpacked would trip on. */
int pbjson__parse_value(conv *c, const ProtobufCFieldDescriptor *f, const json_t *j,
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
            pbjson__fail_type(c, p, "true or false", j);
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
            pbjson__fail_type(c, p, "a base64 string", j);
            return FAILED;
        }
        return pbjson__parse_base64(c, p, json_string_value(j), json_string_length(j), dst);
    case PROTOBUF_C_TYPE_MESSAGE: {
        ProtobufCMessage *m = pbjson__parse_message(c, f->descriptor, j, p, depth + 1);
        if (m == NULL)
            return FAILED;
        *(ProtobufCMessage **)dst = m;
        return PARSED;
    }
    }
    pbjson__fail(c, p, false, "unsupported field type %d", (int)f->type);
    return FAILED;
}

/* Sets what says f holds a value: the oneof case, or has_ of a proto2 optional scalar
 * (strings and messages are present when their pointer is set). */
void pbjson__mark_present(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    if (pbjson__is_oneof(f))
        *(uint32_t *)MEMBER(msg, f->quantifier_offset) = f->id;
    else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && !pbjson__is_pointer_type(f->type))
        *(protobuf_c_boolean *)MEMBER(msg, f->quantifier_offset) = 1;
}

/* The array is attached to msg before it is filled and the count raised per element, so
 * that protobuf_c_message_free_unpacked(msg) frees exactly what was converted so far. */
static int parse_repeated(conv *c, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                          const json_t *j, const struct path *p, unsigned depth)
{
    if (!json_is_array(j)) {
        pbjson__fail_type(c, p, "an array", j);
        return -1;
    }
    size_t n = json_array_size(j), size = pbjson__value_size(f->type);
    size_t *count = MEMBER(msg, f->quantifier_offset);
    void **array = MEMBER(msg, f->offset);
    if (n == 0)
        return 0;
    if ((*array = calloc(n, size)) == NULL) {
        pbjson__fail_oom(c, p);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(j, i);
        struct path ep = {p, PATH_INDEX, NULL, i};
        if (json_is_null(e) && !takes_null(f)) {
            pbjson__fail(c, &ep, false, "null is not allowed in a repeated field");
            return -1;
        }
        int r = pbjson__parse_value(c, f, e, &ep, depth, (char *)*array + *count * size);
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
            pbjson__fail_oom(c, p);
            return FAILED;
        }
        return PARSED;
    case PROTOBUF_C_TYPE_BOOL:
        if (strcmp(key, "true") != 0 && strcmp(key, "false") != 0) {
            pbjson__fail(c, p, true, "expected a bool map key, \"true\" or \"false\"");
            return FAILED;
        }
        *(protobuf_c_boolean *)dst = key[0] == 't';
        return PARSED;
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
    case PROTOBUF_C_TYPE_ENUM:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        pbjson__fail(c, p, true, "unsupported map key type");
        return FAILED;
    default: {
        bool neg;
        uint64_t mag;
        int r = decimal_from_text(key, strlen(key), &neg, &mag);
        if (r == -1) {
            pbjson__fail(c, p, true, "expected an integer map key");
            return FAILED;
        }
        if (r == -2) {
            pbjson__fail(c, p, true, "map key out of range for %s", int_type_name(kf->type));
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
        pbjson__fail_type(c, p, "an object", j);
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
        pbjson__fail_oom(c, p);
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        struct path kp = {p, PATH_KEY, key, 0};
        ProtobufCMessage *entry = pbjson__new_message(c, &kp, ed);
        if (entry == NULL)
            return -1;
        (*entries)[(*count)++] = entry;
        if (parse_map_key(c, kf, key, &kp, MEMBER(entry, kf->offset)) == FAILED)
            return -1;
        pbjson__mark_present(entry, kf);
        if (json_is_null(v) && !takes_null(vf)) {
            pbjson__fail(c, &kp, false, "map values cannot be null");
            return -1;
        }
        int r = pbjson__parse_value(c, vf, v, &kp, depth, MEMBER(entry, vf->offset));
        if (r == FAILED)
            return -1;
        if (r == SKIPPED) { /* an unknown enum name, ignored: the entry goes */
            protobuf_c_message_free_unpacked(entry, NULL);
            (*count)--;
            continue;
        }
        pbjson__mark_present(entry, vf);
    }
    return 0;
}

/* One member of a JSON object. null means the default, i.e. the field stays unset, except
 * for google.protobuf.Value (a null_value) and google.protobuf.NullValue. */
static int parse_field(conv *c, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                       const json_t *j, const struct path *p, unsigned depth)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return pbjson__is_map(msg->descriptor, f) ? parse_map(c, msg, f, j, p, depth)
                                          : parse_repeated(c, msg, f, j, p, depth);
    int r = pbjson__parse_value(c, f, j, p, depth, MEMBER(msg, f->offset));
    if (r == PARSED)
        pbjson__mark_present(msg, f);
    return r == FAILED ? -1 : 0;
}

ProtobufCMessage *pbjson__parse_object(conv *c, const ProtobufCMessageDescriptor *d,
                                       const json_t *j, const struct path *p, unsigned depth,
                                       bool in_any)
{
    if (!json_is_object(j)) {
        pbjson__fail_type(c, p, "an object", j);
        return NULL;
    }
    /* The member name that gave each field: a field may be named two ways, once. */
    const char **given = calloc(d->n_fields ? d->n_fields : 1, sizeof *given);
    ProtobufCMessage *msg = given ? pbjson__new_message(c, p, d) : NULL;
    if (msg == NULL) {
        pbjson__fail_oom(c, p);
        goto fail;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        struct path fp = {p, PATH_FIELD, key, 0};
        if (in_any && strcmp(key, "@type") == 0)
            continue;
        const ProtobufCFieldDescriptor *f = pbjson__find_field(d, key);
        if (f == NULL) {
            if (c->opt->ignore_unknown_fields)
                continue;
            pbjson__fail(c, &fp, true, "unknown field in %s", d->name);
            goto fail;
        }
        size_t i = (size_t)(f - d->fields);
        if (given[i] != NULL) {
            pbjson__fail(c, &fp, true, "field already given as \"%s\"", given[i]);
            goto fail;
        }
        given[i] = key;
        if (json_is_null(v) && !takes_null(f))
            continue;
        if (pbjson__is_oneof(f)) {
            uint32_t set = *(const uint32_t *)MEMBER(msg, f->quantifier_offset);
            if (set != 0) {
                const ProtobufCFieldDescriptor *other = protobuf_c_message_descriptor_get_field(d, set);
                const char *other_key = other ? given[other - d->fields] : NULL;
                pbjson__fail(c, &fp, true,
                             "cannot be set together with \"%s\" (members of one oneof)",
                             other_key ? other_key : "?");
                goto fail;
            }
        }
        if (parse_field(c, msg, f, v, &fp, depth) < 0)
            goto fail;
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        if (d->fields[i].label == PROTOBUF_C_LABEL_REQUIRED && given[i] == NULL) {
            pbjson__fail(c, p, false, "missing required field \"%s\" of %s", d->fields[i].name,
                         d->name);
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

ProtobufCMessage *pbjson__parse_message(conv *c, const ProtobufCMessageDescriptor *d,
                                        const json_t *j, const struct path *p, unsigned depth)
{
    if (depth > c->max_depth) {
        pbjson__fail(c, p, false, "nesting deeper than %u levels", c->max_depth);
        return NULL;
    }
    enum wkt kind = pbjson__wkt_of(d);
    switch (kind) {
    case WKT_ANY:
        return pbjson__parse_any(c, j, p, depth);
    case WKT_DURATION:
        return pbjson__parse_duration(c, j, p);
    case WKT_TIMESTAMP:
        return pbjson__parse_timestamp(c, j, p);
    case WKT_VALUE:
    case WKT_STRUCT:
    case WKT_LIST_VALUE:
        return pbjson__parse_struct_kind(c, kind, j, p, depth);
    case WKT_FIELD_MASK:
        return pbjson__parse_field_mask(c, d, j, p);
    case WKT_WRAPPER:
        return pbjson__parse_wrapper(c, d, j, p, depth);
    case WKT_NONE:
        break;
    }
    return pbjson__parse_object(c, d, j, p, depth, false);
}
