/* Bytes in the JSON mapping: standard base64 with padding when printing; standard or
 * URL-safe, padded or not, when parsing. */
#include <stdint.h>
#include <stdlib.h>

#include "pbjson_int.h"

static const char base64_digits[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard alphabet with padding, as the mapping prints bytes. Malloc'd, NUL-terminated. */
char *pbjson__base64_encode(const uint8_t *data, size_t len, size_t *out_len)
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

int pbjson__parse_base64(conv *c, const struct path *p, const char *s, size_t len,
                         ProtobufCBinaryData *out)
{
    size_t pads = 0;
    while (pads < 2 && pads < len && s[len - pads - 1] == '=')
        pads++;
    size_t n = len - pads;
    /* Padding is optional, but when given it completes the last group of four. */
    if ((pads > 0 && len % 4 != 0) || n % 4 == 1) {
        pbjson__fail(c, p, false, "invalid base64: %zu characters cannot encode whole bytes", len);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (base64_digit(ch) >= 0)
            continue;
        if (ch > 0x20 && ch < 0x7f)
            pbjson__fail(c, p, false, "invalid base64: unexpected character '%c' at offset %zu",
                         ch, i);
        else
            pbjson__fail(c, p, false, "invalid base64: unexpected byte 0x%02x at offset %zu",
                         ch, i);
        return -1;
    }
    size_t out_len = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    uint8_t *data = NULL;
    if (out_len > 0 && (data = malloc(out_len)) == NULL) {
        pbjson__fail_oom(c, p);
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
