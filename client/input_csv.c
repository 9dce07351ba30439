/* CSV input: a header row names the columns; each further row becomes one operation whose
 * path is the --path template filled from the row, whose id is the --id-column value (or
 * the row number), and whose JSON body holds the other columns. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "input.h"

/* Integers with more digits than this lose precision as a double: they stay strings
 * (phone numbers, long ids). */
#define CSV_MAX_NUMBER_DIGITS 15

/* The path template, split at its placeholders. */
typedef struct tpl_part {
    const char *text;   /* literal text (not NUL-terminated), or NULL for a placeholder */
    size_t len;
    size_t column;      /* placeholder's column */
} tpl_part;

typedef struct csv_plan {
    char **names;       /* header cells, owned */
    size_t n;
    tpl_part *parts;
    size_t n_parts;
    unsigned char *in_path;  /* per column: used by the template, so not in the body */
    long id_col;             /* -1: the row number */
    const char *method;
    int strings;
} csv_plan;

static void plan_free(csv_plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->names[i]);
    free(p->names);
    free(p->parts);
    free(p->in_path);
}

static int valid_utf8(const unsigned char *p, size_t len, size_t *bad_char)
{
    size_t chars = 0;
    for (size_t i = 0; i < len; chars++) {
        unsigned char c = p[i];
        size_t n = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 && c >= 0xC2 ? 1 : (c & 0xF0) == 0xE0 ? 2
                 : (c & 0xF8) == 0xF0 && c <= 0xF4 ? 3 : 99;
        if (n == 99 || i + n >= len + (n ? 0 : 1))
            goto bad;
        for (size_t k = 1; k <= n; k++)
            if ((p[i + k] & 0xC0) != 0x80)
                goto bad;
        i += n + 1;
        continue;
    bad:
        *bad_char = chars;
        return 0;
    }
    return 1;
}

/* Every cell must be text a JSON string can hold. */
static int check_cells(const csv_record *rec, input_error *err)
{
    for (size_t i = 0; i < rec->n; i++) {
        size_t bad = 0;
        if (memchr(rec->fields[i], '\0', rec->lens[i]))
            return input_fail(err, rec->lines[i], rec->cols[i], "NUL byte in a field");
        if (!valid_utf8((const unsigned char *)rec->fields[i], rec->lens[i], &bad))
            return input_fail(err, rec->lines[i], rec->cols[i],
                              "field is not valid UTF-8 (character %zu); save the file as UTF-8", bad + 1);
    }
    return 0;
}

static long column_of(const csv_plan *p, const char *name, size_t len)
{
    for (size_t i = 0; i < p->n; i++)
        if (strlen(p->names[i]) == len && memcmp(p->names[i], name, len) == 0)
            return (long)i;
    return -1;
}

static int no_column(const csv_plan *p, const char *flag, const char *name, size_t len, input_error *err)
{
    char cols[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < p->n && used < sizeof cols; i++)
        used += (size_t)snprintf(cols + used, sizeof cols - used, "%s%s", i ? ", " : "", p->names[i]);
    return input_fail(err, 1, 1, "%s names the column \"%.*s\", which the header does not have (columns: %s)",
                      flag, (int)len, name, cols);
}

