/* The FileDescriptorSet index behind server reflection (see descset.h). The set is cut into
 * its files at the wire level, so each answer is a slice of protoc's own bytes; protobuf-c's
 * descriptor.proto types are used only to read names while indexing, then freed. */
#include "descset.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"

typedef struct symbol {
    char *name;              /* fully qualified, without a leading '.' */
    size_t file;
    enum descset_kind kind;
} symbol;

typedef struct extension {
    char *extendee;          /* fully qualified, without a leading '.' */
    int32_t number;
    size_t file;
} extension;

typedef struct dfile {
    const uint8_t *data;     /* the FileDescriptorProto inside the set */
    size_t len;
    char *name;
    size_t *closure;         /* this file, then its dependencies (see descset_closure) */
    size_t n_closure;
} dfile;

struct descset {
    dfile *files;
    size_t n_files;
    symbol *syms;            /* sorted by name once built */
    size_t n_syms, cap_syms;
    extension *exts;
    size_t n_exts, cap_exts;
    char *err;               /* the first problem met while indexing */
};

/* Records the first problem only: later ones are usually its consequences. */
static void set_err(descset *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(descset *d, const char *fmt, ...)
{
    if (d->err)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&d->err, fmt, ap) < 0)
        d->err = NULL;
    va_end(ap);
    if (d->err == NULL)
        d->err = strdup("out of memory"); /* may fail too: descset_new checks oom separately */
}

/* ---- wire level ----------------------------------------------------------------------- */

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p == end)
            return -1;
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* Cuts the set into its `file` fields (number 1). Anything else a future protoc might add to
 * the set is skipped by wire type. Returns 0 or -1 on malformed bytes / no memory. */
static int slice_files(descset *d, const uint8_t *data, size_t len)
{
    const uint8_t *p = data, *end = data + len;
    size_t cap = 0;
    while (p < end) {
        uint64_t key, v;
        if (read_varint(&p, end, &key) < 0)
            goto malformed;
        switch (key & 7) {
        case 0:
            if (read_varint(&p, end, &v) < 0)
                goto malformed;
            break;
        case 1:
            if (end - p < 8)
                goto malformed;
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                goto malformed;
            p += 4;
            break;
        case 2:
            if (read_varint(&p, end, &v) < 0 || v > (uint64_t)(end - p))
                goto malformed;
            if (key >> 3 == 1) {
                if (d->n_files == cap) {
                    cap = cap ? cap * 2 : 16;
                    dfile *f = realloc(d->files, cap * sizeof *f);
                    if (f == NULL) {
                        set_err(d, "out of memory");
                        return -1;
                    }
                    d->files = f;
                }
                d->files[d->n_files++] = (dfile){.data = p, .len = (size_t)v};
            }
            p += v;
            break;
        default:
            goto malformed;
        }
    }
    return 0;
malformed:
    set_err(d, "the embedded descriptor set is not a FileDescriptorSet (byte %zu)", (size_t)(p - data));
    return -1;
}

/* ---- symbols -------------------------------------------------------------------------- */

/* "scope.name", or name at the top level. NULL (error recorded) for an unnamed element. */
static char *join(descset *d, const char *scope, const char *name)
{
    if (name == NULL || name[0] == '\0') {
        set_err(d, "an unnamed element in scope '%s'", scope ? scope : "");
        return NULL;
    }
    char *s = NULL;
    int n = scope && scope[0] ? asprintf(&s, "%s.%s", scope, name) : asprintf(&s, "%s", name);
    if (n < 0) {
        set_err(d, "out of memory");
        return NULL;
    }
    return s;
}

/* Adds name (taken) and returns it, borrowed from the table, for nested scopes; NULL if
 * name was NULL or on no memory. */
static const char *add_symbol(descset *d, char *name, size_t file, enum descset_kind kind)
{
    if (name == NULL)
        return NULL;
    if (d->n_syms == d->cap_syms) {
        size_t cap = d->cap_syms ? d->cap_syms * 2 : 256;
        symbol *s = realloc(d->syms, cap * sizeof *s);
        if (s == NULL) {
            free(name);
            set_err(d, "out of memory");
            return NULL;
        }
        d->syms = s;
        d->cap_syms = cap;
    }
    d->syms[d->n_syms++] = (symbol){name, file, kind};
    return name;
}

static const char *strip_dot(const char *s) { return s[0] == '.' ? s + 1 : s; }

static void index_extension(descset *d, size_t file, const char *scope,
                            const Google__Protobuf__FieldDescriptorProto *f)
{
    add_symbol(d, join(d, scope, f->name), file, DESCSET_EXTENSION);
    if (f->extendee == NULL || !f->has_number) {
        set_err(d, "extension %s has no extendee or number", f->name ? f->name : "?");
        return;
    }
    if (d->n_exts == d->cap_exts) {
        size_t cap = d->cap_exts ? d->cap_exts * 2 : 16;
        extension *e = realloc(d->exts, cap * sizeof *e);
        if (e == NULL) {
            set_err(d, "out of memory");
            return;
        }
        d->exts = e;
        d->cap_exts = cap;
    }
    char *extendee = strdup(strip_dot(f->extendee));
    if (extendee == NULL) {
        set_err(d, "out of memory");
        return;
    }
    d->exts[d->n_exts++] = (extension){extendee, f->number, file};
}

