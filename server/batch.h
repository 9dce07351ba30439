/* Batches and their items: the state every other module reads. Owned by the loop thread.
 *
 * An item keeps its operation and, once it ended, its result in packed protobuf form:
 * the same bytes go to watchers, ListResults, SubmitBatch answers and the store without
 * being built again. Counts and sequences change only through batch_item_* and
 * batch_set_state, which also tell the batch's observers. */
#ifndef BATCHD_BATCH_H
#define BATCHD_BATCH_H

#include <grpc/slice.h>
#include <stdint.h>

#include "batch/v1/batch.pb-c.h"
#include "list.h"

#define BATCH_ID_LEN 26 /* a ULID: 48-bit milliseconds + 80 random bits, Crockford base32 */

struct attempt;

/* An item ends in two steps: finished (its result is built and has a sequence number,
 * the store is writing it) and recorded (the store said it is durable). Clients see only
 * recorded results: state, counts and events change at the second step. */
typedef struct item {
    uint8_t state;          /* Batch__V1__ItemState as clients see it; a retry waiting its
                             * turn is PENDING, a finished item not yet recorded RUNNING/PENDING */
    uint8_t target;         /* index into the configured targets; 255: not configured any more */
    uint8_t outcome;        /* the ended state once finished, 0 before */
    uint8_t reused;         /* the result came from an earlier success with its key */
    uint8_t has_key;        /* the operation carries an idempotency_key */
    uint16_t attempts;      /* attempts started */
    uint32_t seq;           /* sequence number once finished, else 0 */
    uint8_t *op;            /* packed Operation, owned */
    uint32_t op_len;
    grpc_slice result;      /* packed ItemResult once finished (owned reference), else empty */
    struct attempt *att;    /* executor state while running or waiting for a retry */
} item;

#define ITEM_TARGET_GONE 255

typedef struct batch batch;

/* Told about changes of one batch. Every callback is optional; they run on the loop thread
 * inside the change, so they must only note the change and schedule their work. An
 * observer may remove itself (batch_unobserve) from inside its callback. */
typedef struct batch_observer {
    list_node link;
    void (*item_ended)(struct batch_observer *o, batch *b, uint32_t index);
    void (*changed)(struct batch_observer *o, batch *b); /* state or counts */
    void (*ended)(struct batch_observer *o, batch *b);   /* reached a terminal state */
    void (*freed)(struct batch_observer *o, batch *b);   /* the batch is going away */
} batch_observer;

struct batch {
    char id[BATCH_ID_LEN + 1];
    Batch__V1__BatchState state;
    Batch__V1__BatchOptions *options; /* effective options; owned (free_unpacked) */
    char *request_id;                 /* NULL if none */
    uint8_t fingerprint[32];          /* of the request, for request_id replays */

    uint32_t total;
    uint32_t n_pending, n_running, n_succeeded, n_failed, n_cancelled;
    uint64_t last_sequence;           /* recorded items: sequences 1..last_sequence */
    uint64_t next_seq;                /* finished items (recorded or being written) */
    int64_t create_ns, start_ns, end_ns; /* wall clock; 0 = not yet */
    item *items;                      /* NULL once evicted: the store has them */
    uint32_t *by_seq;                 /* by_seq[s - 1] = index of the item with sequence s */

    int error_code;                   /* why it ended FAILED/CANCELLED (grpc status), 0 = none */
    char *error_message;
    /* Decided by a cancel or stop_on_failure, applied when the last result is recorded. */
    Batch__V1__BatchState end_state;  /* 0: the natural outcome */

    /* Executor state. */
    struct exec *exec;                /* running it, once exec_run was called */
    uint32_t next_index;              /* first item never dispatched */
    list_node retry_ready;            /* attempts whose backoff is over, FIFO */
    uint32_t running;                 /* attempts in flight */
    double tokens;                    /* rate-limit bucket */
    int64_t tokens_ns;                /* when tokens was last refilled (monotonic) */
    list_node run_link;               /* in the executor's round-robin ring */

    list_node observers;
    list_node all_link;               /* registry, newest first */
    batch *hash_next;
    grpc_slice snapshot;              /* packed Batch, valid while snapshot_valid */
    int snapshot_valid;
    int refs;                         /* holders besides the registry (e.g. a store write) */
};

