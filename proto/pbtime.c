/* Clock reads and protobuf Duration/Timestamp conversions. */
#include "pbtime.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * PBTIME_NS_PER_SEC + ts.tv_nsec;
}

int64_t pbtime_wall_ns(void) { return clock_ns(CLOCK_REALTIME); }
int64_t pbtime_mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

void pbtime_timestamp_set(Google__Protobuf__Timestamp *ts, int64_t ns)
{
    google__protobuf__timestamp__init(ts);
    int64_t s = ns / PBTIME_NS_PER_SEC, n = ns % PBTIME_NS_PER_SEC;
    if (n < 0) { /* Timestamp nanos are always non-negative */
        s -= 1;
        n += PBTIME_NS_PER_SEC;
    }
    ts->seconds = s;
    ts->nanos = (int32_t)n;
}

int64_t pbtime_timestamp_ns(const Google__Protobuf__Timestamp *ts)
{
    return ts->seconds * PBTIME_NS_PER_SEC + ts->nanos;
}

void pbtime_duration_set(Google__Protobuf__Duration *d, int64_t ns)
{
    google__protobuf__duration__init(d);
    d->seconds = ns / PBTIME_NS_PER_SEC; /* same sign for both parts, as Duration requires */
    d->nanos = (int32_t)(ns % PBTIME_NS_PER_SEC);
}

int pbtime_parse_duration(const char *s, int64_t *ns)
{
    static const struct {
        const char *suffix;
        double ns;
    } units[] = {{"", 1e9}, {"s", 1e9}, {"ms", 1e6}, {"us", 1e3}, {"m", 60e9}, {"h", 3600e9}, {"d", 86400e9}};
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0 || isspace((unsigned char)*s))
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            double r = v * units[i].ns;
            if (r > 9.2e18)
                return -1;
            *ns = (int64_t)r;
            return 0;
        }
    }
    return -1;
}

int pbtime_duration_ns(const Google__Protobuf__Duration *d, int64_t *ns)
{
    if (d->nanos <= -PBTIME_NS_PER_SEC || d->nanos >= PBTIME_NS_PER_SEC)
        return -1;
    if ((d->seconds > 0 && d->nanos < 0) || (d->seconds < 0 && d->nanos > 0))
        return -1;
    const int64_t max_s = INT64_MAX / PBTIME_NS_PER_SEC - 1;
    if (d->seconds > max_s || d->seconds < -max_s)
        return -1;
    *ns = d->seconds * PBTIME_NS_PER_SEC + d->nanos;
    return 0;
}
