/* cmd_synth.c - `streamlr synth`: a deterministic synthetic CTR stream for
 * the benchmarks (tools/bench), in every format the engine reads, so that
 * streamlr and Vowpal Wabbit can be timed on the very same examples.
 *
 * Each row has the shape of a Criteo display-advertising record:
 *   - 13 numeric fields I1..I13: a count c >= 1 drawn log-uniformly (a bit
 *     length b uniform in 0..B_i, then c = 1 + a uniform b-bit number), given
 *     to the learner as log1p(c) rounded to float32 (so always > 0);
 *   - 26 categorical fields C1..C26: a rank k drawn from Zipf(s = 1.1) over a
 *     vocabulary of Criteo-like size (3 ... 1,000,000), written as 8 hex
 *     digits (a bijection of k, so distinct ranks get distinct names);
 *   - a label from a hidden logistic model: per-category weights ~ N(0,
 *     sigma_field^2) derived from a hash of (seed, field, rank), a weight per
 *     numeric field, and an intercept solved by bisection on a calibration
 *     sample so that about 25% of the labels are positive.
 * The features are named exactly as the criteo decoder names them (numeric:
 * namespace "I", names "1".."13"; C_k: namespace 'a'+k-1), so the criteo,
 * vw, msgpack and hashed msgpack outputs of one seed hash to the same
 * examples.
 *
 * Same seed, same bytes, on any machine.  That rules out libm's exp/log/pow,
 * whose last-bit rounding differs between implementations: the generator
 * uses its own integer RNG (xoshiro256**, seeded by splitmix64), builds
 * Walker/Vose alias tables for the Zipf laws in exact integer arithmetic, and
 * computes the few transcendental values it needs (k^-1.1, log1p(c), the
 * sigmoid) with det_log/det_exp below, which use only IEEE-754 + - * /
 * (correctly rounded everywhere), frexp/ldexp/floor (exact) and a fixed
 * evaluation order (ISO C mode: no FMA contraction).  Numbers are printed
 * with glibc's printf/strtod, which are exact, not approximations. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "streamlr/decode.h"
#include "streamlr/encode.h"
#include "streamlr/example.h"

#define N_NUMERIC 13
#define N_CATEGORICAL 26
#define ZIPF_S 1.1
#define POSITIVE_RATE 0.25
#define CALIBRATION_ROWS 20000
#define FLUSH_AT (1u << 20)

/* Vocabulary sizes: the cardinalities of Criteo's C1..C26 (Kaggle DAC
 * training set), capped at one million. */
static const uint32_t vocab_size[N_CATEGORICAL] = {
    1460, 583,  1000000, 1000000, 305,  24,      12517, 633,     3,  93145, 5683,   1000000, 3194,
    27,   14992, 1000000, 10,     5652, 2173,    4,     1000000, 18, 15,    286181, 105,     142572,
};
/* Bit lengths B_i of the numeric counts: c <= 2^B_i. */
static const unsigned count_bits[N_NUMERIC] = {5, 12, 8, 4, 16, 10, 7, 6, 9, 3, 11, 13, 6};
#define MAX_COUNT ((1u << 16) + 1)

/* ------------------------------------------------------------ exact-ish math */

static const double LN2_HI = 6.93147180369123816490e-01; /* fdlibm's split of ln 2: */
static const double LN2_LO = 1.90821492927058770002e-10; /* LN2_HI * k is exact */

/* ln x for finite x > 0, within about an ulp, identically everywhere. */
static double det_log(double x)
{
    int e;
    double m = frexp(x, &e); /* x = m 2^e, m in [0.5, 1) */
    if (m < 0.70710678118654752440) {
        m *= 2.0;
        e--;
    }
    /* ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172: odd series to s^25 */
    double s = (m - 1.0) / (m + 1.0), s2 = s * s, p = 1.0 / 25.0;
    for (int k = 23; k >= 1; k -= 2)
        p = p * s2 + 1.0 / (double)k;
    return (double)e * LN2_HI + ((double)e * LN2_LO + 2.0 * s * p);
}