static int plan_header(csv_plan *p, const csv_record *rec, const input_csv_spec *spec, input_error *err)
{
    if (check_cells(rec, err) < 0)
        return -1;
    p->names = calloc(rec->n, sizeof *p->names);
    p->in_path = calloc(rec->n, 1);
    if (!p->names || !p->in_path)
        return input_fail(err, 0, 0, "out of memory");
    for (size_t i = 0; i < rec->n; i++) {
        if (rec->lens[i] == 0)
            return input_fail(err, rec->lines[i], rec->cols[i], "column %zu of the header has no name", i + 1);
        if (column_of(p, rec->fields[i], rec->lens[i]) >= 0)
            return input_fail(err, rec->lines[i], rec->cols[i], "column \"%s\" appears twice in the header",
                              rec->fields[i]);
        if ((p->names[i] = strdup(rec->fields[i])) == NULL)
            return input_fail(err, 0, 0, "out of memory");
        p->n = i + 1;
    }
    const char *t = spec->path;
    if (t == NULL || *t == '\0')
        return input_fail(err, 0, 0, "CSV input needs --path, e.g. --path '/users/{%s}'", p->names[0]);
    if (*t != '/') /* said once here rather than by the server for every row */
        return input_fail(err, 0, 0, "--path must start with \"/\": it is a path on the target, e.g. '/%s'", t);
    p->parts = calloc(strlen(t) + 1, sizeof *p->parts);
    if (p->parts == NULL)
        return input_fail(err, 0, 0, "out of memory");
    while (*t) {
        tpl_part *part = &p->parts[p->n_parts++];
        if (*t != '{') {
            part->text = t;
            part->len = strcspn(t, "{");
            t += part->len;
            continue;
        }
        const char *close = strchr(t, '}');
        if (close == NULL)
            return input_fail(err, 0, 0, "--path: \"{\" without a closing \"}\"");
        long col = column_of(p, t + 1, (size_t)(close - t - 1));
        if (col < 0)
            return no_column(p, "--path", t + 1, (size_t)(close - t - 1), err);
        part->column = (size_t)col;
        p->in_path[col] = 1;
        t = close + 1;
    }
    p->id_col = -1;
    if (spec->id_column && (p->id_col = column_of(p, spec->id_column, strlen(spec->id_column))) < 0)
        return no_column(p, "--id-column", spec->id_column, strlen(spec->id_column), err);
    p->method = spec->method && *spec->method ? spec->method : "POST";
    p->strings = spec->strings;
    return 0;
}

/* ---- building one operation --------------------------------------------------------- */

static char *url_encoded_path(const csv_plan *p, const csv_record *rec)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = 1;
    for (size_t i = 0; i < p->n_parts; i++)
        len += p->parts[i].text ? p->parts[i].len : 3 * rec->lens[p->parts[i].column];
    char *out = malloc(len), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < p->n_parts; i++) {
        const tpl_part *part = &p->parts[i];
        if (part->text) {
            memcpy(o, part->text, part->len);
            o += part->len;
            continue;
        }
        const unsigned char *v = (const unsigned char *)rec->fields[part->column];
        for (size_t k = 0; k < rec->lens[part->column]; k++) {
            unsigned char c = v[k];
            /* RFC 3986 unreserved characters pass; everything else is percent-encoded,
             * so a value can never add a path segment or a query parameter. */
            if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("-._~", c)) {
                *o++ = (char)c;
            } else {
                *o++ = '%';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
            }
        }
    }
    *o = '\0';
    return out;
}

