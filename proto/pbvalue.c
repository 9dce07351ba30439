/* google.protobuf.Value <-> jansson, both directions, with a depth bound because both
 * directions take input from outside (clients' bodies, upstreams' responses). */
#include "pbvalue.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static json_t *to_json(const Google__Protobuf__Value *v, int depth, const char **why)
{
    if (depth > PBVALUE_MAX_DEPTH) {
        *why = "nested too deeply";
        return NULL;
    }
    switch (v->kind_case) {
    case GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE:
        return json_null();
    case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
        return json_boolean(v->bool_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
        return json_string(v->string_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE: {
        double d = v->number_value;
        if (!isfinite(d)) {
            *why = "NaN and infinities are not JSON";
            return NULL;
        }
        /* Range first, so that the cast is defined. (No floor(): batchproto does not link
         * libm, and -O0 builds would call it.) */
        if (fabs(d) <= 9007199254740992.0 && d == (double)(json_int_t)d)
            return json_integer((json_int_t)d);
        return json_real(d);
    }
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE: {
        json_t *obj = json_object();
        const Google__Protobuf__Struct *s = v->struct_value;
        for (size_t i = 0; obj && i < s->n_fields; i++) {
            const Google__Protobuf__Struct__FieldsEntry *e = s->fields[i];
            json_t *child = e->value ? to_json(e->value, depth + 1, why) : json_null();
            if (child == NULL || json_object_set_new(obj, e->key, child) < 0) {
                json_decref(obj);
                return NULL;
            }
        }
        return obj;
    }
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE: {
        json_t *arr = json_array();
        const Google__Protobuf__ListValue *l = v->list_value;
        for (size_t i = 0; arr && i < l->n_values; i++) {
            json_t *child = to_json(l->values[i], depth + 1, why);
            if (child == NULL || json_array_append_new(arr, child) < 0) {
                json_decref(arr);
                return NULL;
            }
        }
        return arr;
    }
    default:
        *why = "a Value must hold one of null, number, string, bool, struct or list";
        return NULL;
    }
}

json_t *pbvalue_to_json(const Google__Protobuf__Value *v, const char **why)
{
    const char *ignored;
    return to_json(v, 0, why ? why : &ignored);
}

static Google__Protobuf__Value *from_json(const json_t *j, int depth)
{
    if (depth > PBVALUE_MAX_DEPTH)
        return NULL;
    Google__Protobuf__Value *v = malloc(sizeof *v);
    if (v == NULL)
        return NULL;
    google__protobuf__value__init(v);
    switch (json_typeof(j)) {
    case JSON_NULL:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
        v->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
        return v;
    case JSON_TRUE:
    case JSON_FALSE:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
        v->bool_value = json_is_true(j);
        return v;
    case JSON_INTEGER:
    case JSON_REAL:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        v->number_value = json_number_value(j);
        return v;
    case JSON_STRING:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        v->string_value = strndup(json_string_value(j), json_string_length(j));
        if (v->string_value == NULL)
            goto fail;
        return v;
    case JSON_OBJECT: {
        Google__Protobuf__Struct *s = malloc(sizeof *s);
        if (s == NULL)
            goto fail;
        google__protobuf__struct__init(s);
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        v->struct_value = s;
        size_t n = json_object_size(j);
        s->fields = calloc(n ? n : 1, sizeof *s->fields);
        if (s->fields == NULL)
            goto fail;
        const char *key;
        json_t *child;
        json_object_foreach((json_t *)j, key, child) {
            Google__Protobuf__Struct__FieldsEntry *e = malloc(sizeof *e);
            if (e == NULL)
                goto fail;
            google__protobuf__struct__fields_entry__init(e);
            s->fields[s->n_fields++] = e;
            if ((e->key = strdup(key)) == NULL || (e->value = from_json(child, depth + 1)) == NULL)
                goto fail;
        }
        return v;
    }
    case JSON_ARRAY: {
        Google__Protobuf__ListValue *l = malloc(sizeof *l);
        if (l == NULL)
            goto fail;
        google__protobuf__list_value__init(l);
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        v->list_value = l;
        size_t n = json_array_size(j);
        l->values = calloc(n ? n : 1, sizeof *l->values);
        if (l->values == NULL)
            goto fail;
        for (size_t i = 0; i < n; i++) {
            if ((l->values[i] = from_json(json_array_get(j, i), depth + 1)) == NULL)
                goto fail;
            l->n_values++;
        }
        return v;
    }
    }
fail:
    /* Every pointer in the tree is malloc'd or NULL, as free_unpacked expects. */
    protobuf_c_message_free_unpacked(&v->base, NULL);
    return NULL;
}

Google__Protobuf__Value *pbvalue_from_json(const json_t *j)
{
    return from_json(j, 0);
}

Google__Protobuf__Value *pbvalue_parse(const char *text, size_t len)
{
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY, NULL);
    if (j == NULL)
        return NULL;
    Google__Protobuf__Value *v = from_json(j, 0);
    json_decref(j);
    return v;
}
