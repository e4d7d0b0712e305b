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
#include "learner/learner_io.h"   /* change tracking */
#include "streamlr/decode.h"
#include "streamlr/learner.h"
#include "streamlr/sync.h"

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
    if (l->stamps)
        memset(l->stamps, 0, (l->n_slots + 1) * sizeof *l->stamps);
    double t = now() - t0;
    slr_learner_destroy(l);
    return t * 1e3;
}

static double learn_pass_tracked(const corpus *c, const slr_learner_config *cfg, int prefetch,
                                 double *loss_out, bool track)
{
    slr_learner *l;
    slr_error err;
    if (slr_learner_create(&l, cfg, &err) != SLR_OK ||
        (track && slr_learner_track_changes(l, true, &err) != SLR_OK))
        die(err.msg);
    memset(l->slots, 0, (l->n_slots + 1) * sizeof *l->slots); /* first touch, not timed */
    if (l->stamps) /* a penalty's stamps: their own table */
        memset(l->stamps, 0, (l->n_slots + 1) * sizeof *l->stamps);
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

/* Learning as one member of a group (sync.h) with one member: the same
 * examples through slr_sync_member_learn (the learner's change tracking and
 * the touch counts on top of learning), prefetching 2 ahead, a round every
 * `round` examples.  *round_ns gets the time of the rounds' ends and merges
 * alone, per example; *entries the mean entries per delta. */
static double sync_pass(const corpus *c, const slr_learner_config *cfg, uint64_t round,
                        double *round_ns, double *entries)
{
    slr_sync_member *m;
    slr_error err;
    if (slr_sync_member_create(&m, cfg, "bench", 1, &err) != SLR_OK)
        die(err.msg);
    slr_learner *l = slr_sync_member_learner(m), *sh = (slr_learner *)slr_sync_member_shared(m);
    memset(l->slots, 0, (l->n_slots + 1) * sizeof *l->slots); /* first touch, not timed */
    memset(sh->slots, 0, (sh->n_slots + 1) * sizeof *sh->slots);
    slr_example ex, next;
    memset(&ex, 0, sizeof ex);
    ex.weight = 1.0;
    ex.has_label = true;
    next = ex;
    double t_rounds = 0.0, n_entries = 0.0;
    uint64_t n_rounds = 0;
    double t0 = now();
    for (uint64_t i = 0; i < c->n; i++) {
        if (i + 2 < c->n) {
            next.features = c->feats + c->start[i + 2];
            next.n_features = (uint32_t)(c->start[i + 3] - c->start[i + 2]);
            slr_learner_prefetch(slr_sync_member_learner(m), &next);
        }
        ex.features = c->feats + c->start[i];
        ex.n_features = (uint32_t)(c->start[i + 1] - c->start[i]);
        ex.label = c->label[i];
        slr_sync_member_learn(m, &ex, NULL);
        if ((i + 1) % round == 0 || i + 1 == c->n) {
            double r0 = now();
            slr_sync_range rg = {(char *)"bench", 0, (int64_t)(i + 1 - (i % round) - 1),
                                 (int64_t)(i + 1)};
            slr_sync_delta d;
            if (slr_sync_member_end_round(m, &rg, 1, &d, &err) != SLR_OK ||
                slr_sync_member_apply(m, &d, 1, SLR_SYNC_RELAXD, NULL, &err) != SLR_OK)
                die(err.msg);
            n_entries += (double)d.n_entries;
            slr_sync_delta_clear(&d);
            t_rounds += now() - r0;
            n_rounds++;
        }
    }
    double t = now() - t0;
    slr_sync_member_destroy(m);
    *round_ns = t_rounds / (double)c->n * 1e9;
    *entries = n_entries / (double)n_rounds;
    return (t - t_rounds) / (double)c->n * 1e9;
}

static double learn_pass(const corpus *c, const slr_learner_config *cfg, int prefetch, double *loss_out)
{
    return learn_pass_tracked(c, cfg, prefetch, loss_out, false);
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
    if (getenv("BENCH_STAGES_SYNC")) { /* a round every BENCH_STAGES_SYNC examples */
        uint64_t round = strtoull(getenv("BENCH_STAGES_SYNC"), NULL, 10);
        double t_sync = 1e30, t_round = 1e30, ent = 0, t_track = 1e30;
        for (int r = 0; r < repeat && round > 0; r++) {
            double rn;
            t_sync = best(t_sync, sync_pass(&c, &cfg, round, &rn, &ent));
            t_round = best(t_round, rn);
            t_track = best(t_track, learn_pass_tracked(&c, &cfg, 2, NULL, true));
        }
        printf("  %-44s %8.0f ns/example\n", "learn with change tracking, prefetch", t_track);
        printf("  %-44s %8.0f ns/example\n", "learn as a sync member, prefetch", t_sync);
        printf("  %-44s %8.0f ns/example\n", "  => tracking + touch counts", t_sync - t_pref);
        printf("  %-44s %8.0f ns/example  (%.0f entries a delta, a round every %llu)\n",
               "  round end + merge + follow", t_round, ent, (unsigned long long)round);
    }
    munmap(data, size);
    close(fd);
    free(c.start);
    free(c.label);
    free(c.feats);
    return 0;
}
