/* What batchctl prints on stdout: item results as NDJSON, CSV or a JSON array (written as
 * they arrive, so results are never collected in memory), a batch's details, the batch
 * table of `list`, and protobuf messages as JSON lines. */
#ifndef BATCHCTL_OUTPUT_H
#define BATCHCTL_OUTPUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "batch/v1/batch.pb-c.h"

typedef enum out_format {
    OUT_AUTO,    /* from the output file's extension, else NDJSON */
    OUT_NDJSON,  /* one ItemResult (protobuf JSON mapping) per line */
    OUT_CSV,     /* id,state,http_status,error */
    OUT_JSON,    /* a JSON array of ItemResult */
} out_format;

/* The format named "ndjson" (or "jsonl"), "csv" or "json"; OUT_AUTO for any other. */
out_format out_format_parse(const char *s);
/* The format an output file name says by its extension; OUT_NDJSON when it says none. */
out_format out_format_from_name(const char *name);

/* Writes results one at a time. f is borrowed. */
typedef struct out_writer {
    FILE *f;
    out_format fmt;
    size_t n;       /* results written */
} out_writer;

/* Each returns 0, or -1 when writing failed (errno set by stdio) or a result could not be
 * converted to JSON. */
int out_begin(out_writer *w, FILE *f, out_format fmt);
int out_result(out_writer *w, const Batch__V1__ItemResult *r);
int out_end(out_writer *w);

/* "SUCCEEDED", "COMPLETED_WITH_FAILURES"...: the enum value's name without its prefix. */
const char *out_item_state(int state);
const char *out_batch_state(int state);

/* One message as compact JSON on a line of its own. 0, or -1 (message printed to err). */
int out_json_line(FILE *f, const ProtobufCMessage *m, FILE *err);

/* `get`: the batch as "name: value" lines. */
void out_batch_details(FILE *f, const Batch__V1__Batch *b);
/* `list`: a table with a header row, columns padded to their widest cell. */
void out_batch_table(FILE *f, Batch__V1__Batch *const *b, size_t n);

/* A duration as "1.2s", "3m05s", "2h01m". */
void out_duration(char *buf, size_t len, int64_t ns);
/* A CSV field, quoted when it holds a comma, quote, CR or LF (RFC 4180). */
void out_csv_field(FILE *f, const char *s);

#endif