/* A JSON number as RFC 8259 writes it, short enough to survive as a double. */
static int is_json_number(const char *s)
{
    const char *p = s;
    size_t digits = 0;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++, digits++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++, digits++;
    else
        return 0;
    int integer = 1;
    if (*p == '.') {
        integer = 0;
        if (!(*++p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        integer = 0;
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0' && !(integer && digits > CSV_MAX_NUMBER_DIGITS);
}

static Google__Protobuf__Value *typed_value(const char *s, int strings)
{
    Google__Protobuf__Value *v = malloc(sizeof *v);
    if (v == NULL)
        return NULL;
    google__protobuf__value__init(v);
    double d;
    if (!strings && (strcmp(s, "true") == 0 || strcmp(s, "false") == 0)) {
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
        v->bool_value = s[0] == 't';
    } else if (!strings && strcmp(s, "null") == 0) {
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
        v->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
    } else if (!strings && is_json_number(s) && (errno = 0, d = strtod(s, NULL), isfinite(d) && !errno)) {
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        v->number_value = d;
    } else {
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        if ((v->string_value = strdup(s)) == NULL) {
            free(v);
            return NULL;
        }
    }
    return v;
}

/* The columns outside the path as a JSON object, or NULL when there are none (*oom says
 * whether that was for lack of memory). */
static Google__Protobuf__Value *body_of(const csv_plan *p, const csv_record *rec, int *oom)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        n += !p->in_path[i];
    *oom = 0;
    if (n == 0)
        return NULL;
    Google__Protobuf__Value *v = malloc(sizeof *v);
    Google__Protobuf__Struct *st = malloc(sizeof *st);
    Google__Protobuf__Struct__FieldsEntry **fields = calloc(n, sizeof *fields);
    if (!v || !st || !fields) {
        free(v);
        free(st);
        free(fields);
        *oom = 1;
        return NULL;
    }
    google__protobuf__value__init(v);
    google__protobuf__struct__init(st);
    v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
    v->struct_value = st;
    st->fields = fields;
    for (size_t i = 0; i < p->n; i++) {
        if (p->in_path[i])
            continue;
        Google__Protobuf__Struct__FieldsEntry *e = malloc(sizeof *e);
        if (e == NULL)
            goto oom;
        google__protobuf__struct__fields_entry__init(e);
        st->fields[st->n_fields++] = e;
        if ((e->key = strdup(p->names[i])) == NULL || (e->value = typed_value(rec->fields[i], p->strings)) == NULL)
            goto oom;
    }
    return v;
oom:
    google__protobuf__value__free_unpacked(v, NULL);
    *oom = 1;
    return NULL;
}

static Batch__V1__Operation *row_operation(const csv_plan *p, const csv_record *rec, unsigned long row,
                                           input_error *err)
{
    Batch__V1__Operation *op = malloc(sizeof *op);
    if (op == NULL) {
        input_fail(err, 0, 0, "out of memory");
        return NULL;
    }
    batch__v1__operation__init(op);
    char num[24];
    snprintf(num, sizeof num, "%lu", row);
    if (p->id_col >= 0 && rec->lens[p->id_col] == 0) {
        input_fail(err, rec->lines[p->id_col], rec->cols[p->id_col], "empty id (column \"%s\")", p->names[p->id_col]);
        goto fail;
    }
    int oom = 0;
    op->id = strdup(p->id_col >= 0 ? rec->fields[p->id_col] : num);
    op->method = strdup(p->method);
    op->path = url_encoded_path(p, rec);
    if (!op->id || !op->method || !op->path)
        goto oom;
    if ((op->json = body_of(p, rec, &oom)) != NULL)
        op->body_case = BATCH__V1__OPERATION__BODY_JSON;
    else if (oom)
        goto oom;
    return op;
oom:
    input_fail(err, rec->line, 1, "out of memory");
fail:
    batch__v1__operation__free_unpacked(op, NULL);
    return NULL;
}

int input_read_csv(input_source *src, input_error *err)
{
    csv_plan plan = {0};
    csv_record rec;
    int rc = -1;
    csv_reader *r = csv_new(src->f);
    if (r == NULL)
        return input_fail(err, 0, 0, "out of memory");
    int got = csv_next(r, &rec);
    if (got == 0) {
        rc = input_fail(err, 1, 1, "empty file: a CSV input starts with a header row");
        goto done;
    }
    if (got < 0 || plan_header(&plan, &rec, src->csv, err) < 0)
        goto bad;
    for (unsigned long row = 1;; row++) {
        if ((got = csv_next(r, &rec)) <= 0)
            break;
        if (rec.n > plan.n) {
            rc = input_fail(err, rec.lines[plan.n], rec.cols[plan.n], "row %lu has %zu fields, the header has %zu",
                            row, rec.n, plan.n);
            goto done;
        }
        if (rec.n < plan.n) {
            rc = input_fail(err, rec.end_line, rec.end_col, "row %lu has %zu field%s, the header has %zu", row,
                            rec.n, rec.n == 1 ? "" : "s", plan.n);
            goto done;
        }
        if (check_cells(&rec, err) < 0)
            goto done;
        Batch__V1__Operation *op = row_operation(&plan, &rec, row, err);
        if (op == NULL || src->sink(src->arg, op, rec.line, err) < 0)
            goto done;
    }
    if (got == 0) {
        rc = 0;
        goto done;
    }
bad:
    if (got < 0) {
        unsigned line, col;
        const char *why = csv_error(r, &line, &col);
        rc = input_fail(err, line, col, "%s", why);
    }
done:
    plan_free(&plan);
    csv_free(r);
    return rc;
}
