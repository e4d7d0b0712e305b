/* clock.h - seconds on the monotonic clock, for waits, deadlines and the
 * time reports of every layer (a clock step is never a pause or a jump). */
#ifndef STREAMLR_UTIL_CLOCK_H
#define STREAMLR_UTIL_CLOCK_H

#include <time.h>

static inline double slr_monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
