/* bench_sync_codec.c - what a group's deltas weigh and cost, without Kafka,
 * for tools/bench sync-codec: P members (one per source partition, row i in
 * partition i mod P) learn S rows each per round from one shared model, as
 * engine/job/train_sync.c does, and every round's deltas are merged.  For
 * each delta it times, in thread CPU, the end of the round
 * (slr_sync_member_end_round), slr_sync_delta_encode and
 * slr_sync_delta_decode, and weighs the entries in other layouts:
 * format 2's 20 bytes an entry, format 3's planes raw, the planes compressed
 * as one zstd frame instead of one each.  With MANTISSA < 7 the increments
 * are rounded further, to that many bits of mantissa, before the merge: how
 * much precision the model can lose before the log loss notices.
 * Built by `make`, not installed.
 *
 *   bench-sync-codec FILE FORMAT BITS PARTITIONS S [MANTISSA] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "streamlr/decode.h"
#include "streamlr/learner.h"
#include "streamlr/sync.h"
#include "streamlr/sync_topic.h"
#include "util/le.h"

#define MAX_P 64

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench-sync-codec: %s: %s\n", what, why);
    exit(1);
}

/* a bfloat16 rounded to `bits` bits of mantissa, nearest even (sign kept) */
static uint16_t coarser(uint16_t h, int bits)
{
    int drop = 7 - bits;
    if (drop <= 0)
        return h;
    uint16_t sign = h & 0x8000u, mag = h & 0x7fffu;
    uint32_t r = (uint32_t)mag + ((1u << (drop - 1)) - 1) + ((mag >> drop) & 1u);
    r &= ~((1u << drop) - 1);
    if ((r & 0x7f80u) == 0x7f80u) /* rounded up into Inf: stay at the largest */
        r = mag & ~((1u << drop) - 1);
    return (uint16_t)(sign | r);
}

/* The entries' planes as sync_delta.c cuts them, into buf (9 n bytes):
 * returns the length of all five. */
static size_t planes(const slr_sync_delta *d, unsigned char *buf)
{
    const size_t n = d->n_entries;
    size_t g = 0;
    uint32_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t j = slr_le_get_u32(d->entries + i * SLR_SYNC_ENTRY);
        uint32_t v = i ? j - prev - 1 : j;
        for (; v >= 0x80; v >>= 7)
            buf[g++] = (unsigned char)(v | 0x80);
        buf[g++] = (unsigned char)v;
        prev = j;
    }
    for (size_t i = 0; i < n; i++) /* dw low, dw high, dg low, dg high */
        for (int b = 0; b < 4; b++)
            buf[g + (size_t)b * n + i] = d->entries[i * SLR_SYNC_ENTRY + 4 + b];
    return g + 4 * n;
}

