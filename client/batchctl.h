/* The context every batchctl command runs in: the parsed options, the connection to
 * batchd, the output streams, the progress display settings and the interrupt flag. */
#ifndef BATCHCTL_H
#define BATCHCTL_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "options.h"
#include "progress.h"
#include "rpcclient.h"

/* Exit statuses: the contract scripts rely on. */
enum {
    BCTL_EXIT_OK = 0,            /* every item succeeded, or the command did what it says */
    BCTL_EXIT_ERROR = 1,         /* not accepted: usage, input, connection, validation */
    BCTL_EXIT_ITEMS_FAILED = 2,  /* the batch ended with failed or cancelled items */
    BCTL_EXIT_INTERRUPTED = 130, /* Ctrl-C: 128 + SIGINT, as shells report it */
};

#define BCTL_M_SUBMIT "/batch.v1.BatchService/SubmitBatch"
#define BCTL_M_WATCH "/batch.v1.BatchService/WatchBatch"
#define BCTL_M_GET "/batch.v1.BatchService/GetBatch"
#define BCTL_M_LIST "/batch.v1.BatchService/ListBatches"
#define BCTL_M_CANCEL "/batch.v1.BatchService/CancelBatch"
#define BCTL_M_RESULTS "/batch.v1.BatchService/ListResults"
#define BCTL_M_OPERATIONS "/batch.v1.BatchService/ListOperations"

typedef struct bctl {
    const bctl_opts *o;
    FILE *out, *err;                     /* stdout and stderr, borrowed */
    progress_config progress;            /* how to show progress on err */
    volatile sig_atomic_t *interrupted;  /* set by the SIGINT handler; may be NULL */
    rpcclient *rpc;                      /* made by bctl_rpc on first use; bctl_close frees it */
} bctl;

rpcclient *bctl_rpc(bctl *ctl);
void bctl_close(bctl *ctl);
int bctl_interrupted(const bctl *ctl);
double bctl_timeout_s(const bctl *ctl);

/* A unary call with --timeout. Returns the answer (caller frees with
 * protobuf_c_message_free_unpacked), or NULL after printing why it failed (diag_rpc).
 * st, when not NULL, receives the status (caller clears it). */
ProtobufCMessage *bctl_call(bctl *ctl, const char *method, const ProtobufCMessage *req,
                            const ProtobufCMessageDescriptor *resp_desc, rpcclient_status *st);

/* Sleeps up to s seconds; returns -1 early if Ctrl-C was pressed. */
int bctl_sleep(const bctl *ctl, double s);

/* " --server ADDR" when the server is not the default one, for hints that can be pasted. */
const char *bctl_server_hint(const bctl *ctl, char *buf, size_t len);

int bctl_batch_ended(int state);

#endif
