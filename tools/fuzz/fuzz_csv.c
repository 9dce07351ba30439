/* libFuzzer target: batchctl's RFC 4180 CSV reader (client/csv.h) over untrusted bytes,
 * read to the end or to the first error, checking what each record reports. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void broken(const char *what)
{
    fprintf(stderr, "fuzz_csv: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0; /* fmemopen refuses an empty buffer */
    FILE *f = fmemopen((void *)data, size, "r");
    if (f == NULL)
        abort();
    csv_reader *r = csv_new(f);
    if (r == NULL)
        abort();
    csv_record rec;
    int rc;
    unsigned last_line = 0;
    while ((rc = csv_next(r, &rec)) == 1) {
        if (rec.n == 0)
            broken("a record with no fields");
        if (rec.line < last_line || rec.end_line < rec.line)
            broken("record lines go backwards");
        last_line = rec.end_line;
        for (size_t i = 0; i < rec.n; i++) {
            /* Every byte of every field is read: ASan sees a short buffer. */
            if (rec.fields[i][rec.lens[i]] != '\0')
                broken("a field is not NUL-terminated at its length");
            if (rec.lens[i] > size)
                broken("a field is longer than the input");
            if (rec.lines[i] < rec.line || rec.lines[i] > rec.end_line || rec.cols[i] == 0)
                broken("a field starts outside its record");
            volatile unsigned sum = 0;
            for (size_t k = 0; k < rec.lens[i]; k++)
                sum += (unsigned char)rec.fields[i][k];
            (void)sum;
        }
    }
    if (rc < 0) {
        unsigned line = 0, col = 0;
        const char *why = csv_error(r, &line, &col);
        if (why == NULL || why[0] == '\0' || line == 0)
            broken("an error without a reason or a line");
        (void)strlen(why);
    } else if (rc != 0) {
        broken("csv_next returned neither 1, 0 nor -1");
    }
    csv_free(r);
    fclose(f);
    return 0;
}