int main(int argc, char **argv)
{
    if (argc < 6 || argc > 7)
        die("usage", "bench-sync-codec FILE FORMAT BITS PARTITIONS S [MANTISSA]");
    const int P = atoi(argv[4]), mantissa = argc == 7 ? atoi(argv[6]) : 7;
    const long S = atol(argv[5]);
    if (P < 1 || P > MAX_P || S < 1 || mantissa < 0 || mantissa > 7)
        die("usage", "PARTITIONS 1..64, S >= 1, MANTISSA 0..7");
    slr_error err;
    slr_learner_config cfg;
    slr_learner_config_defaults(&cfg);
    slr_hashing_init(&cfg.hashing, (unsigned)atoi(argv[3]));
    slr_format fmt;
    slr_decoder *dec;
    if (slr_format_parse(argv[2], &fmt, &err) != SLR_OK || slr_decoder_create(&dec, fmt, &err) != SLR_OK)
        die(argv[2], err.msg);
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        die(argv[1], "cannot open");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)size + 1);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size)
        die(argv[1], "cannot read");
    fclose(f);

    /* the hashed examples, in file order */
    size_t cap = 1024, n = 0;
    slr_example *ex = malloc(cap * sizeof *ex);
    slr_raw_example raw;
    slr_raw_example_init(&raw);
    for (size_t off = 0; off < (size_t)size;) {
        if (n == cap && !(ex = realloc(ex, (cap *= 2) * sizeof *ex)))
            die("examples", "out of memory");
        size_t used = 0;
        slr_example_init(&ex[n], &cfg.hashing);
        slr_decode_result r =
            slr_decoder_next_example(dec, data + off, (size_t)size - off, true, &used, &raw, &ex[n], &err);
        off += used;
        if (r == SLR_DECODE_EXAMPLE)
            n++;
        else
            slr_example_free(&ex[n]);
    }

    slr_learner *theta;
    slr_sync_member *m[MAX_P];
    if (slr_learner_create(&theta, &cfg, &err) != SLR_OK)
        die("learner", err.msg);
    for (int p = 0; p < P; p++) {
        char name[SLR_SYNC_MAX_MEMBER_ID + 1];
        if (slr_sync_slice_name(name, sizeof name, "clicks", p, &err) != SLR_OK ||
            slr_sync_member_create_on(&m[p], theta, name, 1, 0, &err) != SLR_OK)
            die("member", err.msg);
    }
    double loss = 0, t_end = 0, t_enc = 0, t_dec = 0;
    uint64_t learned = 0, entries = 0, wire = 0, raw_planes = 0, one_frame = 0, deltas = 0;
    const uint64_t rounds = n / (uint64_t)P / (uint64_t)S;
    unsigned char *buf = NULL, *z = NULL;
    for (uint64_t r = 0; r < rounds; r++) {
        slr_sync_delta d[MAX_P];
        for (int p = 0; p < P; p++) {
            for (long i = 0; i < S; i++) {
                double l;
                slr_sync_member_learn(m[p], &ex[((uint64_t)r * S + i) * P + p], &l);
                loss += l;
                learned++;
            }
            slr_sync_range rg = {(char *)"clicks", p, (int64_t)(r * S), (int64_t)((r + 1) * S)};
            double t0 = now();
            if (slr_sync_member_end_round(m[p], &rg, 1, &d[p], &err) != SLR_OK)
                die("end of round", err.msg);
            t_end += now() - t0;
            for (size_t e = 0; e < d[p].n_entries; e++) {
                unsigned char *x = d[p].entries + e * SLR_SYNC_ENTRY;
                slr_le_put_u16(x + 4, coarser(slr_le_get_u16(x + 4), mantissa));
                slr_le_put_u16(x + 6, coarser(slr_le_get_u16(x + 6), mantissa));
            }
            unsigned char *rec;
            size_t len;
            slr_sync_delta back;
            double t1 = now();
            if (slr_sync_delta_encode(&d[p], &rec, &len, &err) != SLR_OK)
                die("encode", err.msg);
            double t2 = now();
            if (slr_sync_delta_decode(rec, len, &back, &err) != SLR_OK)
                die("decode", err.msg);
            double t3 = now();
            t_enc += t2 - t1, t_dec += t3 - t2;
            free(rec);
            slr_sync_delta_clear(&back);
            const size_t k = d[p].n_entries;
            if (!(buf = realloc(buf, 9 * k + 1)) || !(z = realloc(z, ZSTD_compressBound(9 * k) + 1)))
                die("layouts", "out of memory");
            size_t pl = planes(&d[p], buf);
            size_t zl = ZSTD_compress(z, ZSTD_compressBound(9 * k) + 1, buf, pl, 1);
            entries += k, wire += len, raw_planes += pl, deltas++;
            one_frame += ZSTD_isError(zl) ? pl : zl;
        }
        uint32_t *changed;
        size_t n_changed;
        if (slr_sync_merge(theta, r, d, (size_t)P, SLR_SYNC_RELAXD, &changed, &n_changed, &err) != SLR_OK)
            die("merge", err.msg);
        for (int p = 0; p < P; p++) {
            if (slr_sync_member_follow(m[p], changed, n_changed, true, &err) != SLR_OK)
                die("follow", err.msg);
            slr_sync_delta_clear(&d[p]);
        }
        free(changed);
    }
    if (!learned)
        die(argv[1], "fewer rows than one round");
    const double N = (double)learned;
    printf("%llu rows in %d partitions, S %ld, %llu rounds, mantissa %d bits: progressive log loss "
           "%.8f; %.3f entries/example\n",
           (unsigned long long)learned, P, S, (unsigned long long)rounds, mantissa, loss / N,
           (double)entries / N);
    printf("bytes/example: format 3 records %.2f (%.2f an entry); its planes raw %.2f, as one "
           "zstd frame %.2f; format 2's entries %.2f\n",
           (double)wire / N, (double)wire / (double)entries, (double)raw_planes / N,
           (double)one_frame / N, 20.0 * (double)entries / N);
    printf("us per delta (%.0f entries): end of round %.0f, encode %.0f, decode %.0f\n",
           (double)entries / (double)deltas, 1e6 * t_end / (double)deltas,
           1e6 * t_enc / (double)deltas, 1e6 * t_dec / (double)deltas);
    return 0;
}
