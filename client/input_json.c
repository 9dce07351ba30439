/* JSON input: a SubmitBatchRequest document, read as a stream. A small scanner walks the
 * top-level object; each element of "operations" is cut out as text and converted on its
 * own by pbjson, then handed to the sink, so memory holds one operation's text at a time
 * rather than the whole document as text and as a jansson tree. The other members
 * (options, requestId, validateOnly) are converted by pbjson one by one. Positions of
 * errors found by pbjson in a piece are moved back to where the piece is in the file. */
#include <stdlib.h>
#include <string.h>

#include "input.h"
#include "pbjson.h"

typedef struct jreader {
    FILE *f;
    int c;                  /* the current byte, EOF at the end */
    unsigned line, col;     /* its position (column in characters) */
    int capture;            /* bytes passed over are appended to buf */
    char *buf;
    size_t len, cap;
    char *open;             /* brackets open in the value being captured */
    size_t depth, open_cap;
    input_error *err;
} jreader;

/* Where a captured piece starts in the file. */
typedef struct jpos {
    unsigned line, col;
} jpos;

static int oom(jreader *j)
{
    return input_fail(j->err, j->line, j->col, "out of memory");
}

/* Moves past the current byte. */
static int next(jreader *j)
{
    if (j->capture) {
        if (j->len + 1 >= j->cap) {
            size_t cap = j->cap ? j->cap * 2 : 512;
            char *b = realloc(j->buf, cap);
            if (b == NULL)
                return oom(j);
            j->buf = b;
            j->cap = cap;
        }
        j->buf[j->len++] = (char)j->c;
    }
    int was = j->c;
    j->c = getc_unlocked(j->f);
    if (was == '\n') {
        j->line++;
        j->col = 1;
    } else if (j->c == EOF || ((unsigned)j->c & 0xC0) != 0x80) {
        j->col++;
    }
    return 0;
}

static void skip_ws(jreader *j)
{
    while (j->c == ' ' || j->c == '\t' || j->c == '\r' || j->c == '\n')
        next(j);
}

static int describe(jreader *j, const char *expected)
{
    if (j->c == EOF)
        return input_fail(j->err, j->line, j->col, "invalid JSON: %s expected, end of file found", expected);
    char got[8];
    snprintf(got, sizeof got, j->c >= 0x20 && j->c < 0x7f ? "'%c'" : "byte %02x", j->c);
    return input_fail(j->err, j->line, j->col, "invalid JSON: %s expected, %s found", expected, got);
}

/* A string, from its opening quote to past its closing one. */
static int scan_string(jreader *j)
{
    jpos at = {j->line, j->col};
    if (next(j) < 0)
        return -1;
    while (j->c != '"') {
        if (j->c == EOF || j->c == '\n')
            return input_fail(j->err, at.line, at.col, "invalid JSON: string not closed on its line");
        if (j->c == '\\' && next(j) < 0)
            return -1;
        if (j->c != EOF && next(j) < 0)
            return -1;
    }
    return next(j);
}

static int push(jreader *j, char c)
{
    if (j->depth == j->open_cap) {
        size_t cap = j->open_cap ? j->open_cap * 2 : 32;
        char *o = realloc(j->open, cap);
        if (o == NULL)
            return oom(j);
        j->open = o;
        j->open_cap = cap;
    }
    j->open[j->depth++] = c;
    return 0;
}

/* Captures one value into buf (NUL-terminated). Brackets are matched here so that a
 * broken document is reported where it breaks instead of being read to its end; the rest
 * of JSON's grammar is left to jansson. */
static int capture_value(jreader *j, jpos *start)
{
    start->line = j->line;
    start->col = j->col;
    j->len = 0;
    j->depth = 0;
    j->capture = 1;
    int rc = 0;
    if (j->c == '"') {
        rc = scan_string(j);
    } else if (j->c == '{' || j->c == '[') {
        do {
            if (j->c == EOF) {
                rc = input_fail(j->err, start->line, start->col, "invalid JSON: the %s opened here is never closed",
                                j->open[0] == '{' ? "object" : "array");
            } else if (j->c == '"') {
                rc = scan_string(j);
            } else if (j->c == '{' || j->c == '[') {
                rc = push(j, (char)j->c) < 0 ? -1 : next(j);
            } else if (j->c == '}' || j->c == ']') {
                if (j->open[j->depth - 1] != (j->c == '}' ? '{' : '['))
                    rc = input_fail(j->err, j->line, j->col, "invalid JSON: '%c' closes a%s", j->c,
                                    j->open[j->depth - 1] == '{' ? "n object" : "n array");
                else
                    rc = (j->depth--, next(j));
            } else {
                rc = next(j);
            }
        } while (rc == 0 && j->depth > 0);
    } else {
        while (rc == 0 && j->c != EOF && !strchr(",]} \t\r\n", j->c))
            rc = next(j);
        if (rc == 0 && j->len == 0)
            rc = describe(j, "a value");
    }
    j->capture = 0;
    if (rc == 0)
        j->buf[j->len] = '\0';
    return rc;
}

