/* Where in a JSON text a conversion error is: pbjson_parse_text finds the failing path in
 * the text again and turns its byte offset into a line and column. */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "pbjson_int.h"

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
        default: /* a number or a literal, and a NUL byte after it: jansson skips that one */
            while (peek(sc) >= 0 && memchr(",]} \t\r\n", peek(sc), 7) == NULL)
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
bool pbjson__locate(const char *text, size_t len, const struct path *steps, size_t n,
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

void pbjson__position_at(const char *text, size_t offset, pbjson_position *pos)
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