/* e^x, within about an ulp, identically everywhere (0 below -708). */
static double det_exp(double x)
{
    if (x < -708.0)
        return 0.0;
    if (x > 709.0)
        return HUGE_VAL;
    double k = floor(x * 1.44269504088896340736 + 0.5);
    double r = (x - k * LN2_HI) - k * LN2_LO; /* |r| <= 0.35 */
    /* Horner form of sum r^i / i!, i = 0..14 */
    double q = 1.0;
    for (int i = 14; i >= 1; i--)
        q = 1.0 + q * r / (double)i;
    return ldexp(q, (int)k);
}

static double det_sigmoid(double z) { return 1.0 / (1.0 + det_exp(-z)); }

/* ------------------------------------------------------------ random numbers */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t mix64(uint64_t x) { return splitmix64(&x); }

typedef struct rng {
    uint64_t s[4];
} rng;

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** (Blackman & Vigna) */
static inline uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* uniform in [0, 1) with 53 random bits */
static inline double unit(uint64_t x) { return (double)(x >> 11) * (1.0 / 9007199254740992.0); }

/* uniform integer below n (n <= 2^32) from the high 32 bits of x */
static inline uint32_t below(uint64_t x, uint32_t n) { return (uint32_t)(((x >> 32) * n) >> 32); }

/* ------------------------------------------------------------ Zipf by alias tables */

typedef struct alias_entry {
    uint32_t threshold; /* keep this bucket if the low 32 random bits are below */
    uint32_t alias;     /* otherwise take this one */
} alias_entry;

typedef struct zipf {
    uint32_t n;
    alias_entry *table;
} zipf;

/* Vose's alias method on weights w[0..n) (w[i] for rank i+1), in fixed point
 * with 32 fractional bits: every bucket holds exactly 2^32 units, so the
 * construction is exact integer arithmetic once the weights are scaled. */
static bool zipf_build(zipf *z, const double *w, uint32_t n)
{
    const uint64_t ONE = UINT64_C(1) << 32;
    uint64_t *q = malloc((size_t)n * sizeof *q);
    uint32_t *work = malloc((size_t)n * sizeof *work);
    z->table = malloc((size_t)n * sizeof *z->table);
    z->n = n;
    if (!q || !work || !z->table) {
        free(q);
        free(work);
        return false;
    }
    double total = 0.0;
    for (uint32_t i = 0; i < n; i++)
        total += w[i];
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        q[i] = (uint64_t)(w[i] * (double)n / total * 4294967296.0);
        sum += q[i];
    }
    q[0] += (uint64_t)n * ONE - sum; /* truncation leftovers go to the largest (a few units) */

    /* small indices fill work[] from the front, large ones from the back */
    uint32_t n_small = 0, n_large = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (q[i] < ONE)
            work[n_small++] = i;
        else
            work[n - 1 - n_large++] = i;
    }
    while (n_small > 0 && n_large > 0) {
        uint32_t s = work[--n_small], l = work[n - n_large];
        z->table[s] = (alias_entry){(uint32_t)q[s], l};
        q[l] -= ONE - q[s];
        if (q[l] < ONE) {
            n_large--;
            work[n_small++] = l;
        }
    }
    while (n_large > 0) {
        uint32_t l = work[n - n_large--];
        z->table[l] = (alias_entry){UINT32_MAX, l};
    }
    while (n_small > 0) { /* cannot happen with exact totals; kept for safety */
        uint32_t s = work[--n_small];
        z->table[s] = (alias_entry){UINT32_MAX, s};
    }
    free(q);
    free(work);
    return true;
}

/* a rank in 0..n-1 (0 the most frequent) from one 64-bit random number */
static inline uint32_t zipf_draw(const zipf *z, uint64_t x)
{
    uint32_t j = below(x, z->n);
    const alias_entry *e = &z->table[j];
    return (uint32_t)x < e->threshold ? j : e->alias;
}

/* ------------------------------------------------------------ the generator */

