/* Background housekeeping on a timer: ended batches older than --retention are deleted
 * (memory and store), ended batches' items leave memory once a durable store holds them,
 * and idempotency keys older than --idempotency-ttl are forgotten. */
#ifndef BATCHD_SWEEP_H
#define BATCHD_SWEEP_H

#include "app.h"

/* An ended batch keeps its items in memory this long before a durable store alone has
 * them: recent batches (sync answers, watchers catching up) are served from memory. */
#define SWEEP_EVICT_AFTER_NS (30LL * 1000000000LL)

void sweep_start(app *a);
void sweep_stop(app *a);
/* One pass now. Returns the number of batches deleted. */
unsigned sweep_run(app *a);

#endif
