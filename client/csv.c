/* RFC 4180 CSV records, read byte by byte through stdio's buffer (see csv.h). */
#include "csv.h"

#include <stdlib.h>
#include <string.h>


typedef enum csv_state { AT_FIELD, IN_UNQUOTED, IN_QUOTED, AFTER_QUOTE } csv_state;

struct csv_reader {
    FILE *f;
    int back[3];                /* bytes read ahead, the next one last */
    int n_back;
    int started;                /* the byte order mark was looked for */
    unsigned line, col;         /* position of the next byte */
    unsigned at_line, at_col;   /* position of the byte last read */
    /* The record being read: field bytes back to back, each NUL-terminated. */
    char *buf;
    size_t len, cap;
    size_t nf, capf;
    size_t *offs, *lens;
    unsigned *lines, *cols;
    char **ptrs;
    const char *err;
    unsigned err_line, err_col;
    char err_buf[112];
};

csv_reader *csv_new(FILE *f)
{
    csv_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->f = f;
    r->line = r->col = 1;
    return r;
}

void csv_free(csv_reader *r)
{
    if (r == NULL)
        return;
    free(r->buf);
    free(r->offs);
    free(r->lens);
    free(r->lines);
    free(r->cols);
    free(r->ptrs);
    free(r);
}

const char *csv_error(const csv_reader *r, unsigned *line, unsigned *col)
{
    *line = r->err_line;
    *col = r->err_col;
    return r->err ? r->err : "no error";
}

static int peek(csv_reader *r)
{
    if (r->n_back == 0)
        r->back[r->n_back++] = getc_unlocked(r->f);
    return r->back[r->n_back - 1];
}

/* Skips a UTF-8 byte order mark at the start of the input; anything else is read again. */
static void skip_bom(csv_reader *r)
{
    static const int bom[3] = {0xEF, 0xBB, 0xBF};
    int got[3], n = 0;
    while (n < 3 && (got[n] = getc_unlocked(r->f)) == bom[n])
        n++;
    if (n == 3)
        return;
    r->back[r->n_back++] = got[n]; /* the byte that differed (or EOF) comes after the others */
    while (n > 0)
        r->back[r->n_back++] = got[--n];
}

/* The next byte, or EOF, keeping count of lines and columns: LF, CRLF and a lone CR each
 * end a line; columns count characters, so UTF-8 continuation bytes add none. */
static int get(csv_reader *r)
{
    int c = peek(r);
    r->n_back--;
    r->at_line = r->line;
    r->at_col = r->col;
    if (c == '\n' || (c == '\r' && peek(r) != '\n')) {
        r->line++;
        r->col = 1;
    } else if (c != EOF && ((unsigned char)c & 0xC0) != 0x80) {
        r->col++;
    }
    return c;
}

static int fail(csv_reader *r, const char *why, unsigned line, unsigned col)
{
    r->err = why;
    r->err_line = line;
    r->err_col = col;
    return -1;
}

static int put(csv_reader *r, int c)
{
    if (r->len == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        char *b = realloc(r->buf, cap);
        if (b == NULL)
            return fail(r, "out of memory", r->at_line, r->at_col);
        r->buf = b;
        r->cap = cap;
    }
    r->buf[r->len++] = (char)c;
    return 0;
}

/* Starts a field at the position of the next byte. */
static int field_start(csv_reader *r, unsigned line, unsigned col)
{
    if (r->nf == r->capf) {
        size_t cap = r->capf ? r->capf * 2 : 16;
        size_t *offs = realloc(r->offs, cap * sizeof *offs);
        if (offs)
            r->offs = offs;
        size_t *lens = realloc(r->lens, cap * sizeof *lens);
        if (lens)
            r->lens = lens;
        unsigned *lines = realloc(r->lines, cap * sizeof *lines);
        if (lines)
            r->lines = lines;
        unsigned *cols = realloc(r->cols, cap * sizeof *cols);
        if (cols)
            r->cols = cols;
        char **ptrs = realloc(r->ptrs, cap * sizeof *ptrs);
        if (ptrs)
            r->ptrs = ptrs;
        if (!offs || !lens || !lines || !cols || !ptrs)
            return fail(r, "out of memory", line, col);
        r->capf = cap;
    }
    r->offs[r->nf] = r->len;
    r->lines[r->nf] = line;
    r->cols[r->nf] = col;
    r->nf++;
    return 0;
}

static int field_end(csv_reader *r)
{
    r->lens[r->nf - 1] = r->len - r->offs[r->nf - 1];
    return put(r, '\0');
}

/* A line break that ends a record: swallows the LF of a CRLF. */
static void line_end(csv_reader *r, int c)
{
    if (c == '\r' && peek(r) == '\n')
        get(r);
}

int csv_next(csv_reader *r, csv_record *rec)
{
    if (!r->started) {
        r->started = 1;
        skip_bom(r);
    }
    r->len = r->nf = 0;
    /* Lines without a character are no records. */
    while (peek(r) == '\n' || peek(r) == '\r')
        line_end(r, get(r));
    if (peek(r) == EOF)
        return ferror(r->f) ? fail(r, "read error", r->line, r->col) : 0;

    unsigned qline = 0, qcol = 0; /* the opening quote of the field in IN_QUOTED */
    csv_state st = AT_FIELD;
    if (field_start(r, r->line, r->col) < 0)
        return -1;
    rec->line = r->line;
    for (;;) {
        int c = get(r);
        switch (st) {
        case AT_FIELD:
        case IN_UNQUOTED:
            if (c == '"' && st == AT_FIELD) {
                st = IN_QUOTED;
                qline = r->at_line;
                qcol = r->at_col;
                continue;
            }
            if (c == '"')
                return fail(r, "quote inside an unquoted field (quote the whole field and double the quote)",
                            r->at_line, r->at_col);
            break;
        case IN_QUOTED:
            if (c == EOF) {
                snprintf(r->err_buf, sizeof r->err_buf, "quoted field opened at line %u, column %u is never closed",
                         qline, qcol);
                return fail(r, r->err_buf, qline, qcol);
            }
            if (c == '"')
                st = AFTER_QUOTE;
            else if (put(r, c) < 0)
                return -1;
            continue;
        case AFTER_QUOTE:
            if (c == '"') { /* a doubled quote is one quote */
                st = IN_QUOTED;
                if (put(r, c) < 0)
                    return -1;
                continue;
            }
            if (c != ',' && c != '\n' && c != '\r' && c != EOF)
                return fail(r, "unexpected character after a closing quote (expected a comma or a line end)",
                            r->at_line, r->at_col);
            break;
        }
        if (c == ',') {
            if (field_end(r) < 0 || field_start(r, r->line, r->col) < 0)
                return -1;
            st = AT_FIELD;
            continue;
        }
        if (c == '\n' || c == '\r' || c == EOF) {
            if (c == EOF && ferror(r->f))
                return fail(r, "read error", r->at_line, r->at_col);
            rec->end_line = r->at_line;
            rec->end_col = r->at_col;
            line_end(r, c);
            if (field_end(r) < 0)
                return -1;
            break;
        }
        st = IN_UNQUOTED;
        if (put(r, c) < 0)
            return -1;
    }
    for (size_t i = 0; i < r->nf; i++)
        r->ptrs[i] = r->buf + r->offs[i];
    rec->n = r->nf;
    rec->fields = r->ptrs;
    rec->lens = r->lens;
    rec->lines = r->lines;
    rec->cols = r->cols;
    return 1;
}
