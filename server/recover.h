/* Recovery at start from the store (see recover.c). */
#ifndef BATCHD_RECOVER_H
#define BATCHD_RECOVER_H

#include <stddef.h>

#include "app.h"

/* Loads every stored batch and the idempotency keys younger than the TTL into a (before it
 * serves). Returns 0, or -1 with a message in err: a store that cannot be read back is an
 * error at start, never a silently empty server. */
int recover_load(app *a, char *err, size_t errlen);
/* Runs the unfinished batches again, oldest first. */
void recover_resume(app *a);

#endif