/* Where pbjson's pos, counted in a piece whose first prefix_cols characters were added
 * before the text found at start, is in the file. */
static void file_pos(jpos start, unsigned prefix_cols, const pbjson_position *pos, unsigned *line, unsigned *col)
{
    if (pos->line <= 1) {
        *line = start.line;
        *col = pos->column > (int)prefix_cols ? start.col + (unsigned)pos->column - 1 - prefix_cols : start.col;
    } else {
        *line = start.line + (unsigned)pos->line - 1;
        *col = (unsigned)pos->column;
    }
}

/* pbjson's messages start with the JSON path of the value at fault, except for a fault in
 * the piece as a whole ("expected an object, got ..."): a path is identifier characters up
 * to a '.', '[' or ':'. */
static int starts_with_path(const char *why)
{
    if (why[0] == '[')
        return 1;
    size_t n = strspn(why, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
    return n > 0 && (why[n] == '.' || why[n] == '[' || why[n] == ':');
}

static int read_operations(jreader *j, input_source *src, size_t *n_ops)
{
    jpos at;
    if (j->c == 'n') { /* null: the default, no operations */
        if (capture_value(j, &at) < 0)
            return -1;
        if (strcmp(j->buf, "null") == 0)
            return 0;
        return input_fail(j->err, at.line, at.col, "operations: expected an array");
    }
    if (j->c != '[')
        return input_fail(j->err, j->line, j->col, "operations: expected an array");
    next(j);
    skip_ws(j);
    if (j->c == ']')
        return next(j);
    for (;;) {
        if (capture_value(j, &at) < 0)
            return -1;
        char *why = NULL;
        pbjson_position pos = {0};
        ProtobufCMessage *m = pbjson_parse_text(&batch__v1__operation__descriptor, j->buf, j->len, NULL, &why, &pos);
        if (m == NULL) {
            unsigned line, col;
            file_pos(at, 0, &pos, &line, &col);
            const char *w = why ? why : "out of memory";
            if (strncmp(w, "invalid JSON", 12) == 0)
                input_fail(j->err, line, col, "%s", w);
            else if (starts_with_path(w))
                input_fail(j->err, line, col, "operations[%zu]%s%s", *n_ops, w[0] == '[' ? "" : ".", w);
            else
                input_fail(j->err, line, col, "operations[%zu]: %s", *n_ops, w);
            free(why);
            return -1;
        }
        if (src->sink(src->arg, (Batch__V1__Operation *)m, at.line, j->err) < 0)
            return -1;
        (*n_ops)++;
        skip_ws(j);
        if (j->c == ']')
            return next(j);
        if (j->c != ',')
            return describe(j, "',' or ']'");
        next(j);
        skip_ws(j);
    }
}

/* "requestId" and "request_id" name one field: compare names without '_' and case. */
static void normalise(const char *key, char *out, size_t len)
{
    size_t o = 0;
    for (const char *k = key; *k && o + 1 < len; k++)
        if (*k != '_' && *k != '"')
            out[o++] = (char)(*k >= 'A' && *k <= 'Z' ? *k + 32 : *k);
    out[o] = '\0';
}

static unsigned utf8_chars(const char *s)
{
    unsigned n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* A member other than operations: converted as {key: value} by itself, then moved into
 * src->rest. */
static int read_member(jreader *j, input_source *src, const char *key, jpos key_at)
{
    jpos at;
    if (capture_value(j, &at) < 0)
        return -1;
    size_t klen = strlen(key);
    size_t len = klen + j->len + 3;
    char *text = malloc(len + 1);
    if (text == NULL)
        return oom(j);
    snprintf(text, len + 1, "{%s:%s}", key, j->buf);
    char *why = NULL;
    pbjson_position pos = {0};
    Batch__V1__SubmitBatchRequest *p = (Batch__V1__SubmitBatchRequest *)pbjson_parse_text(
        &batch__v1__submit_batch_request__descriptor, text, len, NULL, &why, &pos);
    free(text);
    if (p == NULL) {
        unsigned line = key_at.line, col = key_at.col;
        if (pos.offset > klen)
            file_pos(at, utf8_chars(key) + 2, &pos, &line, &col);
        input_fail(j->err, line, col, "%s", why ? why : "out of memory");
        free(why);
        return -1;
    }
    int rc = 0;
    Batch__V1__SubmitBatchRequest *rest = src->rest;
    if (rest == NULL && (rest = src->rest = malloc(sizeof *rest)) != NULL)
        batch__v1__submit_batch_request__init(rest);
    if (rest == NULL) {
        rc = oom(j);
        goto done;
    }
    /* The name was spelled with escapes: its operations were converted with the member. */
    for (size_t i = 0; i < p->n_operations && rc == 0; i++) {
        rc = src->sink(src->arg, p->operations[i], at.line, j->err);
        p->operations[i] = NULL;
    }
    if (p->options) {
        rest->options = p->options;
        p->options = NULL;
    }
    if (p->request_id[0]) {
        rest->request_id = p->request_id;
        p->request_id = (char *)protobuf_c_empty_string;
    }
    rest->validate_only |= p->validate_only;
done:
    for (size_t i = 0; i < p->n_operations; i++)
        if (p->operations[i])
            batch__v1__operation__free_unpacked(p->operations[i], NULL);
    p->n_operations = 0;
    batch__v1__submit_batch_request__free_unpacked(p, NULL);
    return rc;
}

static int read_document(jreader *j, input_source *src)
{
    if (j->c == 0xEF) { /* a UTF-8 byte order mark */
        next(j);
        if (j->c != 0xBB || (next(j), j->c != 0xBF))
            return input_fail(j->err, 1, 1, "invalid JSON: not UTF-8 text");
        next(j);
        j->col = 1;
    }
    skip_ws(j);
    if (j->c == '[')
        return input_fail(j->err, j->line, j->col,
                          "expected a batch document {\"operations\": [...]}, found an array "
                          "(for one operation per line use a .ndjson file or --format ndjson)");
    if (j->c != '{')
        return describe(j, "'{'");
    next(j);
    skip_ws(j);
    char seen[8][24];
    size_t n_seen = 0, n_ops = 0;
    while (j->c != '}') {
        if (j->c != '"')
            return describe(j, "a member name in double quotes");
        jpos key_at;
        if (capture_value(j, &key_at) < 0)
            return -1;
        char *key = strdup(j->buf);
        if (key == NULL)
            return oom(j);
        char norm[24];
        normalise(key, norm, sizeof norm);
        for (size_t i = 0; i < n_seen; i++) {
            if (strcmp(seen[i], norm) == 0) {
                free(key);
                return input_fail(j->err, key_at.line, key_at.col, "duplicate field %s", j->buf);
            }
        }
        if (n_seen < 8)
            snprintf(seen[n_seen++], sizeof seen[0], "%s", norm);
        skip_ws(j);
        int rc;
        if (j->c != ':')
            rc = describe(j, "':'");
        else {
            next(j);
            skip_ws(j);
            rc = strcmp(key, "\"operations\"") == 0 ? read_operations(j, src, &n_ops) : read_member(j, src, key, key_at);
        }
        free(key);
        if (rc < 0)
            return -1;
        skip_ws(j);
        if (j->c == ',') {
            next(j);
            skip_ws(j);
            if (j->c == '}')
                return describe(j, "a member name after ','");
        } else if (j->c != '}') {
            return describe(j, "',' or '}'");
        }
    }
    next(j);
    skip_ws(j);
    if (j->c != EOF)
        return input_fail(j->err, j->line, j->col, "invalid JSON: text after the end of the document");
    return ferror(j->f) ? input_fail(j->err, j->line, j->col, "read error") : 0;
}

int input_read_json(input_source *src, input_error *err)
{
    jreader j = {.f = src->f, .line = 1, .col = 1, .err = err};
    j.c = getc_unlocked(src->f);
    int rc = read_document(&j, src);
    free(j.buf);
    free(j.open);
    return rc;
}