typedef struct synth {
    uint64_t seed;
    rng r;
    zipf cat[N_CATEGORICAL];
    uint32_t name_salt[N_CATEGORICAL];
    double cat_sigma[N_CATEGORICAL];
    double num_weight[N_NUMERIC];
    uint64_t model_key;
    double model_sign; /* -1 after --drift-at */
    double intercept;
    float value[MAX_COUNT + 1]; /* (float) log1p(c) */
    char value_text[MAX_COUNT + 1][16];
    uint8_t value_len[MAX_COUNT + 1];
} synth;

typedef struct row {
    int label;
    double p; /* the hidden model's P(label = 1) */
    uint32_t count[N_NUMERIC];
    uint32_t rank[N_CATEGORICAL];
    uint32_t name[N_CATEGORICAL];
} row;

/* a bijection of 32-bit integers (Wellons' lowbias32), so names never collide */
static uint32_t permute32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* approximately N(0, 1): a sum of four 16-bit uniforms, centred and scaled
 * (Irwin-Hall), exact in double arithmetic */
static double hashed_normal(uint64_t h)
{
    double sum = (double)(h & 0xffff) + (double)((h >> 16) & 0xffff) +
                 (double)((h >> 32) & 0xffff) + (double)(h >> 48);
    return (sum / 65536.0 - 2.0) * 1.7320508075688772;
}

static double category_weight(const synth *s, int f, uint32_t rank)
{
    uint64_t h = mix64(s->model_key ^ ((uint64_t)(f + 1) << 40) ^ rank);
    return s->model_sign * s->cat_sigma[f] * hashed_normal(h);
}

/* Draw the features of one row; returns the margin without the intercept. */
static double draw_features(const synth *s, rng *r, row *out)
{
    double z = 0.0;
    for (int i = 0; i < N_NUMERIC; i++) {
        uint64_t x = rng_next(r);
        uint32_t b = below(x, count_bits[i] + 1), low = (uint32_t)x;
        uint32_t c = 1 + (b ? low >> (32 - b) : 0);
        out->count[i] = c;
        z += s->num_weight[i] * (double)s->value[c];
    }
    for (int f = 0; f < N_CATEGORICAL; f++) {
        uint32_t k = zipf_draw(&s->cat[f], rng_next(r));
        out->rank[f] = k;
        out->name[f] = permute32(k + s->name_salt[f]);
        z += category_weight(s, f, k);
    }
    return z;
}

static void next_row(synth *s, row *out)
{
    double z = s->intercept + draw_features(s, &s->r, out);
    out->p = det_sigmoid(z);
    out->label = unit(rng_next(&s->r)) < out->p;
}

/* The log loss of the hidden model itself on this row: what no learner can
 * beat on average (reported, never written to the stream). */
static double oracle_loss(const row *x)
{
    double q = x->label ? x->p : 1.0 - x->p;
    return -det_log(q > 1e-300 ? q : 1e-300);
}

/* The intercept that makes the mean of sigmoid(b + margin) POSITIVE_RATE on
 * a calibration sample drawn from its own stream. */
static double calibrate(const synth *s)
{
    static double margin[CALIBRATION_ROWS];
    rng r;
    rng_seed(&r, s->seed ^ 0x5DEECE66Dull);
    row tmp;
    for (int i = 0; i < CALIBRATION_ROWS; i++)
        margin[i] = draw_features(s, &r, &tmp);
    double lo = -30.0, hi = 30.0;
    for (int it = 0; it < 60; it++) {
        double b = 0.5 * (lo + hi), mean = 0.0;
        for (int i = 0; i < CALIBRATION_ROWS; i++)
            mean += det_sigmoid(b + margin[i]);
        if (mean / CALIBRATION_ROWS > POSITIVE_RATE)
            hi = b;
        else
            lo = b;
    }
    return 0.5 * (lo + hi);
}

/* The shortest decimal that reads back (strtod, then rounding to float) as f. */
static size_t float_text(char *out, size_t size, float f)
{
    for (int digits = 6; digits < 17; digits++) {
        int n = snprintf(out, size, "%.*g", digits, (double)f);
        if ((float)strtod(out, NULL) == f)
            return (size_t)n;
    }
    return (size_t)snprintf(out, size, "%.17g", (double)f); /* (double)f itself: exact */
}

