/* NDJSON input: one Operation in the protobuf JSON mapping per line. Blank lines are
 * skipped; only one line is held in memory at a time. */
#include <stdlib.h>
#include <string.h>

#include "input.h"
#include "pbjson.h"

static int blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

int input_read_ndjson(input_source *src, input_error *err)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned lineno = 0;
    int rc = 0;
    while ((len = getline(&line, &cap, src->f)) >= 0) {
        lineno++;
        if (lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
            memmove(line, line + 3, (size_t)len - 2); /* a byte order mark is no content */
            len -= 3;
        }
        if (blank(line, (size_t)len))
            continue;
        char *why = NULL;
        pbjson_position pos = {0};
        ProtobufCMessage *m = pbjson_parse_text(&batch__v1__operation__descriptor, line, (size_t)len, NULL, &why, &pos);
        if (m == NULL) {
            /* A whole batch document on one line is a common slip: say what to do. */
            int doc = why && strncmp(why, "operations: unknown field", 25) == 0;
            rc = input_fail(err, lineno, (unsigned)pos.column, "%s%s", why ? why : "out of memory",
                            doc ? " (this line is a batch document: use a .json file or --format json)" : "");
            free(why);
            break;
        }
        if (src->sink(src->arg, (Batch__V1__Operation *)m, lineno, err) < 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(src->f))
        rc = input_fail(err, lineno, 0, "read error");
    free(line);
    return rc;
}
