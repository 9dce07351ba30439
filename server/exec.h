/* The executor: starts items when every limit allows, fairly across batches, and turns
 * each attempt's outcome into a retry or a recorded result.
 *
 * Limits, all at once: the server's in-flight cap, each target's concurrency cap and
 * rate, each batch's max_concurrency and max_rate. Batches with startable work sit in a
 * round-robin ring; every pass gives each of them at most one start, so a huge batch
 * cannot starve a small one submitted after it. */
#ifndef BATCHD_EXEC_H
#define BATCHD_EXEC_H

#include <ev.h>
#include <stdint.h>

#include "batch.h"
#include "config.h"
#include "store.h"
#include "target.h"

typedef struct exec exec;

/* Told of each result once it is recorded (durable). Optional. Batch-level changes reach
 * whoever cares through the batch's observers (batch.h). */
typedef struct exec_hooks {
    void (*item_ended)(void *arg, batch *b, uint32_t index);
} exec_hooks;

/* targets (n of them, borrowed) are indexed by item->target; results are written to st
 * (borrowed) and count as recorded when it says they are durable. */
exec *exec_new(struct ev_loop *loop, const config *cfg, target *targets, size_t n_targets, store *st,
               const exec_hooks *hooks, void *hooks_arg);

/* Starts what the limits allow, if anything changed since the last call. The owner calls
 * it once per loop turn (from an ev_prepare), before flushing what watchers are owed. */
void exec_flush(exec *e);
/* Something outside changed (e.g. the store is healthy again): look at the queue again. */
void exec_kick(exec *e);
/* Every attempt must be over (exec_abort_all) before this. */
void exec_free(exec *e);

/* Starts running b (PENDING -> RUNNING; the summary is stored). Items that already ended
 * (recovered or reused results) are skipped. */
void exec_run(exec *e, batch *b);
/* Cancels what has not finished: pending items end CANCELLED, running ones are aborted and
 * end CANCELLED. Once the last result is recorded the batch ends in state (CANCELLED or
 * FAILED) with code/why as its error. No effect on a batch whose items all finished. */
void exec_cancel(exec *e, batch *b, Batch__V1__BatchState state, int code, const char *why);

/* Shutdown, step 1: start nothing new (running attempts go on and are recorded; retries
 * are not scheduled). */
void exec_drain(exec *e);
/* Shutdown, step 2: abort every running attempt and pending retry without recording a
 * result, so that a durable store runs them again after a restart. */
void exec_abort_all(exec *e);
uint32_t exec_inflight(const exec *e);

/* Unit-test access: the most attempts that were in flight at once. */
uint32_t exec_peak_inflight(const exec *e);

#endif