static bool synth_init(synth *s, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    s->seed = seed;
    uint64_t sm = seed;
    s->model_key = splitmix64(&sm);
    s->model_sign = 1.0;
    for (int f = 0; f < N_CATEGORICAL; f++) {
        s->name_salt[f] = (uint32_t)splitmix64(&sm);
        /* field importance: sigma from 0.1 to 0.6 */
        s->cat_sigma[f] = 0.1 + 0.5 * unit(splitmix64(&sm));
    }
    for (int i = 0; i < N_NUMERIC; i++)
        s->num_weight[i] = 0.15 * hashed_normal(splitmix64(&sm));
    for (uint32_t c = 1; c <= MAX_COUNT; c++) {
        s->value[c] = (float)det_log((double)c + 1.0);
        s->value_len[c] = (uint8_t)float_text(s->value_text[c], sizeof s->value_text[c], s->value[c]);
    }

    uint32_t max_n = 0;
    for (int f = 0; f < N_CATEGORICAL; f++)
        if (vocab_size[f] > max_n)
            max_n = vocab_size[f];
    double *w = malloc((size_t)max_n * sizeof *w);
    if (!w)
        return false;
    for (uint32_t k = 0; k < max_n; k++) /* rank k+1 has weight (k+1)^-s */
        w[k] = det_exp(-ZIPF_S * det_log((double)k + 1.0));
    bool ok = true;
    for (int f = 0; f < N_CATEGORICAL && ok; f++)
        ok = zipf_build(&s->cat[f], w, vocab_size[f]);
    free(w);
    if (!ok)
        return false;
    s->intercept = calibrate(s);
    rng_seed(&s->r, seed);
    return true;
}

/* --drift-at: from here on the labels follow the opposite hidden model
 * (every per-category and numeric weight negated, the intercept calibrated
 * again to the same positive rate) over features drawn as before -- the
 * click pattern changed, the traffic did not.  Negating keeps the margins'
 * spread, so the new model is about as predictable as the old one (its own
 * log loss, in the summary, within a few percent) while every weight a
 * learner holds is now wrong. */
static void synth_drift(synth *s)
{
    s->model_sign = -s->model_sign;
    for (int i = 0; i < N_NUMERIC; i++)
        s->num_weight[i] = -s->num_weight[i];
    s->intercept = calibrate(s);
}

static void synth_free(synth *s)
{
    for (int f = 0; f < N_CATEGORICAL; f++)
        free(s->cat[f].table);
}

/* ------------------------------------------------------------ output formats */

static const char hex_digits[] = "0123456789abcdef";
static const char letters[] = "abcdefghijklmnopqrstuvwxyz";
static const char *const numeric_names[N_NUMERIC] = {"1", "2", "3", "4",  "5",  "6", "7",
                                                     "8", "9", "10", "11", "12", "13"};

static inline char *put_hex8(char *p, uint32_t v)
{
    for (int i = 7; i >= 0; i--)
        *p++ = hex_digits[(v >> (4 * i)) & 0xf];
    return p;
}

static inline char *put_u32(char *p, uint32_t v)
{
    char tmp[10];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* Bytes any one row can take, with room to spare. */
#define ROW_MAX 2048

static char *row_vw(const synth *s, const row *x, char *p)
{
    p = x->label ? memcpy(p, "1 |I", 4) : memcpy(p, "-1 |I", 5);
    p += x->label ? 4 : 5;
    for (int i = 0; i < N_NUMERIC; i++) {
        *p++ = ' ';
        p = put_u32(p, (uint32_t)i + 1);
        *p++ = ':';
        uint32_t c = x->count[i];
        memcpy(p, s->value_text[c], s->value_len[c]);
        p += s->value_len[c];
    }
    for (int f = 0; f < N_CATEGORICAL; f++) {
        *p++ = ' ';
        *p++ = '|';
        *p++ = letters[f];
        *p++ = ' ';
        p = put_hex8(p, x->name[f]);
    }
    *p++ = '\n';
    return p;
}

static char *row_criteo(const row *x, char *p)
{
    *p++ = x->label ? '1' : '0';
    for (int i = 0; i < N_NUMERIC; i++) {
        *p++ = '\t';
        p = put_u32(p, x->count[i]);
    }
    for (int f = 0; f < N_CATEGORICAL; f++) {
        *p++ = '\t';
        p = put_hex8(p, x->name[f]);
    }
    *p++ = '\n';
    return p;
}

static inline char *put_be32(char *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--)
        *p++ = (char)(v >> (8 * i));
    return p;
}