/* Enum values are scoped like C++ enumerators: siblings of their enum, not children. */
static void index_enum(descset *d, size_t file, const char *scope, const Google__Protobuf__EnumDescriptorProto *e)
{
    add_symbol(d, join(d, scope, e->name), file, DESCSET_ENUM);
    for (size_t i = 0; i < e->n_value; i++)
        add_symbol(d, join(d, scope, e->value[i]->name), file, DESCSET_ENUM_VALUE);
}

static void index_message(descset *d, size_t file, const char *scope, const Google__Protobuf__DescriptorProto *m)
{
    const char *full = add_symbol(d, join(d, scope, m->name), file, DESCSET_MESSAGE);
    if (full == NULL)
        return;
    for (size_t i = 0; i < m->n_field; i++)
        add_symbol(d, join(d, full, m->field[i]->name), file, DESCSET_FIELD);
    for (size_t i = 0; i < m->n_oneof_decl; i++)
        add_symbol(d, join(d, full, m->oneof_decl[i]->name), file, DESCSET_ONEOF);
    for (size_t i = 0; i < m->n_nested_type; i++)
        index_message(d, file, full, m->nested_type[i]);
    for (size_t i = 0; i < m->n_enum_type; i++)
        index_enum(d, file, full, m->enum_type[i]);
    for (size_t i = 0; i < m->n_extension; i++)
        index_extension(d, file, full, m->extension[i]);
}

static void index_file(descset *d, size_t file, const Google__Protobuf__FileDescriptorProto *fd)
{
    const char *pkg = fd->package ? fd->package : "";
    for (size_t i = 0; i < fd->n_message_type; i++)
        index_message(d, file, pkg, fd->message_type[i]);
    for (size_t i = 0; i < fd->n_enum_type; i++)
        index_enum(d, file, pkg, fd->enum_type[i]);
    for (size_t i = 0; i < fd->n_extension; i++)
        index_extension(d, file, pkg, fd->extension[i]);
    for (size_t i = 0; i < fd->n_service; i++) {
        const Google__Protobuf__ServiceDescriptorProto *s = fd->service[i];
        const char *full = add_symbol(d, join(d, pkg, s->name), file, DESCSET_SERVICE);
        for (size_t k = 0; full && k < s->n_method; k++)
            add_symbol(d, join(d, full, s->method[k]->name), file, DESCSET_METHOD);
    }
}

static int symbol_cmp(const void *a, const void *b)
{
    return strcmp(((const symbol *)a)->name, ((const symbol *)b)->name);
}

/* ---- dependencies --------------------------------------------------------------------- */

/* Post-order walk: a file is appended after everything it imports. seen guards against
 * files reached twice (diamonds); protoc refuses import cycles. */
static void closure_visit(const size_t *const *deps, const size_t *n_deps, size_t f, unsigned char *seen,
                          dfile *out)
{
    for (size_t k = 0; k < n_deps[f]; k++) {
        size_t dep = deps[f][k];
        if (seen[dep])
            continue;
        seen[dep] = 1;
        closure_visit(deps, n_deps, dep, seen, out);
        out->closure[out->n_closure++] = dep;
    }
}

/* Resolves every file's imports by name and stores each file's closure. */
static int build_closures(descset *d, Google__Protobuf__FileDescriptorProto **fds)
{
    size_t n = d->n_files;
    size_t **deps = calloc(n, sizeof *deps);
    size_t *n_deps = calloc(n, sizeof *n_deps);
    unsigned char *seen = malloc(n);
    int rc = -1;
    if (deps == NULL || n_deps == NULL || seen == NULL)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        if ((deps[i] = malloc((fds[i]->n_dependency + 1) * sizeof **deps)) == NULL)
            goto oom;
        for (size_t k = 0; k < fds[i]->n_dependency; k++) {
            int dep = descset_find_file(d, fds[i]->dependency[k]);
            if (dep < 0) {
                set_err(d, "%s imports %s, which the descriptor set lacks (made without --include_imports?)",
                        d->files[i].name, fds[i]->dependency[k]);
                goto done;
            }
            deps[i][n_deps[i]++] = (size_t)dep;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if ((d->files[i].closure = malloc(n * sizeof(size_t))) == NULL)
            goto oom;
        memset(seen, 0, n);
        seen[i] = 1;
        d->files[i].closure[d->files[i].n_closure++] = i;
        closure_visit((const size_t *const *)deps, n_deps, i, seen, &d->files[i]);
    }
    rc = 0;
    goto done;
oom:
    set_err(d, "out of memory");
done:
    for (size_t i = 0; deps && i < n; i++)
        free(deps[i]);
    free(deps);
    free(n_deps);
    free(seen);
    return rc;
}

/* ---- public --------------------------------------------------------------------------- */

