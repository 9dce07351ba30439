/* The protobuf JSON mapping, message -> JSON: scalars, repeated fields, maps and regular
 * messages, members in field-number order; the well-known types are handed to pbjson_wkt.c. */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "pbjson_int.h"

/* Whether f holds a value, decided as protobuf-c's packer decides it, so that the JSON and
 * the wire form of a message agree. */
static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const void *v = CMEMBER(m, f->offset);
    const void *q = CMEMBER(m, f->quantifier_offset);
    const void *ptr = pbjson__is_pointer_type(f->type) ? *(const void *const *)v : NULL;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)q > 0;
    if (f->label == PROTOBUF_C_LABEL_REQUIRED)
        return true;
    if (pbjson__is_oneof(f))
        return *(const uint32_t *)q == f->id &&
               (!pbjson__is_pointer_type(f->type) || (ptr != NULL && ptr != f->default_value));
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
        return pbjson__is_pointer_type(f->type) ? ptr != NULL && ptr != f->default_value
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
        pbjson__fail_oom(c, p);
        return NULL;
    }
    protobuf_c_message_init(d, m);
    json_t *j = pbjson__print_message(c, m, p, depth);
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
            pbjson__fail(c, p, false, "string is not valid UTF-8");
            return NULL;
        }
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = v;
        size_t len;
        char *text = pbjson__base64_encode(bd->data, bd->len, &len);
        j = text ? json_stringn(text, len) : NULL;
        free(text);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)v;
        return m ? pbjson__print_message(c, m, p, depth + 1)
                 : print_default_message(c, f->descriptor, p, depth + 1);
    }
    }
    if (j == NULL)
        pbjson__fail_oom(c, p);
    return j;
}

static json_t *print_repeated(conv *c, const ProtobufCMessage *m,
                              const ProtobufCFieldDescriptor *f, const struct path *p,
                              unsigned depth)
{
    size_t n = *(const size_t *)CMEMBER(m, f->quantifier_offset),
           size = pbjson__value_size(f->type);
    const char *array = *(void *const *)CMEMBER(m, f->offset);
    json_t *out = json_array();
    if (out == NULL) {
        pbjson__fail_oom(c, p);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        struct path ep = {p, PATH_INDEX, NULL, i};
        json_t *e = print_value(c, f, array + i * size, &ep, depth);
        if (e == NULL || json_array_append_new(out, e) < 0) {
            pbjson__fail_oom(c, &ep);
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
        pbjson__fail_oom(c, p);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (entries[i] == NULL)
            continue;
        char buf[32];
        const char *key = map_key_text(kf, CMEMBER(entries[i], kf->offset), buf, sizeof buf);
        if (key == NULL) {
            pbjson__fail(c, p, false, "unsupported map key type");
            goto fail;
        }
        struct path kp = {p, PATH_KEY, key, 0};
        json_t *v = print_value(c, vf, CMEMBER(entries[i], vf->offset), &kp, depth);
        if (v == NULL)
            goto fail;
        if (json_object_set_new(out, key, v) < 0) {
            pbjson__fail(c, &kp, false, "map key is not valid UTF-8");
            goto fail;
        }
    }
    return out;

fail:
    json_decref(out);
    return NULL;
}

/* Adds the members of a regular message to obj, in field-number order. */
int pbjson__print_fields(conv *c, const ProtobufCMessage *m, const struct path *p,
                         unsigned depth, json_t *obj)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        bool present = field_present(m, f);
        /* emit_defaults covers the fields without presence: proto3 scalars and repeated. */
        bool no_presence = f->label == PROTOBUF_C_LABEL_REPEATED ||
                           (f->label == PROTOBUF_C_LABEL_NONE && !pbjson__is_oneof(f) &&
                            f->type != PROTOBUF_C_TYPE_MESSAGE);
        if (!present && !(c->opt->emit_defaults && no_presence))
            continue;

        char small[128], *heap = NULL;
        const char *name = f->name;
        if (!c->opt->original_names) {
            size_t len = strlen(f->name);
            char *buf = len < sizeof small ? small : (heap = malloc(len + 1));
            if (buf == NULL) {
                pbjson__fail_oom(c, p);
                return -1;
            }
            pbjson__json_name_write(f->name, buf);
            name = buf;
        }
        struct path fp = {p, PATH_FIELD, name, 0};
        json_t *v;
        if (f->label != PROTOBUF_C_LABEL_REPEATED)
            v = print_value(c, f, CMEMBER(m, f->offset), &fp, depth);
        else if (pbjson__is_map(d, f))
            v = print_map(c, m, f, &fp, depth);
        else
            v = print_repeated(c, m, f, &fp, depth);
        int r = v != NULL && json_object_set_new(obj, name, v) == 0 ? 0 : -1;
        if (r < 0)
            pbjson__fail_oom(c, &fp);
        free(heap);
        if (r < 0)
            return -1;
    }
    return 0;
}

json_t *pbjson__print_message(conv *c, const ProtobufCMessage *m, const struct path *p,
                              unsigned depth)
{
    if (depth > c->max_depth) {
        pbjson__fail(c, p, false, "nesting deeper than %u levels", c->max_depth);
        return NULL;
    }
    const ProtobufCMessageDescriptor *d = m->descriptor;
    char buf[64]; /* a Duration or Timestamp text */
    enum wkt kind = pbjson__wkt_of(d);
    switch (kind) {
    case WKT_DURATION: {
        const Google__Protobuf__Duration *du = (const Google__Protobuf__Duration *)m;
        if (pbjson__duration_to_text(du->seconds, du->nanos, buf, sizeof buf) < 0) {
            pbjson__fail(c, p, false, "invalid Duration (seconds %" PRId64 ", nanos %" PRId32 ")",
                         du->seconds, du->nanos);
            return NULL;
        }
        break;
    }
    case WKT_TIMESTAMP: {
        const Google__Protobuf__Timestamp *ts = (const Google__Protobuf__Timestamp *)m;
        if (pbjson__timestamp_to_text(ts->seconds, ts->nanos, buf, sizeof buf) < 0) {
            pbjson__fail(c, p, false, "invalid Timestamp (seconds %" PRId64 ", nanos %" PRId32 ")",
                         ts->seconds, ts->nanos);
            return NULL;
        }
        break;
    }
    case WKT_VALUE:
    case WKT_STRUCT:
    case WKT_LIST_VALUE:
        return pbjson__print_struct_kind(c, kind, m, p, depth);
    case WKT_ANY:
        return pbjson__print_any(c, m, p, depth);
    case WKT_FIELD_MASK:
        return pbjson__print_field_mask(c, m, p);
    case WKT_WRAPPER:
        return print_value(c, &d->fields[0], CMEMBER(m, d->fields[0].offset), p, depth);
    case WKT_NONE: {
        json_t *obj = json_object();
        if (obj == NULL) {
            pbjson__fail_oom(c, p);
            return NULL;
        }
        if (pbjson__print_fields(c, m, p, depth, obj) < 0) {
            json_decref(obj);
            return NULL;
        }
        return obj;
    }
    }
    json_t *j = json_string(buf);
    if (j == NULL)
        pbjson__fail_oom(c, p);
    return j;
}
