/* Input formats: naming them, and dispatching to the reader of each. */
#include "input.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>

input_format input_format_parse(const char *s)
{
    if (strcasecmp(s, "json") == 0)
        return INPUT_JSON;
    if (strcasecmp(s, "ndjson") == 0 || strcasecmp(s, "jsonl") == 0)
        return INPUT_NDJSON;
    if (strcasecmp(s, "csv") == 0)
        return INPUT_CSV;
    return INPUT_AUTO;
}

input_format input_format_from_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot == NULL || strchr(dot, '/'))
        return INPUT_AUTO;
    return input_format_parse(dot + 1);
}

int input_fail(input_error *err, unsigned line, unsigned column, const char *fmt, ...)
{
    err->line = line;
    err->column = column;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int input_read(input_source *src, input_error *err)
{
    memset(err, 0, sizeof *err);
    switch (src->format) {
    case INPUT_JSON:
        return input_read_json(src, err);
    case INPUT_NDJSON:
        return input_read_ndjson(src, err);
    case INPUT_CSV:
        return input_read_csv(src, err);
    default:
        return input_fail(err, 0, 0, "unknown input format");
    }
}
