/* bench_stages.c - where an example's time goes: each stage of training
 * timed alone on one thread, over a file held in memory (no I/O).
 *
 *   decode   bytes -> raw example (slr_decoder_next)
 *   + hash   bytes -> hashed example, as training does it
 *            (slr_decoder_next_example; the compact msgpack form skips
 *            the raw example, so it can be faster than decoding alone)
 *   learn    slr_learner_learn on the hashed examples, with and without
 *            prefetching the weights of the example two ahead, and with the
 *            penalty switched off, to separate memory, arithmetic and the
 *            lazy catch-up.
 * Each figure is thread CPU time, the best of --repeat runs (the least
 * disturbed by other load), in nanoseconds per example.  Built by `make`, not installed; run
 * through `tools/bench stages`. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "learner/learner_impl.h" /* to touch the table before timing */
#include "streamlr/decode.h"
#include "streamlr/learner.h"

/* CPU time of this thread: other load on the machine (this is a shared
 * 2-core box) takes the CPU away but does not count against us. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct corpus {
    uint64_t n;
    uint64_t *start;      /* features of example i: feats[start[i] .. start[i+1]) */
    slr_feature *feats;
    double *label;
} corpus;

static void die(const char *what)
{
    fprintf(stderr, "bench-stages: %s\n", what);
    exit(1);
}

/* One pass over the bytes: time decoding alone and decoding + hashing, and
 * keep the hashed examples (on the second pass). */
static double decode_pass(const char *data, size_t size, slr_format fmt, const slr_hashing *h,
                          bool hash, corpus *keep)
{
    slr_decoder *d;
    slr_error err;
    if (slr_decoder_create(&d, fmt, &err) != SLR_OK)
        die(err.msg);
    slr_raw_example raw;
    slr_example ex;
    slr_raw_example_init(&raw);
    slr_example_init(&ex, h);
    uint64_t n = 0, nf = 0;
    double t0 = now();
    for (size_t off = 0; off < size;) {
        size_t used = 0;
        slr_decode_result r =
            hash ? slr_decoder_next_example(d, data + off, size - off, true, &used, &raw, &ex, &err)
                 : slr_decoder_next(d, data + off, size - off, true, &used, &raw, &err);
        off += used;
        if (r != SLR_DECODE_EXAMPLE)
            continue;
        if (hash) {
            if (keep) {
                keep->start[n] = nf;
                memcpy(keep->feats + nf, ex.features, ex.n_features * sizeof *ex.features);
                keep->label[n] = ex.label;
                nf += ex.n_features;
            }
        }
        n++;
    }
    double t = now() - t0;
    if (keep) {
        keep->n = n;
        keep->start[n] = nf;
    }
    slr_example_free(&ex);
    slr_raw_example_free(&raw);
    slr_decoder_destroy(d);
    return n ? t / (double)n * 1e9 : 0.0;
}

/* Time to first touch every page of a fresh table (the kernel zeroes it):
 * paid once per run, by whichever example first lands on each page. */
static double first_touch_ms(const slr_learner_config *cfg)
{
    slr_learner *l;
    slr_error err;
    if (slr_learner_create(&l, cfg, &err) != SLR_OK)
        die(err.msg);
    double t0 = now();
    memset(l->slots, 0, (l->n_slots + 1) * sizeof *l->slots);
    double t = now() - t0;
    slr_learner_destroy(l);
    return t * 1e3;
}

static double learn_pass(const corpus *c, const slr_learner_config *cfg, int prefetch, double *loss_out)
{
    slr_learner *l;
    slr_error err;
    if (slr_learner_create(&l, cfg, &err) != SLR_OK)
        die(err.msg);
    memset(l->slots, 0, (l->n_slots + 1) * sizeof *l->slots); /* first touch, not timed */
    slr_example ex, next;
    memset(&ex, 0, sizeof ex);
    ex.weight = 1.0;
    ex.has_label = true;
    next = ex;
    double loss_sum = 0.0;
    double t0 = now();
    for (uint64_t i = 0; i < c->n; i++) {
        if (prefetch && i + (uint64_t)prefetch < c->n) {
            uint64_t k = i + (uint64_t)prefetch;
            next.features = c->feats + c->start[k];
            next.n_features = (uint32_t)(c->start[k + 1] - c->start[k]);
            slr_learner_prefetch(l, &next);
        }
        ex.features = c->feats + c->start[i];
        ex.n_features = (uint32_t)(c->start[i + 1] - c->start[i]);
        ex.label = c->label[i];
        double loss;
        slr_learner_learn(l, &ex, &loss);
        loss_sum += loss;
    }
    double t = now() - t0;
    slr_learner_destroy(l);
    if (loss_out)
        *loss_out = loss_sum / (double)c->n;
    return t / (double)c->n * 1e9;
}

static double best(double a, double b) { return a < b ? a : b; }

