/* Reading operations from JSON, NDJSON and CSV files as a stream: each operation is handed
 * to a sink as soon as it is read, with the line it starts on, so a large file is never held
 * in memory as text, as a parse tree and as messages at once. */
#ifndef BATCHCTL_INPUT_H
#define BATCHCTL_INPUT_H

#include <stdint.h>
#include <stdio.h>

#include "batch/v1/batch.pb-c.h"

typedef enum input_format {
    INPUT_AUTO,     /* from the file name's extension */
    INPUT_JSON,     /* a SubmitBatchRequest document (the protobuf JSON mapping) */
    INPUT_NDJSON,   /* one Operation per line */
    INPUT_CSV,      /* a header row, then one operation per row */
} input_format;

/* How CSV rows become operations. */
typedef struct input_csv_spec {
    const char *method;     /* NULL: POST */
    const char *path;       /* template: {column} is replaced by the row's value, URL-encoded */
    const char *id_column;  /* NULL: the row number (1 for the first row after the header) */
    int strings;            /* body values stay strings instead of numbers, booleans and null */
} input_csv_spec;

/* Where reading stopped and why. line and column are 1-based (column in characters);
 * 0 when not known. */
typedef struct input_error {
    unsigned line, column;
    char msg[512];
} input_error;

/* Receives each operation read. The sink owns op from then on (free it with
 * batch__v1__operation__free_unpacked). Returns 0 to go on, or -1 to stop reading after
 * filling *err. */
typedef int (*input_sink)(void *arg, Batch__V1__Operation *op, uint32_t line, input_error *err);

typedef struct input_source {
    FILE *f;                        /* read from its current position, not closed */
    input_format format;            /* not INPUT_AUTO */
    const input_csv_spec *csv;      /* for INPUT_CSV */
    input_sink sink;
    void *arg;
    /* For INPUT_JSON: the document's other fields (options, request_id, validate_only),
     * set by input_read when the document has any; the caller frees it. */
    Batch__V1__SubmitBatchRequest *rest;
} input_source;

/* The format a file name says by its extension (.json; .ndjson or .jsonl; .csv), or
 * INPUT_AUTO when it says none. */
input_format input_format_from_name(const char *name);
/* The format named "json", "ndjson" (or "jsonl") or "csv"; INPUT_AUTO for any other name. */
input_format input_format_parse(const char *s);

/* Reads every operation of src. 0 at the end of the input; -1 on a malformed input or when
 * the sink stopped, with *err filled. */
int input_read(input_source *src, input_error *err);

/* The readers input_read dispatches to. */
int input_read_json(input_source *src, input_error *err);
int input_read_ndjson(input_source *src, input_error *err);
int input_read_csv(input_source *src, input_error *err);

/* Fills *err (printf-style message) and returns -1. */
int input_fail(input_error *err, unsigned line, unsigned column, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