/* [label, {"I": {"1": f32, ..., "13": f32}, "a": "hhhhhhhh", ..., "z": ...}] */
static char *row_msgpack(const synth *s, const row *x, char *p)
{
    *p++ = (char)0x92;                  /* fixarray 2 */
    *p++ = (char)(x->label ? 1 : 0);    /* positive fixint */
    *p++ = (char)0xde;                  /* map16 */
    *p++ = 0;
    *p++ = (char)(1 + N_CATEGORICAL);
    *p++ = (char)0xa1;                  /* fixstr "I" */
    *p++ = 'I';
    *p++ = (char)(0x80 | N_NUMERIC);    /* fixmap 13 */
    for (int i = 0; i < N_NUMERIC; i++) {
        size_t n = strlen(numeric_names[i]);
        *p++ = (char)(0xa0 | n);
        memcpy(p, numeric_names[i], n);
        p += n;
        *p++ = (char)0xca; /* float32 */
        uint32_t bits;
        float v = s->value[x->count[i]];
        memcpy(&bits, &v, 4);
        p = put_be32(p, bits);
    }
    for (int f = 0; f < N_CATEGORICAL; f++) {
        *p++ = (char)0xa1;
        *p++ = letters[f];
        *p++ = (char)0xa8; /* fixstr of 8 */
        p = put_hex8(p, x->name[f]);
    }
    return p;
}

/* The row as the criteo decoder would give it, hashed and -q-free, in the
 * compact form: the same code path as `convert --hashed`. */
static slr_status row_hashed(const synth *s, const row *x, slr_raw_example *raw, slr_example *ex,
                             char names[N_CATEGORICAL][8], slr_buf *out, slr_error *err)
{
    slr_raw_example_reset(raw);
    raw->label = x->label;
    raw->has_label = true;
    for (int i = 0; i < N_NUMERIC; i++) {
        slr_raw_feature f = {"I", 1, numeric_names[i], (uint32_t)strlen(numeric_names[i]), 0,
                             (double)s->value[x->count[i]]};
        slr_status st = slr_raw_example_push(raw, &f, err);
        if (st != SLR_OK)
            return st;
    }
    for (int k = 0; k < N_CATEGORICAL; k++) {
        put_hex8(names[k], x->name[k]);
        slr_raw_feature f = {&letters[k], 1, names[k], 8, 0, 1.0};
        slr_status st = slr_raw_example_push(raw, &f, err);
        if (st != SLR_OK)
            return st;
    }
    slr_status st = slr_example_from_raw(ex, raw, err);
    return st == SLR_OK ? slr_encode_hashed(out, ex, err) : st;
}

/* ------------------------------------------------------------ command */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: streamlr synth -n N --format msgpack|vw|criteo [--seed S] [--hashed [-b BITS]]\n"
            "                      [--drift-at N] [-o FILE]\n"
            "\n"
            "Write a deterministic synthetic click-through stream, shaped like Criteo's:\n"
            "13 count-like numeric fields (log1p of a count >= 1) and 26 categorical fields\n"
            "drawn from Zipf(1.1) laws over vocabularies of 3 to 1,000,000 values, with\n"
            "labels from a hidden logistic model (about 25%% positive).  The summary on\n"
            "stderr gives that model's own log loss on the rows: no learner beats it on\n"
            "average.  The same seed gives the same bytes on any machine, and every format\n"
            "of one seed holds the same examples (features named as the criteo decoder\n"
            "names them), so the formats -- and other tools fed the vw output -- can be\n"
            "compared on one stream.\n"
            "\n"
            "options:\n"
            "  -n, --examples N     number of rows (required)\n"
            "      --seed S         generator seed (default 1)\n"
            "      --format F       msgpack: [label, {\"I\": {\"1\": v, ...}, \"a\": \"hex\", ...}]\n"
            "                       vw:      1 |I 1:v ... 13:v |a hex |b hex ... (labels 1/-1)\n"
            "                       criteo:  the 40-column TSV of the Criteo challenge\n"
            "      --hashed         with msgpack: the compact pre-hashed form\n"
            "                       [label, nil, ids, values], as `convert --hashed` writes it\n"
            "  -b, --bits BITS      with --hashed: index bits (default %d)\n"
            "      --drift-at N     from row N (0-based) on, labels follow the opposite\n"
            "                       hidden model (every weight negated) over the same\n"
            "                       features (concept drift); the summary gives its log\n"
            "                       loss before and after\n"
            "  -o, --output FILE    write to FILE instead of stdout\n"
            "  -h, --help           this text\n",
            SLR_BITS_DEFAULT);
}