descset *descset_new(const uint8_t *data, size_t len, char *err, size_t errlen)
{
    descset *d = calloc(1, sizeof *d);
    Google__Protobuf__FileDescriptorProto **fds = NULL;
    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (slice_files(d, data, len) < 0)
        goto fail;
    if (d->n_files == 0) {
        set_err(d, "the embedded descriptor set holds no file");
        goto fail;
    }
    if ((fds = calloc(d->n_files, sizeof *fds)) == NULL) {
        set_err(d, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < d->n_files; i++) {
        fds[i] = google__protobuf__file_descriptor_proto__unpack(NULL, d->files[i].len, d->files[i].data);
        if (fds[i] == NULL || fds[i]->name == NULL) {
            set_err(d, "file %zu of the descriptor set is not a named FileDescriptorProto", i);
            goto fail;
        }
        if (descset_find_file(d, fds[i]->name) >= 0) {
            set_err(d, "file %s is in the descriptor set twice", fds[i]->name);
            goto fail;
        }
        if ((d->files[i].name = strdup(fds[i]->name)) == NULL) {
            set_err(d, "out of memory");
            goto fail;
        }
    }
    for (size_t i = 0; i < d->n_files; i++)
        index_file(d, i, fds[i]);
    if (d->err || build_closures(d, fds) < 0)
        goto fail;
    if (d->n_syms) /* qsort and bsearch must not see the NULL of an empty table */
        qsort(d->syms, d->n_syms, sizeof *d->syms, symbol_cmp);
    for (size_t i = 1; i < d->n_syms; i++) {
        if (strcmp(d->syms[i - 1].name, d->syms[i].name) == 0) {
            set_err(d, "symbol %s is defined in both %s and %s", d->syms[i].name,
                    d->files[d->syms[i - 1].file].name, d->files[d->syms[i].file].name);
            goto fail;
        }
    }
    for (size_t i = 0; i < d->n_files; i++)
        google__protobuf__file_descriptor_proto__free_unpacked(fds[i], NULL);
    free(fds);
    return d;
fail:
    snprintf(err, errlen, "%s", d->err ? d->err : "out of memory");
    for (size_t i = 0; fds && i < d->n_files; i++)
        if (fds[i])
            google__protobuf__file_descriptor_proto__free_unpacked(fds[i], NULL);
    free(fds);
    descset_free(d);
    return NULL;
}

void descset_free(descset *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n_files; i++) {
        free(d->files[i].name);
        free(d->files[i].closure);
    }
    for (size_t i = 0; i < d->n_syms; i++)
        free(d->syms[i].name);
    for (size_t i = 0; i < d->n_exts; i++)
        free(d->exts[i].extendee);
    free(d->files);
    free(d->syms);
    free(d->exts);
    free(d->err);
    free(d);
}

size_t descset_n_files(const descset *d) { return d->n_files; }

const uint8_t *descset_file_bytes(const descset *d, size_t i, size_t *len)
{
    *len = d->files[i].len;
    return d->files[i].data;
}

const char *descset_file_name(const descset *d, size_t i) { return d->files[i].name; }

int descset_find_file(const descset *d, const char *name)
{
    /* A dozen files: a scan beats keeping a second sorted table. Names are NULL only for
     * files not yet named while descset_new runs. */
    for (size_t i = 0; i < d->n_files; i++)
        if (d->files[i].name && strcmp(d->files[i].name, name) == 0)
            return (int)i;
    return -1;
}

int descset_find_symbol(const descset *d, const char *name, enum descset_kind *kind)
{
    if (d->n_syms == 0)
        return -1;
    symbol key = {(char *)strip_dot(name), 0, DESCSET_MESSAGE};
    const symbol *s = bsearch(&key, d->syms, d->n_syms, sizeof *d->syms, symbol_cmp);
    if (s == NULL)
        return -1;
    if (kind)
        *kind = s->kind;
    return (int)s->file;
}

int descset_find_extension(const descset *d, const char *extendee, int32_t number)
{
    extendee = strip_dot(extendee);
    for (size_t i = 0; i < d->n_exts; i++)
        if (d->exts[i].number == number && strcmp(d->exts[i].extendee, extendee) == 0)
            return (int)d->exts[i].file;
    return -1;
}

int descset_extension_numbers(const descset *d, const char *type, int32_t **numbers, size_t *n)
{
    enum descset_kind kind;
    *numbers = NULL;
    *n = 0;
    type = strip_dot(type);
    if (descset_find_symbol(d, type, &kind) < 0 || kind != DESCSET_MESSAGE)
        return -1;
    size_t count = 0;
    for (size_t i = 0; i < d->n_exts; i++)
        count += strcmp(d->exts[i].extendee, type) == 0;
    if (count == 0)
        return 0;
    if ((*numbers = malloc(count * sizeof **numbers)) == NULL)
        return -2;
    for (size_t i = 0; i < d->n_exts; i++)
        if (strcmp(d->exts[i].extendee, type) == 0)
            (*numbers)[(*n)++] = d->exts[i].number;
    return 0;
}

const size_t *descset_closure(const descset *d, size_t i, size_t *n)
{
    *n = d->files[i].n_closure;
    return d->files[i].closure;
}
