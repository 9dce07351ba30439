/* Building a SubmitBatchRequest one operation at a time, submitting it and following the
 * batch: what submit (operations read from a file, cmd_submit.c) and retry (operations read
 * from batchd, cmd_retry.c) share. See the top of cmd_submit.c for how the operations are
 * held: packed, not as messages. */
#ifndef BATCHCTL_SUBMIT_H
#define BATCHCTL_SUBMIT_H

#include <stddef.h>
#include <stdint.h>

#include "batchctl.h"

typedef struct builder {
    bctl *ctl;
    Batch__V1__SubmitBatchRequest *req;  /* everything but the operations */
    uint8_t *packed;          /* the operations, packed back to back, each after its length */
    size_t packed_len, packed_cap;
    uint32_t *op_len;         /* bytes of operation i in packed, its length prefix included */
    uint32_t *line_of;        /* input line of operation i (0: not from a file) */
    size_t n_ops, cap;
} builder;

/* 0, or -1 on ENOMEM. builder_free is safe after either. */
int builder_init(builder *b, bctl *ctl);
void builder_free(builder *b);

/* Appends op (copied: the caller keeps it). 0, or -1 on ENOMEM. */
int builder_pack(builder *b, const Batch__V1__Operation *op, uint32_t line);

/* Sets a string field of a message, which the message then frees. 0, or -1 on ENOMEM. */
int msg_set_string(char **field, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets label key (klen bytes) to value, replacing the value a label of that key had. */
int options_set_label(Batch__V1__BatchOptions *bo, const char *key, size_t klen, const char *value);

/* Applies the batch flags (--concurrency, --label...) over bo, and asks for MODE_ASYNC.
 * 0, or -1 on ENOMEM. */
int options_apply_flags(const bctl_opts *o, Batch__V1__BatchOptions *bo);

/* Submits b->req with the operations packed in b, then (unless --async or validate_only)
 * follows the batch, writes its results and prints the summary, as submit does. what names
 * the operations in messages ("users.csv", "the retry of batch X"); file, when they were
 * read from one, traces invalid operations to their lines (NULL: not from a file). Frees
 * the operations once batchd has them. Returns the exit status. */
int submit_and_follow(builder *b, const char *what, const char *file);

#endif