typedef struct synth_opts {
    uint64_t n, seed, drift_at; /* drift_at: UINT64_MAX for none */
    slr_format format;
    bool have_format, hashed, have_bits;
    unsigned bits;
    const char *output;
} synth_opts;

enum { OPT_SEED = 256, OPT_SYNTH_FORMAT, OPT_HASHED, OPT_DRIFT_AT };

static int parse_args(int argc, char **argv, synth_opts *o)
{
    static const struct option longopts[] = {
        {"examples", required_argument, 0, 'n'}, {"seed", required_argument, 0, OPT_SEED},
        {"format", required_argument, 0, OPT_SYNTH_FORMAT}, {"hashed", no_argument, 0, OPT_HASHED},
        {"bits", required_argument, 0, 'b'},     {"output", required_argument, 0, 'o'},
        {"drift-at", required_argument, 0, OPT_DRIFT_AT},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0},
    };
    bool have_n = false;
    uint32_t bits;
    slr_error err;
    o->seed = 1;
    o->drift_at = UINT64_MAX;
    o->bits = SLR_BITS_DEFAULT;
    optind = 1;
    int c;
    while ((c = cli_getopt(argc, argv, "n:b:o:h", longopts)) != -1) {
        switch (c) {
        case 'n':
            if (!cli_u64("synth", "-n", optarg, &o->n))
                return 2;
            have_n = true;
            break;
        case OPT_SEED:
            if (!cli_u64("synth", "--seed", optarg, &o->seed))
                return 2;
            break;
        case OPT_SYNTH_FORMAT:
            if (slr_format_parse(optarg, &o->format, &err) != SLR_OK ||
                o->format == SLR_FORMAT_LIBSVM) {
                fprintf(stderr, "streamlr synth: --format takes msgpack, vw or criteo (got \"%s\")\n",
                        optarg);
                return 2;
            }
            o->have_format = true;
            break;
        case OPT_HASHED: o->hashed = true; break;
        case OPT_DRIFT_AT:
            if (!cli_u64("synth", "--drift-at", optarg, &o->drift_at))
                return 2;
            break;
        case 'b':
            if (!cli_u32("synth", "-b", optarg, &bits) || bits < SLR_BITS_MIN || bits > SLR_BITS_MAX) {
                fprintf(stderr, "streamlr synth: -b takes %d..%d\n", SLR_BITS_MIN, SLR_BITS_MAX);
                return 2;
            }
            o->bits = bits;
            o->have_bits = true;
            break;
        case 'o': o->output = optarg; break;
        case 'h': usage(stdout); return 0;
        default: return 2; /* cli_getopt said what was wrong */
        }
    }
    if (optind < argc) {
        fprintf(stderr, "streamlr synth: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (!have_n || !o->have_format) {
        fprintf(stderr, "streamlr synth: -n N and --format msgpack|vw|criteo are required\n");
        return 2;
    }
    if (o->hashed && o->format != SLR_FORMAT_MSGPACK) {
        fprintf(stderr, "streamlr synth: --hashed writes the compact msgpack form; use --format msgpack\n");
        return 2;
    }
    if (o->have_bits && !o->hashed) {
        fprintf(stderr, "streamlr synth: -b only applies with --hashed\n");
        return 2;
    }
    return -1;
}