/* ---- registry ------------------------------------------------------------------ */

typedef struct batch_registry {
    batch **buckets;
    size_t n_buckets, count;
    list_node all;                    /* newest first */
    uint64_t id_last_ms;
    uint8_t id_last_rand[10];
} batch_registry;

int batch_registry_init(batch_registry *r);
/* Frees every batch (observers get freed()). */
void batch_registry_free(batch_registry *r);

/* A new, empty PENDING batch with a fresh id, holding n items (all PENDING, no op yet).
 * Not yet in the registry. NULL on ENOMEM. */
batch *batch_new(batch_registry *r, uint32_t n);
/* A batch rebuilt from a stored snapshot (packed Batch): id, state, options, times, counts,
 * error. With items = 0 it is a summary (an ended batch whose items stay in the store);
 * otherwise it holds total items, all PENDING, for recovery to fill. NULL if the snapshot
 * does not unpack or on ENOMEM. */
batch *batch_from_snapshot(grpc_slice snapshot, int items);
/* Makes b findable. It must have a unique id. */
void batch_register(batch_registry *r, batch *b);
batch *batch_find(const batch_registry *r, const char *id);
/* Removes b from the registry and frees it, or defers the free while refs > 0. */
void batch_release(batch_registry *r, batch *b);
/* Drops one holder's reference; frees b if it left the registry and none remain. */
void batch_unref(batch *b);
/* Frees a batch that was never registered. */
void batch_free(batch *b);

/* ---- state changes --------------------------------------------------------------- */

int batch_state_terminal(Batch__V1__BatchState s);
int batch_item_state_ended(int s);

/* PENDING -> RUNNING (sets start time). */
void batch_start(batch *b);
/* Item idx started running (first attempt or a retry). */
void batch_item_running(batch *b, uint32_t idx);
/* Item idx went back to waiting for a retry. */
void batch_item_waiting(batch *b, uint32_t idx);
/* Item idx finished in state (SUCCEEDED, FAILED or CANCELLED) with its packed result, whose
 * reference is taken, and sequence number b->next_seq + 1 (which the result carries).
 * Nothing is visible to clients until batch_item_record_next. */
void batch_item_finish(batch *b, uint32_t idx, int state, grpc_slice result);
/* The next finished item in sequence order became durable: it ends for clients (state,
 * counts, last_sequence) and the observers are told. Returns its index. */
uint32_t batch_item_record_next(batch *b);
/* Whether every item finished (results may still be being written). */
int batch_all_finished(const batch *b);
/* Frees the items of an ended batch, keeping its summary (the store has the rest). */
void batch_evict(batch *b);
/* Sets a terminal state (and end time) with an optional reason; tells the observers. */
void batch_end(batch *b, Batch__V1__BatchState state, int code, const char *why);
/* The terminal state the counts call for once every item ended. */
Batch__V1__BatchState batch_outcome(const batch *b);
/* ended items / total */
double batch_progress(const batch *b);

void batch_observe(batch *b, batch_observer *o);
void batch_unobserve(batch_observer *o);

/* ---- protobuf views ---------------------------------------------------------------- */

/* The packed Batch message. The slice is a new reference (grpc_slice_unref it). Cached
 * until the next change. */
grpc_slice batch_snapshot(batch *b);

/* Storage that backs a Batch message built by batch_to_pb (no allocation). */
typedef struct batch_pb {
    Batch__V1__Batch msg;
    Batch__V1__Counts counts;
    Google__Protobuf__Timestamp create_time, start_time, end_time;
    Google__Rpc__Status error;
} batch_pb;

/* Fills pb to describe b. pb borrows b's strings: use it before b changes. */
void batch_to_pb(const batch *b, batch_pb *pb);

/* The item's id: the operation's id, or its index in decimal when it has none. Writes to
 * buf (at least 129 bytes) when needed and returns a pointer valid as long as buf and op. */
const char *batch_item_id(const Batch__V1__Operation *op, uint32_t index, char *buf);

/* Unpacks the operation of item idx. Free with batch__v1__operation__free_unpacked. */
Batch__V1__Operation *batch_item_op(const batch *b, uint32_t idx);

#endif
