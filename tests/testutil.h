/* testutil.h - small helpers shared by the Check suites: a deterministic RNG
 * (splitmix64) and temporary directories. */
#ifndef STREAMLR_TESTUTIL_H
#define STREAMLR_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct test_rng {
    uint64_t s;
} test_rng;

static inline uint64_t test_rng_next(test_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) */
static inline double test_rng_unif(test_rng *r)
{
    return (double)(test_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static inline uint64_t test_rng_below(test_rng *r, uint64_t n)
{
    return test_rng_next(r) % n;
}

static inline double test_rng_normal(test_rng *r)
{
    double u1 = test_rng_unif(r), u2 = test_rng_unif(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* A fresh directory under $TMPDIR (or /tmp); the caller removes it. */
static inline char *test_mkdtemp(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/streamlr-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        abort();
    }
    return path;
}

static inline void test_rmtree(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", path);
}

/* |a - b| <= rel * max(|a|, |b|) + abs_floor */
static inline int test_close(double a, double b, double rel, double abs_floor)
{
    double d = fabs(a - b), m = fmax(fabs(a), fabs(b));
    return d <= rel * m + abs_floor;
}

#endif