static bool write_out(FILE *out, const char *name, const char *p, size_t n)
{
    if (n && fwrite(p, 1, n, out) != n) {
        fprintf(stderr, "streamlr synth: writing %s: %s\n", name, strerror(errno));
        return false;
    }
    return true;
}

int slr_cmd_synth(int argc, char **argv)
{
    synth_opts o = {0};
    int status = parse_args(argc, argv, &o);
    if (status >= 0)
        return status;

    synth *s = malloc(sizeof *s);
    if (!s || !synth_init(s, o.seed)) {
        fprintf(stderr, "streamlr synth: out of memory\n");
        if (s)
            synth_free(s);
        free(s);
        return 1;
    }
    const char *name = o.output ? o.output : "stdout";
    FILE *out = o.output ? fopen(o.output, "wb") : stdout;
    if (!out) {
        fprintf(stderr, "streamlr synth: cannot create %s: %s\n", o.output, strerror(errno));
        synth_free(s);
        free(s);
        return 1;
    }

    slr_hashing hashing;
    slr_hashing_init(&hashing, o.bits);
    slr_raw_example raw;
    slr_example ex;
    slr_buf buf;
    slr_raw_example_init(&raw);
    slr_example_init(&ex, &hashing);
    slr_buf_init(&buf);
    char names[N_CATEGORICAL][8];
    slr_error err;
    int rc = 0;
    uint64_t positives = 0;
    double oracle = 0.0, oracle_before = 0.0;
    for (uint64_t i = 0; i < o.n && rc == 0; i++) {
        row x;
        if (i == o.drift_at) {
            oracle_before = oracle;
            synth_drift(s);
        }
        next_row(s, &x);
        positives += (uint64_t)x.label;
        oracle += oracle_loss(&x);
        if (o.hashed) {
            if (row_hashed(s, &x, &raw, &ex, names, &buf, &err) != SLR_OK) {
                fprintf(stderr, "streamlr synth: %s\n", err.msg);
                rc = 1;
            }
        } else if (slr_buf_reserve(&buf, ROW_MAX, &err) != SLR_OK) {
            fprintf(stderr, "streamlr synth: %s\n", err.msg);
            rc = 1;
        } else {
            char *p = buf.data + buf.len;
            char *e = o.format == SLR_FORMAT_VW       ? row_vw(s, &x, p)
                      : o.format == SLR_FORMAT_CRITEO ? row_criteo(&x, p)
                                                      : row_msgpack(s, &x, p);
            buf.len += (size_t)(e - p);
        }
        if (rc == 0 && buf.len >= FLUSH_AT) {
            rc = write_out(out, name, buf.data, buf.len) ? 0 : 1;
            slr_buf_reset(&buf);
        }
    }
    if (rc == 0 && !write_out(out, name, buf.data, buf.len))
        rc = 1;
    if (fflush(out) != 0 || (o.output && fclose(out) != 0)) {
        fprintf(stderr, "streamlr synth: writing %s: %s\n", name, strerror(errno));
        rc = 1;
    }
    if (rc == 0 && o.drift_at < o.n)
        fprintf(stderr,
                "streamlr synth: the hidden model changes at row %llu; its own log loss before: "
                "%.6f, after: %.6f\n",
                (unsigned long long)o.drift_at,
                o.drift_at ? oracle_before / (double)o.drift_at : 0.0,
                (oracle - oracle_before) / (double)(o.n - o.drift_at));
    if (rc == 0)
        fprintf(stderr,
                "streamlr synth: %llu rows, %.4f positive, seed %llu; the hidden model's own "
                "log loss on them: %.6f\n",
                (unsigned long long)o.n, o.n ? (double)positives / (double)o.n : 0.0,
                (unsigned long long)o.seed, o.n ? oracle / (double)o.n : 0.0);
    slr_buf_free(&buf);
    slr_example_free(&ex);
    slr_raw_example_free(&raw);
    synth_free(s);
    free(s);
    return rc;
}
