/* fuzz_decode.c - the decoders on arbitrary bytes, the way the sources feed them.
 *
 * Input: 3 parameter bytes, then the stream.  Byte 0 picks a small record
 * limit (so the over-long paths run), a feature limit and -q pairs; bytes
 * 1-2 seed the split points.  The stream is decoded twice: once whole
 * (a Kafka message, or a file read in one go) and once through a window that
 * grows by random amounts, like the file source's buffer, so NEED_MORE and
 * records cut at every position are exercised.  Every window is a heap copy
 * of exactly the bytes offered, so a read past it is a sanitizer error.
 *
 * Properties checked besides memory safety:
 *  - every result but NEED_MORE consumes 1..len bytes; NEED_MORE never comes
 *    at the end of the input (the file loop would spin);
 *  - views of a decoded example point into the bytes it consumed;
 *  - hashing it gives features within the table and limits, finite values;
 *  - msgpack re-encoding decodes back to the same raw example;
 *  - text formats: the whole and the split decoding find the same examples
 *    at the same offsets (framing does not depend on how bytes arrive). */
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "streamlr/decode.h"
#include "streamlr/encode.h"

#define MAX_OUTCOMES 4096

typedef struct outcome {
    size_t offset, consumed;
    uint64_t digest;
} outcome;

typedef struct run {
    slr_format format;
    slr_decoder *d;
    slr_raw_example raw;
    slr_example ex;
    slr_hashing hashing;
    slr_buf enc;
    outcome examples[MAX_OUTCOMES];
    size_t n_examples;
} run;

static const size_t max_records[8] = {16, 24, 40, 64, 100, 256, 1024, 1u << 20};
static const uint32_t max_features[4] = {3, 8, 64, SLR_DEFAULT_MAX_FEATURES};
static const char *const quadratics[8] = {"", "ab", "aa", "abbaaa", "Ia", "::", "xy", "abcd"};

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* A view must lie inside the consumed bytes when it points into the window
 * at all (names can also be the decoders' static strings). */
static void check_view(const char *p, size_t n, const char *win, size_t len, size_t consumed,
                       const char *what)
{
    if (p && p >= win && p < win + len)
        FUZZ_CHECK(p + n <= win + consumed, "%s view [%zu, +%zu) past the %zu consumed bytes", what,
                   (size_t)(p - win), n, consumed);
}

static uint64_t digest_raw(const slr_raw_example *raw, const char *win, size_t len, size_t consumed)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = mix(h, &raw->has_label, sizeof raw->has_label);
    if (raw->has_label)
        h = mix(h, &raw->label, sizeof raw->label);
    h = mix(h, &raw->has_weight, sizeof raw->has_weight);
    if (raw->has_weight)
        h = mix(h, &raw->weight, sizeof raw->weight);
    check_view(raw->tag, raw->tag_len, win, len, consumed, "tag");
    if (raw->tag)
        h = mix(h, raw->tag, raw->tag_len);
    for (uint32_t i = 0; i < raw->n_features; i++) {
        const slr_raw_feature *f = &raw->features[i];
        check_view(f->ns, f->ns_len, win, len, consumed, "namespace");
        check_view(f->name, f->name_len, win, len, consumed, "name");
        if (f->name) {
            h = mix(h, f->ns ? f->ns : "", f->ns_len);
            h = mix(h, f->name, f->name_len);
        } else {
            h = mix(h, &f->id, sizeof f->id);
        }
        h = mix(h, &f->value, sizeof f->value);
    }
    return h;
}

static bool same_view(const char *a, uint32_t an, const char *b, uint32_t bn)
{
    return an == bn && (an == 0 || !memcmp(a, b, an));
}

static void check_raw_equal(const slr_raw_example *a, const slr_raw_example *b)
{
    FUZZ_CHECK(a->has_label == b->has_label && (!a->has_label || a->label == b->label ||
                                                (isnan(a->label) && isnan(b->label))),
               "label %g vs %g", a->label, b->label);
    FUZZ_CHECK(a->has_weight == b->has_weight && (!a->has_weight || a->weight == b->weight ||
                                                  (isnan(a->weight) && isnan(b->weight))),
               "weight %g vs %g", a->weight, b->weight);
    FUZZ_CHECK((a->tag == NULL) == (b->tag == NULL) && same_view(a->tag, a->tag_len, b->tag, b->tag_len),
               "tag differs");
    FUZZ_CHECK(a->n_features == b->n_features, "%u vs %u features", a->n_features, b->n_features);
    for (uint32_t i = 0; i < a->n_features; i++) {
        const slr_raw_feature *x = &a->features[i], *y = &b->features[i];
        FUZZ_CHECK((x->name == NULL) == (y->name == NULL), "feature %u kind", i);
        if (x->name)
            FUZZ_CHECK(same_view(x->ns, x->ns_len, y->ns, y->ns_len) &&
                           same_view(x->name, x->name_len, y->name, y->name_len),
                       "feature %u name", i);
        else
            FUZZ_CHECK(x->id == y->id, "feature %u id", i);
        FUZZ_CHECK(x->value == y->value || (isnan(x->value) && isnan(y->value)),
                   "feature %u value %.17g vs %.17g", i, x->value, y->value);
    }
}

