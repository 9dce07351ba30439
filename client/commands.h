/* The batchctl commands. Each takes the context and returns the process's exit status
 * (BCTL_EXIT_*), having printed what went wrong. */
#ifndef BATCHCTL_COMMANDS_H
#define BATCHCTL_COMMANDS_H

#include "batchctl.h"

int cmd_submit(bctl *ctl);
int cmd_retry(bctl *ctl);
int cmd_watch(bctl *ctl);
int cmd_get(bctl *ctl);
int cmd_list(bctl *ctl);
int cmd_cancel(bctl *ctl);
int cmd_results(bctl *ctl);

/* Streams the recorded results of batch id (only those in state, unless 0), in input
 * order, to fn; each result is freed after fn returns. Returns 0, or -1 after printing why
 * (a failed call, no answer within --timeout, or fn returning -1). */
int cmd_each_result(bctl *ctl, const char *id, int state,
                    int (*fn)(void *arg, const Batch__V1__ItemResult *r), void *arg);

/* Whether --output (if given) can be written, checked before anything is submitted, so that
 * a typo does not cost a batch's results. 0, or -1 after printing why. */
int cmd_output_writable(bctl *ctl);

/* Writes the results of batch id (state as above) to --output, or stdout, in --format-out.
 * Returns 0, or -1 after printing why. */
int cmd_write_results(bctl *ctl, const char *id, int state);

#endif
