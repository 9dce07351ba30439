/* Clocks and google.protobuf.Duration / Timestamp conversions. Times are int64
 * nanoseconds: wall-clock since the Unix epoch, or monotonic for intervals. */
#ifndef BATCHD_PBTIME_H
#define BATCHD_PBTIME_H

#include <stdint.h>

#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"

#define PBTIME_NS_PER_SEC 1000000000LL
#define PBTIME_NS_PER_MS 1000000LL

int64_t pbtime_wall_ns(void);
int64_t pbtime_mono_ns(void);

/* Initialises *ts (a caller-owned struct) to ns since the epoch. */
void pbtime_timestamp_set(Google__Protobuf__Timestamp *ts, int64_t ns);
int64_t pbtime_timestamp_ns(const Google__Protobuf__Timestamp *ts);
void pbtime_duration_set(Google__Protobuf__Duration *d, int64_t ns);

/* Parses a duration as people write it on command lines: "500ms", "30s", "1.5m", "2h",
 * "7d", "250us", or a bare number of seconds. Returns 0 with *ns set, or -1. */
int pbtime_parse_duration(const char *s, int64_t *ns);

/* Converts d to nanoseconds. Returns -1 when d is not a valid Duration (nanos out of
 * range, or seconds and nanos of different signs) or does not fit in int64 ns. */
int pbtime_duration_ns(const Google__Protobuf__Duration *d, int64_t *ns);

#endif