/* Re-encode as msgpack; decoding that must give the same raw example. */
static void check_msgpack_round_trip(run *r)
{
    slr_buf_reset(&r->enc);
    if (slr_encode_raw(&r->enc, SLR_FORMAT_MSGPACK, &r->raw, NULL) != SLR_OK)
        return;
    slr_decoder *d;
    FUZZ_CHECK(slr_decoder_create(&d, SLR_FORMAT_MSGPACK, NULL) == SLR_OK, "decoder");
    char *copy = malloc(r->enc.len);
    memcpy(copy, r->enc.data, r->enc.len);
    slr_raw_example back;
    slr_raw_example_init(&back);
    size_t used;
    slr_error err;
    slr_decode_result res = slr_decoder_next(d, copy, r->enc.len, true, &used, &back, &err);
    FUZZ_CHECK(res == SLR_DECODE_EXAMPLE && used == r->enc.len,
               "re-encoded example does not decode (%d, %zu of %zu bytes): %s", (int)res, used,
               r->enc.len, res == SLR_DECODE_BAD ? err.msg : "");
    check_raw_equal(&r->raw, &back);
    slr_raw_example_free(&back);
    free(copy);
    slr_decoder_destroy(d);
}

static void check_hashed(run *r)
{
    slr_error err;
    slr_status st = slr_example_from_raw(&r->ex, &r->raw, &err);
    if (st != SLR_OK) {
        slr_bad_reason why = r->ex.bad_reason;
        FUZZ_CHECK(st == SLR_ERR_BAD_INPUT && err.msg[0], "from_raw: status %d", st);
        FUZZ_CHECK(why == SLR_BAD_LABEL || why == SLR_BAD_WEIGHT || why == SLR_BAD_VALUE ||
                       why == SLR_BAD_TOO_MANY_FEATURES,
                   "example reason %s: %s", slr_bad_reason_name(why), err.msg);
        return;
    }
    const slr_example *ex = &r->ex;
    uint32_t mask = slr_hashing_mask(&r->hashing);
    FUZZ_CHECK(ex->n_features <= ex->max_features, "%u features, limit %u", ex->n_features,
               ex->max_features);
    FUZZ_CHECK(!ex->has_label || ex->label == 0.0 || ex->label == 1.0, "label %g", ex->label);
    FUZZ_CHECK(ex->weight > 0 && isfinite(ex->weight), "weight %g", ex->weight);
    for (uint32_t i = 0; i < ex->n_features; i++)
        FUZZ_CHECK(ex->features[i].index <= mask && isfinite(ex->features[i].value),
                   "feature %u: index %u value %g", i, ex->features[i].index,
                   (double)ex->features[i].value);
}

/* Decode the record at the front of win[0, len); returns bytes consumed (0: need more). */
static size_t step(run *r, const char *win, size_t len, bool at_end, size_t offset)
{
    size_t used = 12345;
    slr_error err;
    slr_decode_result res = slr_decoder_next(r->d, win, len, at_end, &used, &r->raw, &err);
    if (res == SLR_DECODE_NEED_MORE) {
        FUZZ_CHECK(!at_end, "NEED_MORE with at_end (%zu bytes): the file loop would spin", len);
        FUZZ_CHECK(used == 0, "NEED_MORE consumed %zu", used);
        return 0;
    }
    FUZZ_CHECK(used > 0 && used <= len, "result %d consumed %zu of %zu", (int)res, used, len);
    if (res == SLR_DECODE_BAD) {
        FUZZ_CHECK(err.code != SLR_OK && err.msg[0], "BAD without a message");
        bool resync, truncated;
        slr_bad_reason why = slr_decoder_last_bad(r->d, &resync, &truncated);
        FUZZ_CHECK(why == SLR_BAD_DECODE || why == SLR_BAD_JUNK || why == SLR_BAD_TOO_LARGE,
                   "decoder reason %s", slr_bad_reason_name(why));
        FUZZ_CHECK(!resync || (used == 1 && r->format == SLR_FORMAT_MSGPACK), "resync consumed %zu", used);
        FUZZ_CHECK(!truncated || (why == SLR_BAD_TOO_LARGE && !at_end), "truncated %s",
                   slr_bad_reason_name(why));
    }
    if (res == SLR_DECODE_EXAMPLE) {
        uint64_t h = digest_raw(&r->raw, win, len, used);
        if (r->n_examples < MAX_OUTCOMES)
            r->examples[r->n_examples++] = (outcome){offset, used, h};
        check_hashed(r);
        check_msgpack_round_trip(r);
    }
    return used;
}