int main(int argc, char **argv)
{
    const char *path = NULL, *format = NULL;
    unsigned bits = 24;
    double l1 = 1e-7, l2 = 1e-7;
    int repeat = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--format") && i + 1 < argc)
            format = argv[++i];
        else if (!strcmp(argv[i], "-b") && i + 1 < argc)
            bits = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--l1") && i + 1 < argc)
            l1 = atof(argv[++i]);
        else if (!strcmp(argv[i], "--l2") && i + 1 < argc)
            l2 = atof(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else
            die("usage: bench-stages --format F [-b BITS] [--l1 X] [--l2 Y] [--repeat N] FILE");
    }
    slr_format fmt;
    slr_error err;
    if (!path || !format || slr_format_parse(format, &fmt, &err) != SLR_OK)
        die("usage: bench-stages --format F [-b BITS] [--l1 X] [--l2 Y] [--repeat N] FILE");

    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0)
        die("cannot open the input");
    size_t size = (size_t)sb.st_size;
    char *data = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (data == MAP_FAILED)
        die("cannot map the input");

    slr_learner_config cfg;
    slr_learner_config_defaults(&cfg);
    slr_hashing_init(&cfg.hashing, bits);
    cfg.l1 = l1;
    cfg.l2 = l2;

    /* every record is at least 8 bytes; 64 features each is plenty here */
    uint64_t max_n = size / 8 + 1;
    corpus c = {0};
    c.start = malloc((max_n + 1) * sizeof *c.start);
    c.label = malloc(max_n * sizeof *c.label);
    c.feats = malloc((size / 4 + 64) * sizeof *c.feats);
    if (!c.start || !c.label || !c.feats)
        die("out of memory");

    double dec = 1e30, hashed = 1e30;
    for (int r = 0; r < repeat; r++) {
        dec = best(dec, decode_pass(data, size, fmt, &cfg.hashing, false, NULL));
        hashed = best(hashed, decode_pass(data, size, fmt, &cfg.hashing, true, r == 0 ? &c : NULL));
    }
    if (getenv("BENCH_STAGES_DECODE_ONLY")) { /* for perf record of the decoding side */
        for (int r = 0; r < 5 * repeat; r++)
            hashed = best(hashed, decode_pass(data, size, fmt, &cfg.hashing, true, NULL));
        printf("decode + hash: %.0f ns/example\n", hashed);
        return 0;
    }
    uint64_t nf = c.start[c.n];
    printf("%s: %llu examples, %.1f features each, %.0f bytes each, -b %u, l1 %g, l2 %g\n", path,
           (unsigned long long)c.n, (double)nf / (double)c.n, (double)size / (double)c.n, bits, l1, l2);
    printf("  %-44s %8.0f ns/example\n", "decode to a raw example", dec);
    printf("  %-44s %8.0f ns/example\n", "decode and hash (what training does)", hashed);

    if (getenv("BENCH_STAGES_PROFILE")) { /* one configuration only, for perf record */
        double loss;
        int ahead = getenv("BENCH_STAGES_AHEAD") ? atoi(getenv("BENCH_STAGES_AHEAD")) : 2;
        for (int r = 0; r < repeat; r++)
            printf("learn, prefetch %d ahead: %.0f ns/example\n", ahead, learn_pass(&c, &cfg, ahead, &loss));
        return 0;
    }
    slr_learner_config nopen = cfg;
    nopen.l1 = nopen.l2 = 0.0;
    double t_plain = 1e30, t_pref = 1e30, t_nopen = 1e30, t_nopen_pref = 1e30, loss = 0;
    for (int r = 0; r < repeat; r++) {
        t_plain = best(t_plain, learn_pass(&c, &cfg, 0, NULL));
        t_pref = best(t_pref, learn_pass(&c, &cfg, 2, &loss));
        t_nopen = best(t_nopen, learn_pass(&c, &nopen, 0, NULL));
        t_nopen_pref = best(t_nopen_pref, learn_pass(&c, &nopen, 2, NULL));
    }
    double touch = 1e30;
    for (int r = 0; r < repeat; r++)
        touch = best(touch, first_touch_ms(&cfg));
    printf("  %-44s %8.0f ms per run (%.0f ns/example over this file)\n",
           "first touch of the weight table", touch, touch * 1e6 / (double)c.n);
    printf("  %-44s %8.0f ns/example\n", "learn, adagrad + l1 + l2", t_plain);
    printf("  %-44s %8.0f ns/example  (progressive logloss %.6f)\n",
           "learn, adagrad + l1 + l2, prefetch 2 ahead", t_pref, loss);
    printf("  %-44s %8.0f ns/example\n", "learn, adagrad, no penalty", t_nopen);
    printf("  %-44s %8.0f ns/example\n", "learn, adagrad, no penalty, prefetch", t_nopen_pref);
    printf("  %-44s %8.0f ns/example\n", "  => lazy penalty (catch-up + step)", t_pref - t_nopen_pref);
    printf("  %-44s %8.0f ns/example\n", "  => memory stalls hidden by prefetch", t_plain - t_pref);
    munmap(data, size);
    close(fd);
    free(c.start);
    free(c.label);
    free(c.feats);
    return 0;
}
