/* Up-front validation of a SubmitBatchRequest: every problem is collected (none stops the
 * check), so a client fixes its batch in one round trip. */
#ifndef BATCHD_VALIDATE_H
#define BATCHD_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "batch/v1/batch.pb-c.h"
#include "config.h"
#include "rpcstatus.h"

/* Limits of one operation's fields, enforced here and documented in the README. */
#define VALIDATE_MAX_ID 128
#define VALIDATE_MAX_PATH 8192
#define VALIDATE_MAX_HEADERS 64
#define VALIDATE_MAX_HEADER_NAME 256
#define VALIDATE_MAX_HEADER_VALUE 8192
#define VALIDATE_MAX_IDEMPOTENCY_KEY 255
#define VALIDATE_MAX_LABELS 64
#define VALIDATE_MAX_LABEL_KEY 128
#define VALIDATE_MAX_LABEL_VALUE 256
#define VALIDATE_MAX_REQUEST_ID 128

/* Checks req; every violation becomes a BadRequest field violation in st. target_of[i]
 * receives the index of operation i's target. Returns the number of violations. */
size_t validate_request(const config *cfg, const Batch__V1__SubmitBatchRequest *req, rpcstatus *st,
                        uint8_t *target_of);

/* The options a batch runs with: defaults filled in, values above the server's caps
 * lowered to them. in may be NULL. Returns a new message (free_unpacked), NULL on ENOMEM.
 * Call only for a request that validated. */
Batch__V1__BatchOptions *validate_effective_options(const config *cfg, const Batch__V1__BatchOptions *in);

#endif
