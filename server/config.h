/* batchd's configuration: command-line flags, their defaults and the derived limits. */
#ifndef BATCHD_CONFIG_H
#define BATCHD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

/* One upstream target: --target NAME=URL[,concurrency=N][,rate=R]. */
typedef struct target_config {
    char *name;
    char *url;                /* base URL without a trailing slash */
    uint32_t max_concurrency; /* 0: only the global cap applies */
    double max_rate;          /* item starts per second; 0: unlimited */
} target_config;

enum store_sync { STORE_SYNC_FULL, STORE_SYNC_NORMAL };

typedef struct config {
    char *listen;                     /* host:port of the gRPC listener */
    target_config *targets;           /* the first is the default target */
    size_t n_targets;

    uint32_t max_items;               /* operations per batch */
    uint32_t sync_threshold;          /* auto mode answers batches up to this size synchronously */
    uint32_t max_inflight;            /* items running at once, all batches together */
    uint32_t default_concurrency;     /* BatchOptions.max_concurrency when 0 */
    uint32_t max_batch_concurrency;   /* cap of BatchOptions.max_concurrency */
    uint32_t max_attempts;            /* cap of BatchOptions.max_attempts */
    double max_rate;                  /* cap of BatchOptions.max_rate; 0: none */
    int64_t default_item_timeout_ns;  /* per attempt, when neither op nor batch says */
    int item_timeout_given;           /* --item-timeout was on the command line */
    int64_t max_item_timeout_ns;      /* larger per-op timeouts are refused, batch ones lowered */
    int64_t backoff_base_ns;          /* first retry delay before jitter */
    int64_t backoff_max_ns;           /* cap of any retry delay, Retry-After included */
    size_t max_body_bytes;            /* request body of one operation */
    size_t max_response_bytes;        /* response body kept per item */
    size_t max_sync_response_bytes;   /* SubmitBatchResponse with results */
    size_t max_request_bytes;         /* gRPC max receive size, derived from the limits */
    uint32_t max_watchers;            /* WatchBatch streams open at once */
    int64_t shutdown_grace_ns;        /* running items may finish during this long */
    int reflection;                   /* serve grpc.reflection */

    char *data_dir;                   /* NULL: in memory */
    enum store_sync sync;
    int64_t retention_ns;             /* ended batches are kept this long */
    int64_t idempotency_ttl_ns;       /* request_id and item keys are remembered this long */

    enum log_level log_level;
} config;

/* Fills cfg with the defaults. */
void config_defaults(config *cfg);

/* Parses argv into cfg (which holds the defaults). Returns 0 on success, 1 when the
 * process should exit 0 at once (--help, --version printed), -1 on a usage error
 * (message printed to stderr). */
int config_parse(config *cfg, int argc, char **argv);

/* Checks cross-flag rules and derives max_request_bytes. Returns 0, or -1 with a message
 * in err. */
int config_finish(config *cfg, char *err, size_t errlen);

/* Adds a target from NAME=URL[,concurrency=N][,rate=R]. Returns 0, or -1 with a message. */
int config_add_target(config *cfg, const char *spec, char *err, size_t errlen);

/* Frees what config_parse/config_add_target allocated. */
void config_free(config *cfg);


#endif