static void run_open(run *r, slr_format f, uint8_t params)
{
    memset(r, 0, sizeof *r);
    r->format = f;
    FUZZ_CHECK(slr_decoder_create(&r->d, f, NULL) == SLR_OK, "decoder");
    slr_decoder_set_max_record(r->d, max_records[params & 7]);
    slr_raw_example_init(&r->raw);
    slr_hashing_init(&r->hashing, 18);
    const char *q = quadratics[params >> 5];
    for (size_t i = 0; q[i] && q[i + 1]; i += 2) {
        char pair[3] = {q[i], q[i + 1], 0};
        slr_hashing_add_quadratic(&r->hashing, pair, NULL);
    }
    slr_example_init(&r->ex, &r->hashing);
    r->ex.max_features = max_features[(params >> 3) & 3];
    slr_buf_init(&r->enc);
}

static void run_close(run *r)
{
    slr_decoder_destroy(r->d);
    slr_raw_example_free(&r->raw);
    slr_example_free(&r->ex);
    slr_buf_free(&r->enc);
}

static int fuzz_format(slr_format f, const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t params = data[0];
    uint64_t seed = (uint64_t)data[1] << 8 | data[2];
    const char *stream = (const char *)data + 3;
    size_t n = size - 3;

    /* whole: one buffer holding everything, at_end */
    run *whole = malloc(sizeof *whole), *split = malloc(sizeof *split);
    run_open(whole, f, params);
    char *all = malloc(n ? n : 1);
    memcpy(all, stream, n);
    size_t used0 = 1;
    FUZZ_CHECK(slr_decoder_next(whole->d, all, 0, true, &used0, &whole->raw, NULL) ==
                       SLR_DECODE_NEED_MORE && used0 == 0,
               "an empty buffer must be NEED_MORE");
    for (size_t pos = 0; pos < n;) {
        size_t used = step(whole, all + pos, n - pos, true, pos);
        FUZZ_CHECK(used > 0, "no progress at the end of the input");
        pos += used;
    }
    free(all);

    /* split: a window that grows by random steps, copied afresh each call */
    run_open(split, f, params);
    size_t pos = 0, avail = 0;
    while (pos < n) {
        if (avail == pos) {
            size_t grow = 1 + fuzz_rand(&seed) % (fuzz_rand(&seed) % 4 == 0 ? 512 : 16);
            avail = avail + grow > n ? n : avail + grow;
        }
        size_t len = avail - pos;
        char *win = malloc(len);
        memcpy(win, stream + pos, len);
        size_t used = step(split, win, len, avail == n, pos);
        free(win);
        if (used == 0) {
            size_t grow = 1 + fuzz_rand(&seed) % 64;
            avail = avail + grow > n ? n : avail + grow;
        }
        pos += used;
    }

    if (slr_format_is_text(f)) {
        FUZZ_CHECK(whole->n_examples == split->n_examples, "%zu examples whole, %zu split",
                   whole->n_examples, split->n_examples);
        for (size_t i = 0; i < whole->n_examples; i++) {
            const outcome *a = &whole->examples[i], *b = &split->examples[i];
            FUZZ_CHECK(a->offset == b->offset && a->consumed == b->consumed && a->digest == b->digest,
                       "example %zu: at %zu+%zu whole, %zu+%zu split%s", i, a->offset, a->consumed,
                       b->offset, b->consumed, a->digest != b->digest ? ", content differs" : "");
        }
    }
    run_close(whole);
    run_close(split);
    free(whole);
    free(split);
    return 0;
}

int fuzz_msgpack(const uint8_t *data, size_t size) { return fuzz_format(SLR_FORMAT_MSGPACK, data, size); }
int fuzz_vw(const uint8_t *data, size_t size) { return fuzz_format(SLR_FORMAT_VW, data, size); }
int fuzz_libsvm(const uint8_t *data, size_t size) { return fuzz_format(SLR_FORMAT_LIBSVM, data, size); }
int fuzz_criteo(const uint8_t *data, size_t size) { return fuzz_format(SLR_FORMAT_CRITEO, data, size); }
