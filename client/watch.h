/* Following a batch over WatchBatch until it ends, for submit, retry and watch: progress
 * on the display, every event to a callback, and reconnection when the stream breaks. */
#ifndef BATCHCTL_WATCH_H
#define BATCHCTL_WATCH_H

#include "batchctl.h"

/* Reconnection: the first wait, doubled after each failed attempt up to the cap, with
 * +-20% jitter so that many clients of a restarted server do not come back in step. */
#define WATCH_BACKOFF_FIRST_S 0.25
#define WATCH_BACKOFF_MAX_S 5.0
/* How long one read waits before the display is refreshed and Ctrl-C looked at. */
#define WATCH_POLL_S 0.1
/* The fastest progress events are asked for: the bar's redraw rate. */
#define WATCH_MIN_INTERVAL_NS 100000000

typedef enum watch_end {
    WATCH_ENDED,        /* the batch reached a final state */
    WATCH_INTERRUPTED,  /* Ctrl-C */
    WATCH_ERROR,        /* the reason was printed */
} watch_end;

typedef struct watch_req {
    const char *batch_id;
    int include_items;  /* ask for an event per ended item */
    /* Called for every event, in order; a replayed item already seen is not passed again.
     * Returns 0, or -1 to stop (after printing why). NULL: no callback. */
    int (*on_event)(void *arg, const Batch__V1__BatchEvent *ev);
    void *arg;
} watch_req;

/* Follows the batch. Once a stream has been established, a break with UNAVAILABLE (the
 * server went away, the network failed), CANCELLED by the server, or an early end is retried with backoff for up to
 * --reconnect-timeout, resuming after the last item sequence seen, so that no item event is
 * lost or repeated; NOT_FOUND after a reconnection means the server lost the batch and ends
 * the watch. On WATCH_ENDED *final is the final batch (caller frees with
 * batch__v1__batch__free_unpacked); otherwise *final is NULL. */
watch_end watch_follow(bctl *ctl, const watch_req *req, progress *pg, Batch__V1__Batch **final);

/* After Ctrl-C while following batch id: cancels it (--cancel-on-interrupt) or says how to
 * follow it again. Returns BCTL_EXIT_INTERRUPTED. */
int watch_interrupted(bctl *ctl, progress *pg, const char *id);

/* Exit status for a batch that ended in state. */
int watch_exit_status(int state);

#endif
