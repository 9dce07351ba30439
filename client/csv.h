/* An RFC 4180 CSV reader over a FILE: quoted fields with doubled quotes, commas and line
 * breaks inside quotes, CRLF or LF line ends, a leading UTF-8 byte order mark. Reads one
 * record at a time; memory is one record's worth. */
#ifndef BATCHCTL_CSV_H
#define BATCHCTL_CSV_H

#include <stddef.h>
#include <stdio.h>

typedef struct csv_reader csv_reader;

/* One record. The pointers stay valid until the next csv_next or csv_free. */
typedef struct csv_record {
    size_t n;                 /* fields */
    char **fields;            /* NUL-terminated; a field may also hold NUL bytes: see lens */
    size_t *lens;
    unsigned *lines, *cols;   /* where each field starts (1-based; cols in characters) */
    unsigned line;            /* where the record starts */
    unsigned end_line, end_col; /* where it ends (the line break or end of file) */
} csv_record;

/* A reader of f (borrowed, read from its current position). NULL on ENOMEM. */
csv_reader *csv_new(FILE *f);
void csv_free(csv_reader *r);

/* Reads the next record into *rec. Lines with no characters at all are skipped (so a
 * final line break is not an empty record). Returns 1, 0 at the end of the input, or -1
 * on malformed input: csv_error then says what and where. */
int csv_next(csv_reader *r, csv_record *rec);

/* The reason for the last -1 (static or owned by r), with its line and column. */
const char *csv_error(const csv_reader *r, unsigned *line, unsigned *col);

#endif
