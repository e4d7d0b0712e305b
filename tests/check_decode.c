/* check_decode.c - input formats, hashing of raw examples, and encoders:
 * every format's good and bad records, framing (CRLF, NEED_MORE, over-long
 * lines), slr_example_from_raw's checks and hashing against an independent
 * XXH3 computation, round trips through both encoders, and random-input
 * robustness (no crash, always progress). */
#include <check.h>
#include <float.h>
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "decode/decode_impl.h" /* slr_decoder_set_fast_paths */
#include "decode/number.h"
#include "streamlr/decode.h"
#include "streamlr/encode.h"
#include "testutil.h"

/* ------------------------------------------------------------------ helpers */

/* A decoder plus an exactly-sized private copy of the input, so that a read
 * past the end is caught by the sanitizer build. */
typedef struct dc {
    slr_decoder *d;
    char *buf;
    size_t len, pos;
    slr_raw_example raw;
    slr_error err;
    size_t consumed;
} dc;

static void dc_open(dc *c, slr_format f)
{
    memset(c, 0, sizeof *c);
    ck_assert_int_eq(slr_decoder_create(&c->d, f, &c->err), SLR_OK);
    ck_assert_int_eq(slr_decoder_format(c->d), f);
    slr_raw_example_init(&c->raw);
}

static void dc_feed(dc *c, const void *data, size_t len)
{
    free(c->buf);
    c->buf = malloc(len ? len : 1);
    memcpy(c->buf, data, len);
    c->len = len;
    c->pos = 0;
}

static void dc_feeds(dc *c, const char *s)
{
    dc_feed(c, s, strlen(s));
}

static slr_decode_result dc_next(dc *c, bool at_end)
{
    c->err.msg[0] = '\0';
    c->consumed = 12345;
    slr_decode_result r =
        slr_decoder_next(c->d, c->buf + c->pos, c->len - c->pos, at_end, &c->consumed, &c->raw, &c->err);
    if (r == SLR_DECODE_NEED_MORE)
        ck_assert_uint_eq(c->consumed, 0);
    else
        ck_assert_msg(c->consumed > 0 && c->consumed <= c->len - c->pos, "consumed %zu of %zu",
                      c->consumed, c->len - c->pos);
    if (r != SLR_DECODE_NEED_MORE)
        c->pos += c->consumed;
    return r;
}

static void dc_close(dc *c)
{
    slr_decoder_destroy(c->d);
    slr_raw_example_free(&c->raw);
    free(c->buf);
}

/* One record from a string, expected to decode. */
static void decode_ok(dc *c, slr_format f, const char *s)
{
    dc_open(c, f);
    dc_feeds(c, s);
    slr_decode_result r = dc_next(c, true);
    ck_assert_msg(r == SLR_DECODE_EXAMPLE, "\"%s\": result %d (%s)", s, r, c->err.msg);
    ck_assert_uint_eq(c->consumed, strlen(s));
}

static bool view_eq(const char *p, uint32_t n, const char *s)
{
    return n == strlen(s) && (n == 0 || !memcmp(p, s, n));
}

static void check_named(const slr_raw_example *raw, uint32_t i, const char *ns, const char *name, double v)
{
    ck_assert_msg(i < raw->n_features, "feature %u missing (have %u)", i, raw->n_features);
    const slr_raw_feature *f = &raw->features[i];
    ck_assert_msg(f->name != NULL, "feature %u is pre-hashed, expected %s^%s", i, ns, name);
    ck_assert_msg(view_eq(f->ns, f->ns_len, ns) && view_eq(f->name, f->name_len, name),
                  "feature %u is \"%.*s\"^\"%.*s\", expected \"%s\"^\"%s\"", i, (int)f->ns_len,
                  f->ns ? f->ns : "", (int)f->name_len, f->name, ns, name);
    ck_assert_msg(f->value == v, "feature %u (%s^%s) value %.17g, expected %.17g", i, ns, name, f->value, v);
}

static void check_hashed(const slr_raw_example *raw, uint32_t i, uint64_t id, double v)
{
    ck_assert_msg(i < raw->n_features, "feature %u missing (have %u)", i, raw->n_features);
    const slr_raw_feature *f = &raw->features[i];
    ck_assert_msg(f->name == NULL && f->ns == NULL, "feature %u should be pre-hashed", i);
    ck_assert_msg(f->id == id && f->value == v, "feature %u: id %llu value %g, expected %llu %g", i,
                  (unsigned long long)f->id, f->value, (unsigned long long)id, v);
}

static void check_reason(const slr_error *err, const char *sub)
{
    ck_assert_msg(strstr(err->msg, sub) != NULL, "reason \"%s\" lacks \"%s\"", err->msg, sub);
}

/* msgpack building */
typedef struct mpb {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} mpb;

static void mpb_init(mpb *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static void mpb_free(mpb *b)
{
    msgpack_sbuffer_destroy(&b->sb);
}

/* A small JSON-like notation for msgpack test inputs: nil true false; 12 -3
 * (integers); 2.5 (float64); 2.5f (float32); "text" or a bare word
 * (strings); [a b] arrays; {k v} maps; u32(1 2) and f32(0.5 1) bins of
 * little-endian words; bin"raw" a bin of those bytes.  Commas and colons
 * may be written for readability and are ignored. */
static void mp_value(const char **s, msgpack_packer *pk);

static void mp_skip(const char **s)
{
    while (**s == ' ' || **s == ',' || **s == ':')
        (*s)++;
}

static size_t mp_token_len(const char *p)
{
    return strcspn(p, " ,:[]{}()");
}

static void mp_words(const char **s, msgpack_packer *pk, bool as_float)
{
    unsigned char bytes[4 * 64];
    size_t n = 0;
    for (*s += 4; (mp_skip(s), **s != ')'); n++) {
        ck_assert_uint_lt(n, 64);
        char *end;
        double v = strtod(*s, &end);
        ck_assert_ptr_ne(end, *s);
        *s = end;
        float f = (float)v;
        uint32_t u = (uint32_t)v;
        if (as_float)
            memcpy(&u, &f, 4);
        for (int k = 0; k < 4; k++)
            bytes[4 * n + (size_t)k] = (unsigned char)(u >> (8 * k));
    }
    (*s)++;
    msgpack_pack_bin_with_body(pk, bytes, 4 * n);
}

static void mp_value(const char **s, msgpack_packer *pk)
{
    mp_skip(s);
    const char *p = *s;
    if (*p == '[' || *p == '{') {
        char close = *p == '[' ? ']' : '}';
        msgpack_sbuffer items;
        msgpack_sbuffer_init(&items);
        msgpack_packer ipk;
        msgpack_packer_init(&ipk, &items, msgpack_sbuffer_write);
        uint32_t n = 0;
        for (*s = p + 1; (mp_skip(s), **s != close); n++) {
            ck_assert_msg(**s != '\0', "unclosed %c", *p);
            mp_value(s, &ipk);
        }
        (*s)++;
        if (close == ']') {
            msgpack_pack_array(pk, n);
        } else {
            ck_assert_msg(n % 2 == 0, "odd map");
            msgpack_pack_map(pk, n / 2);
        }
        pk->callback(pk->data, items.data, items.size);
        msgpack_sbuffer_destroy(&items);
    } else if (*p == '"' || !strncmp(p, "bin\"", 4)) {
        const char *body = strchr(p, '"') + 1, *end = strchr(body, '"');
        if (*p == '"')
            msgpack_pack_str_with_body(pk, body, (size_t)(end - body));
        else
            msgpack_pack_bin_with_body(pk, body, (size_t)(end - body));
        *s = end + 1;
    } else if (!strncmp(p, "u32(", 4) || !strncmp(p, "f32(", 4)) {
        mp_words(s, pk, *p == 'f');
    } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
        size_t n = mp_token_len(p);
        *s = p + n;
        if (p[n - 1] == 'f')
            msgpack_pack_float(pk, strtof(p, NULL));
        else if (memchr(p, '.', n) || memchr(p, 'e', n))
            msgpack_pack_double(pk, strtod(p, NULL));
        else if (*p == '-')
            msgpack_pack_int64(pk, strtoll(p, NULL, 10));
        else
            msgpack_pack_uint64(pk, strtoull(p, NULL, 10));
    } else {
        size_t n = mp_token_len(p);
        ck_assert_msg(n > 0, "bad notation at \"%s\"", p);
        *s = p + n;
        if (n == 3 && !strncmp(p, "nil", 3))
            msgpack_pack_nil(pk);
        else if (n == 4 && !strncmp(p, "true", 4))
            msgpack_pack_true(pk);
        else if (n == 5 && !strncmp(p, "false", 5))
            msgpack_pack_false(pk);
        else
            msgpack_pack_str_with_body(pk, p, n);
    }
}

/* Append the objects written in `spec`; returns the bytes added. */
static size_t mpb_add(mpb *b, const char *spec)
{
    size_t before = b->sb.size;
    for (;;) {
        mp_skip(&spec);
        if (!*spec)
            return b->sb.size - before;
        mp_value(&spec, &b->pk);
    }
}

/* Feed c the msgpack encoding of spec. */
static void dc_feed_mp(dc *c, const char *spec)
{
    mpb b;
    mpb_init(&b);
    mpb_add(&b, spec);
    dc_feed(c, b.sb.data, b.sb.size);
    mpb_free(&b);
}

/* -------------------------------------------------------------- formats */

START_TEST(format_names_and_guess)
{
    slr_format f;
    slr_error err;
    ck_assert_int_eq(slr_format_parse("vw", &f, &err), SLR_OK);
    ck_assert_int_eq(f, SLR_FORMAT_VW);
    ck_assert_int_eq(slr_format_parse("libsvm", &f, &err), SLR_OK);
    ck_assert_int_eq(f, SLR_FORMAT_LIBSVM);
    ck_assert_int_eq(slr_format_parse("criteo", &f, &err), SLR_OK);
    ck_assert_int_eq(f, SLR_FORMAT_CRITEO);
    ck_assert_int_eq(slr_format_parse("msgpack", &f, &err), SLR_OK);
    ck_assert_int_eq(f, SLR_FORMAT_MSGPACK);
    ck_assert_int_eq(slr_format_parse("csv", &f, &err), SLR_ERR_ARG);
    check_reason(&err, "csv");
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(slr_format_parse(slr_format_name((slr_format)i), &f, &err), SLR_OK);
        ck_assert_int_eq(f, i);
    }

    static const struct {
        const char *path;
        int fmt; /* -1: no guess */
    } guesses[] = {
        {"a.vw", SLR_FORMAT_VW},        {"dir.x/b.svm", SLR_FORMAT_LIBSVM}, {"c.libsvm", SLR_FORMAT_LIBSVM},
        {"d.tsv", SLR_FORMAT_CRITEO},   {"e.criteo", SLR_FORMAT_CRITEO},    {"f.msgpack", SLR_FORMAT_MSGPACK},
        {"g.mp", SLR_FORMAT_MSGPACK},   {"h.vw.gz", -1},                    {"noext", -1},
        {"dir.vw/noext", -1},           {".vw", -1},                        {"x.txt", -1},
    };
    for (size_t i = 0; i < sizeof guesses / sizeof guesses[0]; i++) {
        bool ok = slr_format_guess(guesses[i].path, &f);
        ck_assert_msg(ok == (guesses[i].fmt >= 0), "%s: guess %d", guesses[i].path, ok);
        if (ok)
            ck_assert_msg((int)f == guesses[i].fmt, "%s: guessed %s", guesses[i].path, slr_format_name(f));
    }
    ck_assert(slr_format_is_text(SLR_FORMAT_VW) && !slr_format_is_text(SLR_FORMAT_MSGPACK));
}
END_TEST

/* ------------------------------------------------------------- numbers */

/* The content tells the formats apart; what does not tell is said. */
START_TEST(format_detected_from_content)
{
    static const struct {
        const char *bytes;
        size_t len;
        bool told;
        slr_format f;
    } cases[] = {
        {"1 |a x y\n-1 |b z\n", 0, true, SLR_FORMAT_VW},
        {"# a comment\n\n0 'tag| f:2\n", 0, true, SLR_FORMAT_VW},
        {"+1 3:1 11:1 14:1\n-1 5:1 7:0.5\n", 0, true, SLR_FORMAT_LIBSVM},
        {"1 qid:3 1:0.5 2:1e-3\n", 0, true, SLR_FORMAT_LIBSVM},
        {"0\t1\t\t5\t0\t1382\t4\t15\t2\t181\t1\t2\t\t2\t68fd1e64\t80e26c9b\n", 0, true,
         SLR_FORMAT_CRITEO},
        {"\x92\x01\x81\xa1" "a\x01", 6, true, SLR_FORMAT_MSGPACK},
        {"\x84\xa5label\x01", 8, true, SLR_FORMAT_MSGPACK},
        {"1 \x01\x02 binary\n", 0, true, SLR_FORMAT_MSGPACK},
        {"hello world\nnot a format\n", 0, false, SLR_FORMAT_VW},
        {"1\n0\n", 0, false, SLR_FORMAT_VW}, /* labels alone: any text format */
        {"\n\n  ", 0, false, SLR_FORMAT_VW},
        {"", 0, false, SLR_FORMAT_VW},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].bytes);
        slr_format f = (slr_format)-1;
        bool told = slr_format_detect(cases[i].bytes, len, &f);
        ck_assert_msg(told == cases[i].told, "case %zu: told %d", i, told);
        if (told)
            ck_assert_msg(f == cases[i].f, "case %zu: %s", i, slr_format_name(f));
    }
}
END_TEST

START_TEST(numbers_match_strtod)
{
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    test_rng r = {.s = 99};
    char s[96], tmp[96];
    int slow = 0;
    for (int it = 0; it < 200000; it++) {
        size_t n = 0;
        if (test_rng_below(&r, 4) == 0)
            s[n++] = test_rng_below(&r, 2) ? '-' : '+';
        int digits = 1 + (int)test_rng_below(&r, it % 3 == 0 ? 30 : 17);
        int point = (int)test_rng_below(&r, (uint64_t)digits + 2) - 1; /* -1: no point */
        for (int k = 0; k < digits; k++) {
            if (k == point)
                s[n++] = '.';
            s[n++] = (char)('0' + test_rng_below(&r, 10));
        }
        if (test_rng_below(&r, 3) == 0)
            n += (size_t)snprintf(s + n, sizeof s - n, "e%d", (int)test_rng_below(&r, 700) - 350);
        s[n] = '\0';
        double want = strtod(s, NULL), got = -7;
        ck_assert_msg(slr_parse_double(s, n, c, &got), "\"%s\" rejected", s);
        ck_assert_msg(memcmp(&got, &want, sizeof got) == 0 || (got == 0 && want == 0),
                      "\"%s\": %.17g, strtod %.17g", s, got, want);
        slow += digits > 15;
        /* the same text followed by other bytes must not be read past n */
        memcpy(tmp, s, n);
        tmp[n] = '7';
        ck_assert(slr_parse_double(tmp, n, c, &got) && (got == want || (got == 0 && want == 0)));
    }
    ck_assert_int_gt(slow, 1000);

    static const char *bad[] = {"", ".", "-", "+", "e5", "1e", "1e+", "nan", "NaN", "inf", "-inf",
                                "0x10", " 1", "1 ", "1.2.3", "--1", "1,5", "1e5.0", "١"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double v;
        ck_assert_msg(!slr_parse_double(bad[i], strlen(bad[i]), c, &v), "\"%s\" accepted", bad[i]);
    }
    double v;
    ck_assert(slr_parse_double("1e999", 5, c, &v) && isinf(v)); /* callers reject Inf */
    ck_assert(slr_parse_double("1.", 2, c, &v) && v == 1.0);
    ck_assert(slr_parse_double(".5", 2, c, &v) && v == 0.5);
    char huge[SLR_NUMBER_MAX_CHARS + 2];
    memset(huge, '1', sizeof huge);
    ck_assert(!slr_parse_double(huge, sizeof huge, c, &v));

    uint64_t u;
    int64_t i64;
    ck_assert(slr_parse_u64("18446744073709551615", 20, &u) && u == UINT64_MAX);
    ck_assert(!slr_parse_u64("18446744073709551616", 20, &u));
    ck_assert(!slr_parse_u64("", 0, &u) && !slr_parse_u64("-1", 2, &u) && !slr_parse_u64("1.0", 3, &u));
    ck_assert(slr_parse_i64("-9223372036854775808", 20, &i64) && i64 == INT64_MIN);
    ck_assert(!slr_parse_i64("9223372036854775808", 19, &i64));
    ck_assert(slr_parse_i64("-3", 2, &i64) && i64 == -3);
    ck_assert(!slr_parse_i64("-", 1, &i64) && !slr_parse_i64("1e3", 3, &i64));
    freelocale(c);
}
END_TEST

/* ------------------------------------------------------------------ vw */

START_TEST(vw_good)
{
    dc c;
    decode_ok(&c, SLR_FORMAT_VW, "1 |a x y:2.5\n");
    ck_assert(c.raw.has_label && c.raw.label == 1.0 && !c.raw.has_weight && c.raw.tag == NULL);
    ck_assert_uint_eq(c.raw.n_features, 2);
    check_named(&c.raw, 0, "a", "x", 1);
    check_named(&c.raw, 1, "a", "y", 2.5);
    /* views point into the input */
    ck_assert(c.raw.features[1].name >= c.buf && c.raw.features[1].name < c.buf + c.len);
    dc_close(&c);

    decode_ok(&c, SLR_FORMAT_VW, "-1 0.5 7 'abc|ns f:3 g:-1e-3\n");
    ck_assert(c.raw.label == -1.0 && c.raw.has_weight && c.raw.weight == 0.5);
    ck_assert(view_eq(c.raw.tag, c.raw.tag_len, "abc"));
    check_named(&c.raw, 0, "ns", "f", 3);
    check_named(&c.raw, 1, "ns", "g", -1e-3);
    dc_close(&c);

    /* VW's rule: a token touching the bar is the tag, even a numeric one */
    decode_ok(&c, SLR_FORMAT_VW, "1 tagx|a x");
    ck_assert(view_eq(c.raw.tag, c.raw.tag_len, "tagx") && c.raw.label == 1 && !c.raw.has_weight);
    dc_close(&c);
    decode_ok(&c, SLR_FORMAT_VW, "1 2|a x");
    ck_assert(view_eq(c.raw.tag, c.raw.tag_len, "2") && !c.raw.has_weight);
    dc_close(&c);
    decode_ok(&c, SLR_FORMAT_VW, "1 2 |a x");
    ck_assert(c.raw.tag == NULL && c.raw.has_weight && c.raw.weight == 2);
    dc_close(&c);

    /* default namespace, scales, repeated namespaces */
    decode_ok(&c, SLR_FORMAT_VW, "0 | x y:2 |b:2 z:3 w |:0.5 v:4 |b u\n");
    ck_assert_uint_eq(c.raw.n_features, 6);
    check_named(&c.raw, 0, "", "x", 1);
    check_named(&c.raw, 1, "", "y", 2);
    check_named(&c.raw, 2, "b", "z", 6);
    check_named(&c.raw, 3, "b", "w", 2);
    check_named(&c.raw, 4, "", "v", 2);
    check_named(&c.raw, 5, "b", "u", 1);
    dc_close(&c);

    /* unlabelled, with and without a tag; tabs; namespace without features */
    decode_ok(&c, SLR_FORMAT_VW, "|a x\t y");
    ck_assert(!c.raw.has_label && c.raw.tag == NULL && c.raw.n_features == 2);
    dc_close(&c);
    decode_ok(&c, SLR_FORMAT_VW, "'row17 |a x");
    ck_assert(!c.raw.has_label && view_eq(c.raw.tag, c.raw.tag_len, "row17"));
    dc_close(&c);
    decode_ok(&c, SLR_FORMAT_VW, "1 |a|b x");
    ck_assert_uint_eq(c.raw.n_features, 1);
    check_named(&c.raw, 0, "b", "x", 1);
    dc_close(&c);
    /* label only, no bar */
    decode_ok(&c, SLR_FORMAT_VW, "1\n");
    ck_assert(c.raw.has_label && c.raw.n_features == 0);
    dc_close(&c);
}
END_TEST

START_TEST(text_framing)
{
    dc c;
    dc_open(&c, SLR_FORMAT_VW);
    /* CRLF, trailing spaces, blank lines, two records, a last line without newline */
    dc_feeds(&c, "1 |a x  \r\n\n  \t\r\n0 |b y\r\n1 |c z");
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_EXAMPLE);
    ck_assert_uint_eq(c.consumed, 10);
    ck_assert_uint_eq(c.raw.n_features, 1);
    check_named(&c.raw, 0, "a", "x", 1);
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_SKIP);
    ck_assert_uint_eq(c.consumed, 1);
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_SKIP);
    ck_assert_uint_eq(c.consumed, 5);
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_EXAMPLE);
    check_named(&c.raw, 0, "b", "y", 1);
    ck_assert_uint_eq(c.raw.features[0].name_len, 1); /* no '\r' in the name */
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_NEED_MORE);
    ck_assert_int_eq(dc_next(&c, true), SLR_DECODE_EXAMPLE);
    ck_assert_uint_eq(c.consumed, 6);
    check_named(&c.raw, 0, "c", "z", 1);
    ck_assert_uint_eq(c.pos, c.len);
    ck_assert_int_eq(dc_next(&c, true), SLR_DECODE_NEED_MORE); /* nothing left */
    dc_close(&c);

    /* over-long lines: reported once, then the tail is skipped */
    dc_open(&c, SLR_FORMAT_VW);
    slr_decoder_set_max_record(c.d, 16);
    dc_feeds(&c, "1 |a xxxxxxxxxxxxxxxxxxxxxxxx");
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_BAD);
    check_reason(&c.err, "line longer than 16 bytes");
    ck_assert_uint_eq(c.consumed, 29);
    bool resync, truncated;
    ck_assert_int_eq(slr_decoder_last_bad(c.d, &resync, &truncated), SLR_BAD_TOO_LARGE);
    ck_assert(!resync && truncated); /* the rest of the line follows as SKIP */
    dc_feeds(&c, "yyyy");
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_SKIP);
    dc_feeds(&c, "yyyy\n1 |a ok\n");
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_SKIP);
    ck_assert_uint_eq(c.consumed, 5);
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_EXAMPLE);
    check_named(&c.raw, 0, "a", "ok", 1);
    /* a too-long line whose newline is in the buffer is one BAD */
    dc_feeds(&c, "1 |a xxxxxxxxxxxxxxxxxxxxxx\n1 |a ok\n");
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_BAD);
    ck_assert_uint_eq(c.consumed, 28);
    ck_assert_int_eq(slr_decoder_last_bad(c.d, &resync, &truncated), SLR_BAD_TOO_LARGE);
    ck_assert(!resync && !truncated);
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_EXAMPLE);
    dc_feeds(&c, "1 |a x:abc\n");
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_BAD);
    ck_assert_int_eq(slr_decoder_last_bad(c.d, NULL, NULL), SLR_BAD_DECODE);
    /* exactly at the limit (16 bytes with the newline) is fine */
    dc_feeds(&c, "1 |a abcdefghij\n");
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_EXAMPLE);
    dc_close(&c);
}
END_TEST

typedef struct bad_case {
    const char *line;
    const char *reason;
} bad_case;

/* Each bad line must be BAD with the reason, consume exactly its line, and
 * leave the decoder able to read the good record after it. */
static void check_bad_lines(slr_format f, const bad_case *cases, size_t n, const char *good)
{
    for (size_t i = 0; i < n; i++) {
        dc c;
        dc_open(&c, f);
        char in[512];
        snprintf(in, sizeof in, "%s\n%s\n", cases[i].line, good);
        dc_feeds(&c, in);
        slr_decode_result r = dc_next(&c, false);
        ck_assert_msg(r == SLR_DECODE_BAD, "\"%s\": result %d, expected BAD", cases[i].line, r);
        check_reason(&c.err, cases[i].reason);
        ck_assert_int_eq(c.err.code, SLR_ERR_BAD_INPUT);
        ck_assert_uint_eq(c.consumed, strlen(cases[i].line) + 1);
        r = dc_next(&c, false);
        ck_assert_msg(r == SLR_DECODE_EXAMPLE, "after \"%s\": %d (%s)", cases[i].line, r, c.err.msg);
        dc_close(&c);
    }
}

START_TEST(vw_bad)
{
    static const bad_case cases[] = {
        {"abc |a x", "label \"abc\" is not a number"},
        {"1 abc 'tag|a x", "importance weight \"abc\""},
        {"1o |a x", "a tag must start with '"},
        {"1 |a x:abc", "feature \"x\" in namespace \"a\" has value \"abc\""},
        {"1 |a x:nan", "feature \"x\""},
        {"1 |a x:inf", "feature \"x\""},
        {"1 |a x:", "feature \"x\""},
        {"1 |a x:1:2", "feature \"x\""},
        {"1 |a:zz x", "namespace \"a\" has scale \"zz\""},
        {"1 |a:nan x", "namespace \"a\""},
        {"1 2 3 4 |a x", "too many numbers"},
        {"1 2 3 4 'tag|a x", "too many fields"},
        {"nan |a x", "label"},
    };
    check_bad_lines(SLR_FORMAT_VW, cases, sizeof cases / sizeof cases[0], "1 |a ok");
}
END_TEST

/* --------------------------------------------------------------- libsvm */

START_TEST(libsvm_good)
{
    dc c;
    decode_ok(&c, SLR_FORMAT_LIBSVM, "+1 3:1 11:0.5 qid:7 4294967296:2 # comment 5:5\n");
    ck_assert(c.raw.has_label && c.raw.label == 1 && c.raw.tag == NULL);
    ck_assert_uint_eq(c.raw.n_features, 3);
    check_hashed(&c.raw, 0, 3, 1);
    check_hashed(&c.raw, 1, 11, 0.5);
    check_hashed(&c.raw, 2, UINT64_C(4294967296), 2);
    dc_close(&c);

    /* a9a style: trailing space; CRLF; label only */
    decode_ok(&c, SLR_FORMAT_LIBSVM, "-1 3:1 11:1 \r\n");
    ck_assert(c.raw.label == -1 && c.raw.n_features == 2);
    dc_close(&c);
    decode_ok(&c, SLR_FORMAT_LIBSVM, "0");
    ck_assert(c.raw.has_label && c.raw.label == 0 && c.raw.n_features == 0);
    dc_close(&c);

    dc_open(&c, SLR_FORMAT_LIBSVM);
    dc_feeds(&c, "# a comment line\n  # another\n1 1:1");
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_SKIP);
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_SKIP);
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_NEED_MORE);
    ck_assert_int_eq(dc_next(&c, true), SLR_DECODE_EXAMPLE);
    check_hashed(&c.raw, 0, 1, 1);
    dc_close(&c);
}
END_TEST

START_TEST(libsvm_bad)
{
    static const bad_case cases[] = {
        {"1 3", "feature \"3\" has no value"},
        {"1 3:", "feature 3 has value \"\""},
        {"1 x:1", "feature index \"x\""},
        {"1 -3:1", "feature index \"-3\""},
        {"1 :1", "feature index \"\""},
        {"1 99999999999999999999:1", "feature index"},
        {"1 3:abc", "feature 3 has value \"abc\""},
        {"1 3:nan", "feature 3"},
        {"one 3:1", "label \"one\""},
        {"1,2 3:1", "label \"1,2\""},
    };
    check_bad_lines(SLR_FORMAT_LIBSVM, cases, sizeof cases / sizeof cases[0], "1 1:1");
}
END_TEST

/* --------------------------------------------------------------- criteo */

/* A Criteo line from its columns (NULL = empty). */
static void criteo_line(char *out, size_t cap, const char *const *cols, int n)
{
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        k += (size_t)snprintf(out + k, cap - k, "%s%s", i ? "\t" : "", cols[i] ? cols[i] : "");
        ck_assert_uint_lt(k, cap);
    }
}

START_TEST(criteo_good)
{
    const char *cols[40] = {"1", "5", "-3", NULL, "0", "1382", "4", "15", "2", "181", "1", "2", NULL, "2"};
    static const char *cats[26] = {"68fd1e64", NULL,       "fb936136", "7b4723c4", "25c83c98", "7e0ccccf", "de7995b8",
                                   "1f89b562", "a73ee510", "a8cd5504", "b2cb9c98", "37c9c164", "2824a5f6", "1adce6ef",
                                   "8ba8b39a", "891b62e7", "e5ba7672", "f54016b9", "21ddcdc9", "b1252a9d", "07b5194c",
                                   NULL,       "3a171ecb", "c5c50484", "e8b83407", "9727dd16"};
    for (int k = 0; k < 26; k++)
        cols[14 + k] = cats[k];
    char line[1024];
    criteo_line(line, sizeof line, cols, 40);
    dc c;
    decode_ok(&c, SLR_FORMAT_CRITEO, line);
    ck_assert(c.raw.has_label && c.raw.label == 1);
    /* 11 non-empty integers + 24 non-empty categories */
    ck_assert_uint_eq(c.raw.n_features, 11 + 24);
    /* exact against the library's transform; its closeness to log1p is checked below
     * (the compiler folds log1p(5) correctly rounded, glibc may be an ulp off) */
    check_named(&c.raw, 0, "I", "1", slr_criteo_numeric_transform(5));
    check_named(&c.raw, 1, "I", "2", slr_criteo_numeric_transform(-3));
    check_named(&c.raw, 2, "I", "4", 0);
    check_named(&c.raw, 10, "I", "13", slr_criteo_numeric_transform(2));
    check_named(&c.raw, 11, "a", "68fd1e64", 1);
    check_named(&c.raw, 12, "c", "fb936136", 1); /* C2 empty: skipped */
    check_named(&c.raw, 34, "z", "9727dd16", 1);
    dc_close(&c);

    /* 39 columns: Criteo's test file, unlabelled; CRLF */
    criteo_line(line, sizeof line, cols + 1, 39);
    strcat(line, "\r\n");
    decode_ok(&c, SLR_FORMAT_CRITEO, line);
    ck_assert(!c.raw.has_label && c.raw.n_features == 35);
    check_named(&c.raw, 0, "I", "1", slr_criteo_numeric_transform(5));
    check_named(&c.raw, 34, "z", "9727dd16", 1);
    dc_close(&c);

    /* all fields empty but the label */
    const char *empty[40] = {"0"};
    criteo_line(line, sizeof line, empty, 40);
    decode_ok(&c, SLR_FORMAT_CRITEO, line);
    ck_assert(c.raw.has_label && c.raw.label == 0 && c.raw.n_features == 0);
    dc_close(&c);

    ck_assert(slr_criteo_numeric_transform(0) == 0);
    for (double v = 1; v < 1e7; v = v * 3 + 1) {
        ck_assert(test_close(slr_criteo_numeric_transform(v), log1p(v), 1e-15, 0));
        ck_assert(slr_criteo_numeric_transform(-v) == -slr_criteo_numeric_transform(v));
    }
    ck_assert(slr_criteo_numeric_transform(1e6) < 14);
}
END_TEST

START_TEST(criteo_bad)
{
    const char *cols[41] = {"1", "5"};
    char l38[512], l41[512], lfloat[512], lint[512], llabel[512], lbig[512];
    criteo_line(l38, sizeof l38, cols, 38);
    criteo_line(l41, sizeof l41, cols, 41);
    cols[5] = "1.5";
    criteo_line(lfloat, sizeof lfloat, cols, 40);
    cols[5] = "x";
    criteo_line(lint, sizeof lint, cols, 40);
    cols[5] = "99999999999999999999";
    criteo_line(lbig, sizeof lbig, cols, 40);
    cols[5] = NULL;
    cols[0] = "yes";
    criteo_line(llabel, sizeof llabel, cols, 40);
    const bad_case cases[] = {
        {l38, "expected 40 tab-separated columns, got 38"},
        {l41, "expected 40 tab-separated columns, got 41"},
        {"1 2 3", "got 1"},
        {lfloat, "I5 = \"1.5\" is not an integer"},
        {lint, "I5 = \"x\""},
        {lbig, "I5"},
        {llabel, "label \"yes\""},
    };
    const char *good[40] = {"0", "1"};
    char g[256];
    criteo_line(g, sizeof g, good, 40);
    check_bad_lines(SLR_FORMAT_CRITEO, cases, sizeof cases / sizeof cases[0], g);
}
END_TEST

/* -------------------------------------------------------------- msgpack */

START_TEST(msgpack_array_forms)
{
    dc c;
    dc_open(&c, SLR_FORMAT_MSGPACK);
    dc_feed_mp(&c, "[1, {a: {x: 1, y: 2.5}}]");
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_EXAMPLE);
    ck_assert_uint_eq(c.consumed, c.len);
    ck_assert(c.raw.has_label && c.raw.label == 1 && !c.raw.has_weight && c.raw.tag == NULL);
    check_named(&c.raw, 0, "a", "x", 1);
    check_named(&c.raw, 1, "a", "y", 2.5);
    /* str views are into the input buffer, not copies (msgpack-c 4.0 behaviour we rely on) */
    ck_assert(c.raw.features[1].name > c.buf && c.raw.features[1].name < c.buf + c.len);
    ck_assert(c.raw.features[1].ns > c.buf && c.raw.features[1].ns < c.buf + c.len);

    /* [label, weight, features] with every kind of features entry */
    dc_feed_mp(&c, "[-1.0, 2.0f, {a: {x: 1.5f}, b: [u, v], n: -3, country: fr, flag: true, off: false,"
                   " missing: nil, 12345: 0.25, e: {}}]");
    ck_assert_int_eq(dc_next(&c, true), SLR_DECODE_EXAMPLE);
    ck_assert(c.raw.label == -1 && c.raw.has_weight && c.raw.weight == 2);
    ck_assert_uint_eq(c.raw.n_features, 7);
    check_named(&c.raw, 0, "a", "x", 1.5);
    check_named(&c.raw, 1, "b", "u", 1);
    check_named(&c.raw, 2, "b", "v", 1);
    check_named(&c.raw, 3, "", "n", -3);
    check_named(&c.raw, 4, "country", "fr", 1);
    check_named(&c.raw, 5, "", "flag", 1);
    check_hashed(&c.raw, 6, 12345, 0.25);

    /* [nil, [names]]: unlabelled, default namespace */
    dc_feed_mp(&c, "[nil, [p, q]]");
    ck_assert_int_eq(dc_next(&c, true), SLR_DECODE_EXAMPLE);
    ck_assert(!c.raw.has_label && c.raw.n_features == 2);
    check_named(&c.raw, 0, "", "p", 1);
    check_named(&c.raw, 1, "", "q", 1);

    /* label kinds */
    static const struct {
        const char *spec;
        double label;
    } labels[] = {{"[true, {}]", 1}, {"[false, {}]", 0}, {"[-1, {}]", -1}, {"[1.0f, {}]", 1}, {"[0, {}]", 0}};
    for (size_t k = 0; k < sizeof labels / sizeof labels[0]; k++) {
        dc_feed_mp(&c, labels[k].spec);
        ck_assert_int_eq(dc_next(&c, true), SLR_DECODE_EXAMPLE);
        ck_assert_msg(c.raw.has_label && c.raw.label == labels[k].label, "%s", labels[k].spec);
    }
    dc_close(&c);
}
END_TEST

START_TEST(msgpack_compact_and_map_forms)
{
    dc c;
    dc_open(&c, SLR_FORMAT_MSGPACK);
    /* two compact records back to back, the second with values nil */
    dc_feed_mp(&c, "[0, nil, u32(3, 7, 4294967294), f32(0.5, 1, -2)]  [1, 0.5, u32(3, 7), nil]");
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_EXAMPLE);
    ck_assert(c.raw.has_label && c.raw.label == 0 && !c.raw.has_weight && c.raw.n_features == 3);
    check_hashed(&c.raw, 0, 3, 0.5);
    check_hashed(&c.raw, 1, 7, 1);
    check_hashed(&c.raw, 2, 0xfffffffe, -2);
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_EXAMPLE);
    ck_assert(c.raw.label == 1 && c.raw.has_weight && c.raw.weight == 0.5 && c.raw.n_features == 2);
    check_hashed(&c.raw, 1, 7, 1);
    ck_assert_uint_eq(c.pos, c.len);

    /* map form with aliases, tag, named features and compact ids together */
    dc_feed_mp(&c, "{y: true, w: 3, tag: row-9, values: f32(0.5, 1), f: {k: 4}, ids: u32(3, 7)}");
    ck_assert_int_eq(dc_next(&c, true), SLR_DECODE_EXAMPLE);
    ck_assert(c.raw.label == 1 && c.raw.weight == 3 && view_eq(c.raw.tag, c.raw.tag_len, "row-9"));
    ck_assert(c.raw.tag > c.buf && c.raw.tag < c.buf + c.len);
    ck_assert_uint_eq(c.raw.n_features, 3);
    check_named(&c.raw, 0, "", "k", 4);
    check_hashed(&c.raw, 1, 3, 0.5);
    check_hashed(&c.raw, 2, 7, 1);

    /* map form, long keys, unlabelled */
    dc_feed_mp(&c, "{label: nil, weight: 0.25, features: [z]}");
    ck_assert_int_eq(dc_next(&c, true), SLR_DECODE_EXAMPLE);
    ck_assert(!c.raw.has_label && c.raw.weight == 0.25 && c.raw.tag == NULL);
    check_named(&c.raw, 0, "", "z", 1);

    /* empty strings stay strings (msgpack-c hands them out as NULL): an empty
     * name is a named feature, not pre-hashed id 0, and an empty tag is a tag
     * (found by fuzz_vw: VW "| :2" did not survive a msgpack round trip) */
    dc_feed_mp(&c, "{y: 1, tag: \"\", f: {\"\": {\"\": 2}, n: [\"\"], \"\": 3}}");
    ck_assert_int_eq(dc_next(&c, true), SLR_DECODE_EXAMPLE);
    ck_assert(c.raw.tag != NULL && c.raw.tag_len == 0);
    ck_assert_uint_eq(c.raw.n_features, 3);
    check_named(&c.raw, 0, "", "", 2);
    check_named(&c.raw, 1, "n", "", 1);
    check_named(&c.raw, 2, "", "", 3);
    dc_feed_mp(&c, "[1, {\"\": {\"\": -2}, \"\": [\"\"]}]"); /* NULL pointers in this shape */
    ck_assert_int_eq(dc_next(&c, true), SLR_DECODE_EXAMPLE);
    ck_assert_uint_eq(c.raw.n_features, 2);
    check_named(&c.raw, 0, "", "", -2);
    check_named(&c.raw, 1, "", "", 1);
    /* an empty compact form is an example without features */
    dc_feed_mp(&c, "[1, nil, bin\"\", bin\"\"]");
    ck_assert_int_eq(dc_next(&c, true), SLR_DECODE_EXAMPLE);
    ck_assert_uint_eq(c.raw.n_features, 0);
    dc_close(&c);
}
END_TEST

START_TEST(msgpack_framing)
{
    dc c;
    mpb b;
    mpb_init(&b);
    size_t one = mpb_add(&b, "[1, {a: [xyz]}]");
    dc_open(&c, SLR_FORMAT_MSGPACK);
    /* every proper prefix needs more, then is bad with consumed 1 at the end */
    for (size_t cut = 1; cut < one; cut++) {
        dc_feed(&c, b.sb.data, cut);
        ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_NEED_MORE);
        ck_assert_int_eq(dc_next(&c, true), SLR_DECODE_BAD);
        ck_assert_uint_eq(c.consumed, 1);
        check_reason(&c.err, "truncated");
        bool resync;
        ck_assert_int_eq(slr_decoder_last_bad(c.d, &resync, NULL), SLR_BAD_JUNK);
        ck_assert(resync);
    }
    /* a 5-byte header that promises 4 billion elements just needs more */
    static const unsigned char huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    dc_feed(&c, huge, sizeof huge);
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_NEED_MORE);
    /* ...unless it cannot fit under the record limit */
    slr_decoder_set_max_record(c.d, 6);
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_BAD);
    ck_assert_uint_eq(c.consumed, 1);
    check_reason(&c.err, "longer than 6 bytes");
    bool resync;
    ck_assert_int_eq(slr_decoder_last_bad(c.d, &resync, NULL), SLR_BAD_TOO_LARGE);
    ck_assert(resync);
    slr_decoder_set_max_record(c.d, 0); /* back to the default */
    /* garbage then a record: resynchronise byte by byte */
    char in[64] = {(char)0xc1};
    memcpy(in + 1, b.sb.data, one);
    dc_feed(&c, in, one + 1);
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_BAD);
    ck_assert_uint_eq(c.consumed, 1);
    check_reason(&c.err, "0xc1");
    ck_assert_int_eq(slr_decoder_last_bad(c.d, &resync, NULL), SLR_BAD_JUNK);
    ck_assert(resync);
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_EXAMPLE);
    check_named(&c.raw, 0, "a", "xyz", 1);
    ck_assert_uint_eq(c.pos, c.len);

    /* nesting beyond msgpack-c's stack: well-formed, so skipped whole */
    char deep[128] = "";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    strcat(deep, "nil");
    for (int i = 0; i < 40; i++)
        strcat(deep, "]");
    mpb_free(&b);
    mpb_init(&b);
    size_t deep_size = mpb_add(&b, deep);
    mpb_add(&b, "[0, {}]");
    dc_feed(&c, b.sb.data, b.sb.size);
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_BAD);
    ck_assert_uint_eq(c.consumed, deep_size);
    check_reason(&c.err, "nested");
    ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_EXAMPLE);
    mpb_free(&b);

    /* the depth the message names is msgpack-c's: one level more is refused
     * as too deep, that many is unpacked (and refused as not an example) */
    for (int depth = 32; depth <= 33; depth++) {
        char nest[80] = "";
        for (int i = 0; i < depth; i++)
            strcat(nest, "[");
        strcat(nest, "nil");
        for (int i = 0; i < depth; i++)
            strcat(nest, "]");
        mpb_init(&b);
        mpb_add(&b, nest);
        dc_feed(&c, b.sb.data, b.sb.size);
        ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_BAD);
        if (depth == 32)
            ck_assert_ptr_null(strstr(c.err.msg, "nested"));
        else
            ck_assert_ptr_nonnull(strstr(c.err.msg, "nested more than 32 levels deep"));
        mpb_free(&b);
    }

    /* many features: the zone grows once, then is reused */
    mpb_init(&b);
    for (int rec = 0; rec < 3; rec++) {
        msgpack_pack_array(&b.pk, 2); /* [1, {a: {f0: 1, ...}}], too long to spell out */
        msgpack_pack_int(&b.pk, 1);
        msgpack_pack_map(&b.pk, 1);
        msgpack_pack_str_with_body(&b.pk, "a", 1);
        msgpack_pack_map(&b.pk, 5000);
        for (int i = 0; i < 5000; i++) {
            char name[16];
            snprintf(name, sizeof name, "f%d", i);
            msgpack_pack_str_with_body(&b.pk, name, strlen(name));
            msgpack_pack_int(&b.pk, i + 1);
        }
    }
    ck_assert_uint_gt(b.sb.size, 3 * 5000 * 4);
    dc_feed(&c, b.sb.data, b.sb.size);
    for (int rec = 0; rec < 3; rec++) {
        ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_EXAMPLE);
        ck_assert_uint_eq(c.raw.n_features, 5000);
        check_named(&c.raw, 4999, "a", "f4999", 5000);
    }
    dc_close(&c);
    mpb_free(&b);
}
END_TEST

/* A well-formed object that is not an example: BAD, consumed = its size. */
START_TEST(msgpack_bad)
{
    static const struct {
        const char *spec;
        const char *reason;
    } cases[] = {
        {"5", "array or map; got an integer"},
        {"[1]", "2 to 4 elements"},
        {"[nil, nil, nil, nil, nil]", "got 5"},
        {"[\"x\", {}]", "label is a string"},
        {"[1, w, {}]", "weight is a string"},
        {"[1, 1, bin\"12345\", nil]", "multiple of 4"},
        {"[1, nil, u32(1, 2), f32(1)]", "ids holds 2 ids but values holds 4 bytes"},
        {"[1, nil, [3], nil]", "ids must be a bin"},
        {"[1, nil, u32(1), \"1.0\"]", "values must be a bin"},
        {"{lable: 1}", "unknown key \"lable\""},
        {"{1: 1}", "keys are strings"},
        {"{values: nil}", "without \"ids\""},
        {"{label: 1, y: 0}", "key \"y\" repeats"},
        {"{tag: 7}", "tag is an integer"},
        {"[1, {ns: {x: s}}]", "feature \"x\" in namespace \"ns\" is a string"},
        {"[1, {ns: {1: 1}}]", "features[\"ns\"] has a key that is an integer"},
        {"[1, {-3: 1}]", "keys must be strings"},
        {"[1, {3: \"1\"}]", "pre-hashed feature 3 is a string"},
        {"[1, {ns: [1]}]", "features[\"ns\"] holds an integer"},
        {"[1, 7]", "features is an integer"},
        {"[1, [7]]", "features array holds an integer"},
        {"[1, {blob: bin\"xx\"}]", "features[\"blob\"] is a bin"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mpb b;
        mpb_init(&b);
        size_t bad_size = mpb_add(&b, cases[i].spec);
        mpb_add(&b, "[1, []]"); /* a good record after it */
        dc c;
        dc_open(&c, SLR_FORMAT_MSGPACK);
        dc_feed(&c, b.sb.data, b.sb.size);
        slr_decode_result r = dc_next(&c, false);
        ck_assert_msg(r == SLR_DECODE_BAD, "%s: result %d", cases[i].spec, r);
        check_reason(&c.err, cases[i].reason);
        ck_assert_uint_eq(c.consumed, bad_size);
        ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_EXAMPLE);
        dc_close(&c);
        mpb_free(&b);
    }
}
END_TEST

/* --------------------------------------------------- slr_example_from_raw */

static slr_status hash_text(slr_example *ex, slr_format f, const char *s, slr_error *err)
{
    dc c;
    decode_ok(&c, f, s);
    slr_status st = slr_example_from_raw(ex, &c.raw, err);
    dc_close(&c);
    return st;
}

START_TEST(from_raw_rejects)
{
    slr_hashing h;
    slr_hashing_init(&h, 18);
    slr_example ex;
    slr_example_init(&ex, &h);
    slr_error err;
    static const struct {
        slr_format format;
        const char *line, *reason;
        slr_bad_reason why;
    } cases[] = {
        {SLR_FORMAT_VW, "2 |a x", "label 2", SLR_BAD_LABEL},
        {SLR_FORMAT_VW, "0.5 |a x", "label 0.5", SLR_BAD_LABEL},
        {SLR_FORMAT_VW, "1e999 |a x", "label inf", SLR_BAD_LABEL},
        {SLR_FORMAT_VW, "1 0 |a x", "importance weight 0", SLR_BAD_WEIGHT},
        {SLR_FORMAT_VW, "1 -2 |a x", "importance weight -2", SLR_BAD_WEIGHT},
        {SLR_FORMAT_VW, "1 2e12 |a x", "importance weight 2e+12", SLR_BAD_WEIGHT},
        {SLR_FORMAT_VW, "1 |ns big:2e12", "feature \"big\" in namespace \"ns\"", SLR_BAD_VALUE},
        {SLR_FORMAT_VW, "1 |ns big:-1e300", "beyond the bound", SLR_BAD_VALUE},
        {SLR_FORMAT_VW, "1 |ns:1e300 v:1e300", "infinite", SLR_BAD_VALUE},
        {SLR_FORMAT_VW, "1 |a x:1e999", "feature \"x\" in namespace \"a\": feature value is infinite",
         SLR_BAD_VALUE},
        {SLR_FORMAT_VW, "1 |a:1e999 x:0", "NaN", SLR_BAD_VALUE},
        {SLR_FORMAT_LIBSVM, "3 1:1", "label 3", SLR_BAD_LABEL},
        {SLR_FORMAT_LIBSVM, "1 7:1e13", "pre-hashed feature 7", SLR_BAD_VALUE},
        {SLR_FORMAT_LIBSVM, "1 3:1e400", "pre-hashed feature 3: feature value is infinite", SLR_BAD_VALUE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_msg(hash_text(&ex, cases[i].format, cases[i].line, &err) == SLR_ERR_BAD_INPUT,
                      "%s accepted", cases[i].line);
        check_reason(&err, cases[i].reason);
        ck_assert_msg(ex.bad_reason == cases[i].why, "%s: reason %s, expected %s", cases[i].line,
                      slr_bad_reason_name(ex.bad_reason), slr_bad_reason_name(cases[i].why));
    }

    /* NaN and Inf reach from_raw through msgpack floats */
    slr_raw_example raw;
    slr_raw_example_init(&raw);
    const double nasty[] = {NAN, INFINITY, -INFINITY, 1.5e12};
    for (int i = 0; i < 4; i++) {
        slr_raw_example_reset(&raw);
        slr_raw_feature f = {.ns = "n", .ns_len = 1, .name = "v", .name_len = 1, .value = nasty[i]};
        ck_assert_int_eq(slr_raw_example_push(&raw, &f, &err), SLR_OK);
        ck_assert_int_eq(slr_example_from_raw(&ex, &raw, &err), SLR_ERR_BAD_INPUT);
        check_reason(&err, "feature \"v\" in namespace \"n\"");
        ck_assert_int_eq(slr_example_from_raw(&ex, &raw, NULL), SLR_ERR_BAD_INPUT);
    }
    slr_raw_example_reset(&raw);
    raw.has_label = true;
    raw.label = NAN;
    ck_assert_int_eq(slr_example_from_raw(&ex, &raw, &err), SLR_ERR_BAD_INPUT);
    raw.label = 1;
    raw.has_weight = true;
    raw.weight = NAN;
    ck_assert_int_eq(slr_example_from_raw(&ex, &raw, &err), SLR_ERR_BAD_INPUT);
    raw.weight = 2;
    ck_assert_int_eq(slr_example_from_raw(&ex, &raw, &err), SLR_OK);
    ck_assert(ex.has_label && ex.label == 1 && ex.weight == 2);

    /* too many features, before and after -q */
    ex.max_features = 3;
    ck_assert_int_eq(hash_text(&ex, SLR_FORMAT_VW, "1 |a p q r s", &err), SLR_ERR_BAD_INPUT);
    check_reason(&err, "more than 3 features");
    ck_assert_int_eq(ex.bad_reason, SLR_BAD_TOO_MANY_FEATURES);
    ck_assert_int_eq(slr_hashing_add_quadratic(&h, "ab", &err), SLR_OK);
    ck_assert_int_eq(hash_text(&ex, SLR_FORMAT_VW, "1 |a p |b q", &err), SLR_OK);
    ck_assert_int_eq(hash_text(&ex, SLR_FORMAT_VW, "1 |a p q |b r", &err), SLR_ERR_BAD_INPUT);
    check_reason(&err, "after -q expansion");
    ck_assert_int_eq(ex.bad_reason, SLR_BAD_TOO_MANY_FEATURES);
    slr_raw_example_free(&raw);
    slr_example_free(&ex);
}
END_TEST

static uint64_t ref_hash(const char *ns, const char *name)
{
    return XXH3_64bits_withSeed(name, strlen(name), XXH3_64bits(ns, strlen(ns)));
}

static uint64_t ref_pair(uint64_t ha, uint64_t hb)
{
    unsigned char le[8];
    for (int k = 0; k < 8; k++)
        le[k] = (unsigned char)(hb >> (8 * k));
    return XXH3_64bits_withSeed(le, 8, ha);
}

START_TEST(hashing_is_xxh3)
{
    slr_hashing h;
    slr_hashing_init(&h, 18);
    uint32_t mask = (1u << 18) - 1;
    slr_example ex;
    slr_example_init(&ex, &h);
    slr_error err;
    ck_assert_int_eq(hash_text(&ex, SLR_FORMAT_VW, "-1 2 |ns abc:2 |ns2 abc | def:0.5", &err), SLR_OK);
    ck_assert(ex.has_label && ex.label == 0 && ex.weight == 2);
    ck_assert_uint_eq(ex.n_features, 3);
    ck_assert_uint_eq(ex.features[0].index, ref_hash("ns", "abc") & mask);
    ck_assert_uint_eq(ex.features[1].index, ref_hash("ns2", "abc") & mask);
    ck_assert_uint_eq(ex.features[2].index, ref_hash("", "def") & mask);
    ck_assert(ex.features[0].value == 2.0f && ex.features[2].value == 0.5f);
    ck_assert_uint_ne(ex.features[0].index, ex.features[1].index);

    /* the same feature from every format hashes the same */
    uint32_t want = ex.features[2].index;
    static const char *same[] = {"1 | def:0.5", "1 |:0.25 def:2"};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(hash_text(&ex, SLR_FORMAT_VW, same[i], &err), SLR_OK);
        ck_assert_uint_eq(ex.features[0].index, want);
    }
    dc c;
    dc_open(&c, SLR_FORMAT_MSGPACK);
    dc_feed_mp(&c, "[1, {def: 0.5}]");
    ck_assert_int_eq(dc_next(&c, true), SLR_DECODE_EXAMPLE);
    ck_assert_int_eq(slr_example_from_raw(&ex, &c.raw, &err), SLR_OK);
    ck_assert_uint_eq(ex.features[0].index, want);
    dc_close(&c);

    /* criteo: namespace "I", name "3"; C1 in namespace "a" */
    const char *cols[40] = {"1", NULL, NULL, "7"};
    cols[14] = "68fd1e64";
    char line[256];
    criteo_line(line, sizeof line, cols, 40);
    ck_assert_int_eq(hash_text(&ex, SLR_FORMAT_CRITEO, line, &err), SLR_OK);
    ck_assert_uint_eq(ex.n_features, 2);
    ck_assert_uint_eq(ex.features[0].index, ref_hash("I", "3") & mask);
    ck_assert(ex.features[0].value == (float)log1p(7));
    ck_assert_uint_eq(ex.features[1].index, ref_hash("a", "68fd1e64") & mask);

    /* libsvm indices are not hashed, only masked */
    ck_assert_int_eq(hash_text(&ex, SLR_FORMAT_LIBSVM, "1 5:1 262149:2", &err), SLR_OK);
    ck_assert_uint_eq(ex.features[0].index, 5);
    ck_assert_uint_eq(ex.features[1].index, 5); /* 262149 = 2^18 + 5 */
    slr_example_free(&ex);
}
END_TEST

START_TEST(quadratic_expansion)
{
    slr_hashing h;
    slr_hashing_init(&h, 20);
    uint32_t mask = (1u << 20) - 1;
    slr_error err;
    ck_assert_int_eq(slr_hashing_add_quadratic(&h, "ab", &err), SLR_OK);
    slr_example ex;
    slr_example_init(&ex, &h);
    /* 2 a-features x 3 b-features; "c" and pre-hashed take no part */
    ck_assert_int_eq(hash_text(&ex, SLR_FORMAT_VW, "1 |a x:2 y |b z w:3 v |c k", &err), SLR_OK);
    ck_assert_uint_eq(ex.n_features, 6 + 6);
    ck_assert_uint_eq(ex.features[6].index, ref_pair(ref_hash("a", "x"), ref_hash("b", "z")) & mask);
    ck_assert(ex.features[6].value == 2.0f);
    ck_assert(ex.features[7].value == 6.0f); /* x:2 * w:3 */
    /* the namespace letter is what counts: "apple" pairs with "b..." */
    ck_assert_int_eq(hash_text(&ex, SLR_FORMAT_VW, "1 |apple x |banana z |a y", &err), SLR_OK);
    ck_assert_uint_eq(ex.n_features, 3 + 2);
    slr_example_free(&ex);

    /* -q aa: each unordered pair once, no self pairs */
    slr_hashing_init(&h, 20);
    ck_assert_int_eq(slr_hashing_add_quadratic(&h, "aa", &err), SLR_OK);
    slr_example_init(&ex, &h);
    ck_assert_int_eq(hash_text(&ex, SLR_FORMAT_VW, "1 |a x y z", &err), SLR_OK);
    ck_assert_uint_eq(ex.n_features, 3 + 3);
    /* criteo -q ab crosses C1 with C2 */
    slr_hashing_init(&h, 20);
    ck_assert_int_eq(slr_hashing_add_quadratic(&h, "ab", &err), SLR_OK);
    const char *cols[40] = {"1", "4"};
    cols[14] = "aaaa0001";
    cols[15] = "bbbb0002";
    cols[16] = "cccc0003";
    char line[256];
    criteo_line(line, sizeof line, cols, 40);
    ck_assert_int_eq(hash_text(&ex, SLR_FORMAT_CRITEO, line, &err), SLR_OK);
    ck_assert_uint_eq(ex.n_features, 4 + 1);
    ck_assert_uint_eq(ex.features[4].index,
                      ref_pair(ref_hash("a", "aaaa0001"), ref_hash("b", "bbbb0002")) & mask);
    slr_example_free(&ex);
}
END_TEST

/* ------------------------------------------------------------ round trips */

static void check_raw_equal(const slr_raw_example *a, const slr_raw_example *b, bool with_tag, const char *what)
{
    ck_assert_msg(a->has_label == b->has_label && (!a->has_label || a->label == b->label),
                  "%s: label %d/%g vs %d/%g", what, a->has_label, a->label, b->has_label, b->label);
    ck_assert_msg(a->has_weight == b->has_weight && (!a->has_weight || a->weight == b->weight),
                  "%s: weight %d/%g vs %d/%g", what, a->has_weight, a->weight, b->has_weight, b->weight);
    if (with_tag) {
        ck_assert_msg((a->tag == NULL) == (b->tag == NULL), "%s: tag presence", what);
        if (a->tag)
            ck_assert_msg(a->tag_len == b->tag_len && !memcmp(a->tag, b->tag, a->tag_len), "%s: tag", what);
    }
    ck_assert_msg(a->n_features == b->n_features, "%s: %u vs %u features", what, a->n_features, b->n_features);
    for (uint32_t i = 0; i < a->n_features; i++) {
        const slr_raw_feature *x = &a->features[i], *y = &b->features[i];
        ck_assert_msg((x->name == NULL) == (y->name == NULL), "%s: feature %u kind", what, i);
        if (x->name) {
            ck_assert_msg(x->ns_len == y->ns_len && (!x->ns_len || !memcmp(x->ns, y->ns, x->ns_len)) &&
                              x->name_len == y->name_len && !memcmp(x->name, y->name, x->name_len),
                          "%s: feature %u: \"%.*s\"^\"%.*s\" vs \"%.*s\"^\"%.*s\"", what, i, (int)x->ns_len,
                          x->ns ? x->ns : "", (int)x->name_len, x->name, (int)y->ns_len, y->ns ? y->ns : "",
                          (int)y->name_len, y->name);
        } else {
            ck_assert_msg(x->id == y->id, "%s: feature %u id %llu vs %llu", what, i, (unsigned long long)x->id,
                          (unsigned long long)y->id);
        }
        ck_assert_msg(x->value == y->value, "%s: feature %u value %.17g vs %.17g", what, i, x->value, y->value);
    }
}

/* Encode raw as `to`, decode it back into c (which must outlive the use). */
static void reencode(const slr_raw_example *raw, slr_format to, dc *c, slr_buf *out)
{
    slr_error err;
    slr_buf_reset(out);
    ck_assert_msg(slr_encode_raw(out, to, raw, &err) == SLR_OK, "encode: %s", err.msg);
    dc_open(c, to);
    dc_feed(c, out->data, out->len);
    slr_decode_result r = dc_next(c, false);
    ck_assert_msg(r == SLR_DECODE_EXAMPLE, "re-decoding %s \"%.*s\": %d (%s)", slr_format_name(to),
                  (int)(out->len > 200 ? 200 : out->len), out->data, r, c->err.msg);
    ck_assert_uint_eq(c->consumed, out->len); /* one record, complete, without at_end */
}

static void round_trip_text(slr_format from, const char *text, bool vw_exact)
{
    dc src, back;
    slr_buf out;
    slr_buf_init(&out);
    decode_ok(&src, from, text);
    reencode(&src.raw, SLR_FORMAT_MSGPACK, &back, &out);
    check_raw_equal(&src.raw, &back.raw, true, text);
    dc_close(&back);
    if (vw_exact) {
        reencode(&src.raw, SLR_FORMAT_VW, &back, &out);
        check_raw_equal(&src.raw, &back.raw, true, text);
        dc_close(&back);
    }
    dc_close(&src);
    slr_buf_free(&out);
}

START_TEST(round_trips)
{
    static const char *vw[] = {
        "1 |a x y:2.5 |b z:-0.125",
        "-1 0.5 'tag17|ns f:3 g:1e-7 | plain |ns2:2 h:0.1",
        "0 | x |a y | z |a w", /* a namespace in two places keeps its order */
        "|a x",                /* unlabelled */
        "'only-tag |a x",
        "1",                   /* no features */
        "1 2.5 |a x:123456789.123 y:6.02214076e23 z:4.9e-324",
    };
    for (size_t i = 0; i < sizeof vw / sizeof vw[0]; i++)
        round_trip_text(SLR_FORMAT_VW, vw[i], true);
    /* libsvm: pre-hashed; exact float32 values use the compact form, others the map */
    round_trip_text(SLR_FORMAT_LIBSVM, "1 3:1 11:0.5 99:2", false);
    round_trip_text(SLR_FORMAT_LIBSVM, "-1 3:0.1 11:1", false);
    round_trip_text(SLR_FORMAT_LIBSVM, "1 4294967296:1", false); /* id beyond uint32 */
    round_trip_text(SLR_FORMAT_LIBSVM, "1", false);
    const char *cols[40] = {"1", "5", "-3", NULL, "123456"};
    cols[14] = "68fd1e64";
    cols[39] = "9727dd16";
    char line[256];
    criteo_line(line, sizeof line, cols, 40);
    round_trip_text(SLR_FORMAT_CRITEO, line, true);

    /* the compact form is chosen when it is exact, and is small */
    dc src, back;
    slr_buf out;
    slr_buf_init(&out);
    decode_ok(&src, SLR_FORMAT_LIBSVM, "1 3:1 11:1 99:1");
    reencode(&src.raw, SLR_FORMAT_MSGPACK, &back, &out);
    static const unsigned char compact[] = {0x94, 0x01, 0xc0, 0xc4, 12, 3, 0, 0, 0, 11, 0, 0, 0, 99, 0, 0, 0, 0xc0};
    ck_assert_uint_eq(out.len, sizeof compact); /* [1, nil, bin(3 ids), nil: all values 1] */
    ck_assert_mem_eq(out.data, compact, sizeof compact);
    dc_close(&back);
    dc_close(&src);

    /* mixed named and pre-hashed features, with a tag: map form, integer keys */
    slr_raw_example raw;
    slr_raw_example_init(&raw);
    slr_error err;
    raw.has_label = true;
    raw.label = 0;
    raw.tag = "t";
    raw.tag_len = 1;
    slr_raw_feature fs[] = {
        {.ns = "a", .ns_len = 1, .name = "x", .name_len = 1, .value = 2},
        {.id = 77, .value = 0.5},
        {.ns = "a", .ns_len = 1, .name = "y", .name_len = 1, .value = 1},
        {.ns = "", .ns_len = 0, .name = "", .name_len = 0, .value = 1},
        {.id = UINT64_MAX, .value = 3},
    };
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        ck_assert_int_eq(slr_raw_example_push(&raw, &fs[i], &err), SLR_OK);
    reencode(&raw, SLR_FORMAT_MSGPACK, &back, &out);
    check_raw_equal(&raw, &back.raw, true, "mixed");
    dc_close(&back);
    /* vw: pre-hashed ids become names in the default namespace (documented loss) */
    reencode(&raw, SLR_FORMAT_VW, &back, &out);
    ck_assert_uint_eq(back.raw.n_features, 5);
    check_named(&back.raw, 1, "", "77", 0.5);
    check_named(&back.raw, 3, "", "", 1);
    check_named(&back.raw, 4, "", "18446744073709551615", 3);
    dc_close(&back);

    /* vw has no escaping: separators become '_' */
    slr_raw_example_reset(&raw);
    raw.tag = "a b|c";
    raw.tag_len = 5;
    slr_raw_feature odd = {.ns = "n s:1", .ns_len = 5, .name = "x|y:z\tw", .name_len = 7, .value = 1};
    ck_assert_int_eq(slr_raw_example_push(&raw, &odd, &err), SLR_OK);
    reencode(&raw, SLR_FORMAT_VW, &back, &out);
    ck_assert(view_eq(back.raw.tag, back.raw.tag_len, "a_b_c"));
    check_named(&back.raw, 0, "n_s_1", "x_y_z_w", 1);
    dc_close(&back);
    /* ...and NaN cannot be written as text */
    raw.features[0].value = NAN;
    ck_assert_int_eq(slr_encode_raw(&out, SLR_FORMAT_VW, &raw, &err), SLR_ERR_BAD_INPUT);
    check_reason(&err, "x|y:z");

    /* libsvm and criteo are not output formats */
    size_t before = out.len;
    ck_assert_int_eq(slr_encode_raw(&out, SLR_FORMAT_LIBSVM, &raw, &err), SLR_ERR_ARG);
    check_reason(&err, "cannot write libsvm");
    ck_assert_int_eq(slr_encode_raw(&out, SLR_FORMAT_CRITEO, &raw, &err), SLR_ERR_ARG);
    ck_assert_uint_eq(out.len, before);
    slr_raw_example_free(&raw);
    slr_buf_free(&out);
}
END_TEST

/* Random vw records: vw -> raw -> {msgpack, vw} -> raw must be identical. */
START_TEST(round_trips_random)
{
    test_rng r = {.s = 2024};
    static const char alphabet[] = "abcxyzABC019_-.,;!?~@#$%^&*()[]{}<>/\\\"";
    char line[4096];
    slr_buf out;
    slr_buf_init(&out);
    for (int it = 0; it < 3000; it++) {
        size_t n = 0;
        if (test_rng_below(&r, 4))
            n += (size_t)snprintf(line + n, sizeof line - n, "%s", test_rng_below(&r, 2) ? "1" : "-1");
        if (n && test_rng_below(&r, 3) == 0)
            n += (size_t)snprintf(line + n, sizeof line - n, " %.17g", 0.01 + 10 * test_rng_unif(&r));
        if (test_rng_below(&r, 4) == 0)
            n += (size_t)snprintf(line + n, sizeof line - n, " 'id%d", (int)test_rng_below(&r, 1000));
        else
            line[n++] = ' ';
        int nns = (int)test_rng_below(&r, 4);
        for (int s = 0; s < nns; s++) {
            line[n++] = '|';
            int nslen = (int)test_rng_below(&r, 4);
            for (int k = 0; k < nslen; k++)
                line[n++] = alphabet[test_rng_below(&r, sizeof alphabet - 1)];
            int nf = (int)test_rng_below(&r, 6);
            for (int f = 0; f < nf; f++) {
                line[n++] = ' ';
                int len = 1 + (int)test_rng_below(&r, 8);
                for (int k = 0; k < len; k++)
                    line[n++] = alphabet[test_rng_below(&r, sizeof alphabet - 1)];
                switch (test_rng_below(&r, 5)) {
                case 0: break;
                case 1: n += (size_t)snprintf(line + n, sizeof line - n, ":%d", (int)test_rng_below(&r, 2000) - 1000); break;
                case 2: n += (size_t)snprintf(line + n, sizeof line - n, ":%.17g", test_rng_normal(&r)); break;
                case 3: n += (size_t)snprintf(line + n, sizeof line - n, ":%g", test_rng_normal(&r) * 1e-5); break;
                default:
                    n += (size_t)snprintf(line + n, sizeof line - n, ":%.9ge%d", test_rng_unif(&r),
                                          (int)test_rng_below(&r, 40) - 20);
                }
            }
            line[n++] = ' ';
        }
        line[n] = '\0';
        if (strspn(line, " ") == n)
            continue; /* a blank line is not a record */
        dc src, back;
        decode_ok(&src, SLR_FORMAT_VW, line);
        reencode(&src.raw, SLR_FORMAT_MSGPACK, &back, &out);
        check_raw_equal(&src.raw, &back.raw, true, line);
        dc_close(&back);
        reencode(&src.raw, SLR_FORMAT_VW, &back, &out);
        check_raw_equal(&src.raw, &back.raw, true, line);
        dc_close(&back);
        dc_close(&src);
    }
    slr_buf_free(&out);
}
END_TEST

START_TEST(encode_hashed_round_trip)
{
    slr_hashing h;
    slr_hashing_init(&h, 22);
    slr_error err;
    ck_assert_int_eq(slr_hashing_add_quadratic(&h, "ab", &err), SLR_OK);
    slr_example ex, back;
    slr_example_init(&ex, &h);
    slr_hashing plain;
    slr_hashing_init(&plain, 22); /* re-reading needs no -q: pairs are already in */
    slr_example_init(&back, &plain);
    slr_buf out;
    slr_buf_init(&out);
    static const char *lines[] = {"1 0.5 |a x:2 y |b z:-3 |c k", "-1 |a x y", "|b q:0.1"};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(hash_text(&ex, SLR_FORMAT_VW, lines[i], &err), SLR_OK);
        slr_buf_reset(&out);
        ck_assert_int_eq(slr_encode_hashed(&out, &ex, &err), SLR_OK);
        dc c;
        dc_open(&c, SLR_FORMAT_MSGPACK);
        dc_feed(&c, out.data, out.len);
        ck_assert_int_eq(dc_next(&c, false), SLR_DECODE_EXAMPLE);
        ck_assert_uint_eq(c.consumed, out.len);
        ck_assert_int_eq(slr_example_from_raw(&back, &c.raw, &err), SLR_OK);
        ck_assert_uint_eq(back.n_features, ex.n_features);
        ck_assert(back.has_label == ex.has_label && back.label == ex.label && back.weight == ex.weight);
        for (uint32_t k = 0; k < ex.n_features; k++)
            ck_assert_msg(back.features[k].index == ex.features[k].index &&
                              back.features[k].value == ex.features[k].value,
                          "line %d feature %u", i, k);
        dc_close(&c);
    }
    ck_assert_uint_eq(ex.n_features, 1); /* the last line: sanity that -q had nothing to pair */
    slr_buf_free(&out);
    slr_example_free(&ex);
    slr_example_free(&back);
}
END_TEST

START_TEST(buf_basics)
{
    slr_buf b;
    slr_buf_init(&b);
    slr_error err;
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(slr_buf_append(&b, "0123456789", 10, &err), SLR_OK);
    ck_assert_uint_eq(b.len, 10000);
    ck_assert(b.cap >= b.len && !memcmp(b.data + 9990, "0123456789", 10));
    size_t cap = b.cap;
    slr_buf_reset(&b);
    ck_assert(b.len == 0 && b.cap == cap);
    ck_assert_int_eq(slr_buf_reserve(&b, SIZE_MAX - 4, &err), SLR_ERR_NOMEM);
    slr_buf_free(&b);
    ck_assert(b.data == NULL && b.len == 0);
}
END_TEST

/* ------------------------------------------------------------- robustness */

static const char *const seeds_vw[] = {"1 0.5 'tag|a x:2 y |b:3 z\n", "-1 | p q:1e-3\r\n", "|a x\n"};
static const char *const seeds_libsvm[] = {"+1 3:1 11:0.5 qid:2 # c\n", "-1 7:2\n", "# x\n"};

/* Decode a whole buffer at random split points; every call must make
 * progress, views must stay inside the buffer, and whatever decodes must
 * survive hashing and a msgpack round trip unchanged. */
static void drain(slr_format f, const char *data, size_t len, test_rng *r, slr_example *ex, slr_buf *out,
                  int *examples)
{
    dc c;
    dc_open(&c, f);
    if (test_rng_below(r, 4) == 0)
        slr_decoder_set_max_record(c.d, 1 + test_rng_below(r, 64));
    size_t pos = 0;
    int guard = 0;
    while (pos < len) {
        ck_assert_int_lt(guard++, 100000);
        /* a prefix of what is left, as a sliding buffer would show it */
        size_t avail = len - pos;
        size_t show = test_rng_below(r, 2) ? avail : 1 + test_rng_below(r, avail);
        bool at_end = show == avail;
        dc_feed(&c, data + pos, show);
        slr_decode_result res = dc_next(&c, at_end);
        if (res == SLR_DECODE_NEED_MORE) {
            ck_assert(!at_end);
            continue;
        }
        pos += c.consumed;
        if (res != SLR_DECODE_EXAMPLE)
            continue;
        (*examples)++;
        const slr_raw_example *raw = &c.raw;
        for (uint32_t i = 0; i < raw->n_features; i++) {
            const slr_raw_feature *x = &raw->features[i];
            if (x->name && x->name_len && f != SLR_FORMAT_CRITEO)
                ck_assert(x->name >= c.buf && x->name + x->name_len <= c.buf + c.len);
        }
        if (raw->tag && raw->tag_len)
            ck_assert(raw->tag >= c.buf && raw->tag + raw->tag_len <= c.buf + c.len);
        slr_error err;
        if (slr_example_from_raw(ex, raw, &err) != SLR_OK)
            continue;
        dc back;
        reencode(raw, SLR_FORMAT_MSGPACK, &back, out);
        check_raw_equal(raw, &back.raw, true, "fuzzed record");
        dc_close(&back);
        slr_buf_reset(out);
        slr_encode_raw(out, SLR_FORMAT_VW, raw, &err);
    }
    dc_close(&c);
}

START_TEST(random_input_never_stalls)
{
    const slr_format f = (slr_format)_i;
    test_rng r = {.s = 777 + (uint64_t)_i};
    slr_hashing h;
    slr_hashing_init(&h, 18);
    slr_example ex;
    slr_example_init(&ex, &h);
    slr_buf out;
    slr_buf_init(&out);
    int examples = 0;

    /* valid seed records for this format */
    mpb seeds;
    mpb_init(&seeds);
    if (f == SLR_FORMAT_VW || f == SLR_FORMAT_LIBSVM) {
        const char *const *s = f == SLR_FORMAT_VW ? seeds_vw : seeds_libsvm;
        for (int i = 0; i < 3; i++)
            msgpack_sbuffer_write(&seeds.sb, s[i], strlen(s[i]));
    } else if (f == SLR_FORMAT_CRITEO) {
        const char *cols[40] = {"1", "5", "-3", NULL, "0"};
        cols[14] = "68fd1e64";
        cols[20] = "7e0ccccf";
        char line[256];
        criteo_line(line, sizeof line, cols, 40);
        strcat(line, "\n");
        msgpack_sbuffer_write(&seeds.sb, line, strlen(line));
        criteo_line(line, sizeof line, cols + 1, 39);
        strcat(line, "\n");
        msgpack_sbuffer_write(&seeds.sb, line, strlen(line));
    } else {
        mpb_add(&seeds, "[1, w, {}] [1, nil, u32(1, 9), f32(0.5, 2)]"
                        " {y: true, tag: t, f: {a: {x: 0.25}, b: [u], 7: 3.0f}}");
    }
    ck_assert_uint_gt(seeds.sb.size, 0);

    static const char text_bytes[] = " \t\n\r|:'#.-+e0123456789abcxyz";
    static const unsigned char mp_bytes[] = {0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0x90, 0x91, 0x92, 0x93, 0x94,
                                             0xa1, 0xa3, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xca, 0xcb, 0xcc, 0xcf,
                                             0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0xff, 'a', 'x', 'y', 'f'};
    char buf[1024];
    for (int it = 0; it < 4000; it++) {
        size_t n;
        if (it % 2 == 0) { /* random bytes, from a format-flavoured alphabet or anything */
            n = 1 + test_rng_below(&r, 200);
            bool any = test_rng_below(&r, 4) == 0;
            for (size_t k = 0; k < n; k++)
                buf[k] = any ? (char)test_rng_below(&r, 256)
                             : f == SLR_FORMAT_MSGPACK
                                   ? (char)mp_bytes[test_rng_below(&r, sizeof mp_bytes)]
                                   : text_bytes[test_rng_below(&r, sizeof text_bytes - 1)];
        } else { /* mutations of valid records */
            n = seeds.sb.size;
            ck_assert_uint_le(n, sizeof buf - 16);
            memcpy(buf, seeds.sb.data, n);
            int muts = 1 + (int)test_rng_below(&r, 4);
            for (int m = 0; m < muts && n > 1; m++) {
                size_t at = test_rng_below(&r, n);
                switch (test_rng_below(&r, 4)) {
                case 0: buf[at] = (char)test_rng_below(&r, 256); break;
                case 1: buf[at] ^= (char)(1 << test_rng_below(&r, 8)); break;
                case 2: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;
                default:
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = f == SLR_FORMAT_MSGPACK ? (char)mp_bytes[test_rng_below(&r, sizeof mp_bytes)]
                                                      : text_bytes[test_rng_below(&r, sizeof text_bytes - 1)];
                    n++;
                }
            }
        }
        drain(f, buf, n, &r, &ex, &out, &examples);
    }
    /* the mutations must leave many records decodable, or this tests little */
    ck_assert_int_gt(examples, 500);
    mpb_free(&seeds);
    slr_buf_free(&out);
    slr_example_free(&ex);
}
END_TEST

/* ------------------------------------------------- msgpack fast paths */

/* Random msgpack records of every shape the decoder might meet -- mostly the
 * shapes the fast paths take, with every width of integer, float32/64, odd
 * values (0, NaN, Inf, huge), wrong types in every position, and cut-off
 * bytes -- to check that the fast paths give exactly what the general path
 * gives: the same result, bytes consumed, raw example or hashed example,
 * and error message. */
static void rnd_number(test_rng *r, msgpack_packer *pk)
{
    static const double odd[] = {0.0, -0.0, 1e12, 1.5e12, -2e12, 0.1, 3.0, -7.25, 1e-300};
    switch (test_rng_below(r, 12)) {
    case 0: msgpack_pack_fix_uint8(pk, (uint8_t)test_rng_below(r, 256)); break;
    case 1: msgpack_pack_fix_uint16(pk, (uint16_t)test_rng_below(r, 65536)); break;
    case 2: msgpack_pack_fix_uint32(pk, (uint32_t)test_rng_next(r)); break;
    case 3: msgpack_pack_fix_uint64(pk, test_rng_next(r) >> test_rng_below(r, 64)); break;
    case 4: msgpack_pack_fix_int8(pk, (int8_t)test_rng_below(r, 256)); break;
    case 5: msgpack_pack_fix_int16(pk, (int16_t)test_rng_below(r, 65536)); break;
    case 6: msgpack_pack_fix_int64(pk, (int64_t)test_rng_next(r) >> test_rng_below(r, 64)); break;
    case 7: msgpack_pack_float(pk, (float)(test_rng_normal(r) * 10)); break;
    case 8: msgpack_pack_double(pk, odd[test_rng_below(r, sizeof odd / sizeof odd[0])]); break;
    case 9: msgpack_pack_double(pk, test_rng_below(r, 2) ? NAN : -INFINITY); break;
    default: msgpack_pack_int64(pk, (int64_t)test_rng_below(r, 200) - 100); break; /* fixints */
    }
}

static void rnd_str(test_rng *r, msgpack_packer *pk)
{
    static const char *const names[] = {"a", "b", "I", "user", "", "x1", "id_42", "68fd1e64"};
    if (test_rng_below(r, 10) == 0) { /* a long one: str8 */
        char long_name[40];
        memset(long_name, 'n', sizeof long_name);
        msgpack_pack_str_with_body(pk, long_name, 32 + test_rng_below(r, 8));
        return;
    }
    const char *s = names[test_rng_below(r, sizeof names / sizeof names[0])];
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Mostly what its position expects, sometimes anything. */
static void rnd_odd(test_rng *r, msgpack_packer *pk)
{
    switch (test_rng_below(r, 7)) {
    case 0: msgpack_pack_nil(pk); break;
    case 1: msgpack_pack_true(pk); break;
    case 2: msgpack_pack_false(pk); break;
    case 3: msgpack_pack_bin_with_body(pk, "abcd", 4); break;
    case 4: msgpack_pack_array(pk, 0); break;
    case 5: msgpack_pack_map(pk, 0); break;
    default: msgpack_pack_ext_with_body(pk, "z", 1, 5); break;
    }
}

static void rnd_features(test_rng *r, msgpack_packer *pk)
{
    uint32_t n = (uint32_t)test_rng_below(r, 20);
    msgpack_pack_map(pk, n);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t k = test_rng_below(r, 40);
        if (k < 34)
            rnd_str(r, pk);
        else if (k < 37)
            msgpack_pack_int64(pk, (int64_t)test_rng_below(r, 300)); /* pre-hashed id */
        else if (k < 38)
            msgpack_pack_fix_uint16(pk, 7);
        else
            rnd_odd(r, pk);
        uint64_t v = test_rng_below(r, 40);
        if (v < 14) { /* a namespace map */
            uint32_t m = (uint32_t)test_rng_below(r, 6);
            msgpack_pack_map(pk, m);
            for (uint32_t j = 0; j < m; j++) {
                if (test_rng_below(r, 30))
                    rnd_str(r, pk);
                else
                    rnd_number(r, pk);
                if (test_rng_below(r, 30))
                    rnd_number(r, pk);
                else
                    rnd_odd(r, pk);
            }
        } else if (v < 20) { /* an array of names */
            uint32_t m = (uint32_t)test_rng_below(r, 5);
            msgpack_pack_array(pk, m);
            for (uint32_t j = 0; j < m; j++) {
                if (test_rng_below(r, 25))
                    rnd_str(r, pk);
                else
                    rnd_number(r, pk);
            }
        } else if (v < 28) {
            rnd_str(r, pk);
        } else if (v < 35) {
            rnd_number(r, pk);
        } else {
            rnd_odd(r, pk);
        }
    }
}

static void rnd_bin_words(test_rng *r, msgpack_packer *pk, uint32_t n, bool floats)
{
    unsigned char b[4 * 64];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)test_rng_next(r);
        if (floats) {
            static const float odd[] = {0.0f, 1.0f, -0.5f, 1e13f, INFINITY, NAN, 3.25f, 2e-40f};
            float f = test_rng_below(r, 3) ? (float)test_rng_normal(r)
                                           : odd[test_rng_below(r, sizeof odd / sizeof odd[0])];
            memcpy(&u, &f, 4);
        }
        for (int k = 0; k < 4; k++)
            b[4 * i + (uint32_t)k] = (unsigned char)(u >> (8 * k));
    }
    size_t size = 4 * (size_t)n;
    if (n && test_rng_below(r, 20) == 0)
        size--; /* not whole words */
    msgpack_pack_bin_with_body(pk, b, size);
}

static void rnd_record(test_rng *r, msgpack_packer *pk)
{
    uint64_t shape = test_rng_below(r, 20);
    uint32_t n = shape < 8 ? 4 : shape < 13 ? 2 : shape < 18 ? 3 : (uint32_t)test_rng_below(r, 6);
    if (shape == 19) { /* the map form: only the general path */
        msgpack_pack_map(pk, 2);
        msgpack_pack_str_with_body(pk, "y", 1);
        msgpack_pack_int64(pk, 1);
        msgpack_pack_str_with_body(pk, "f", 1);
        rnd_features(r, pk);
        return;
    }
    msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t k = test_rng_below(r, 30);
        if (i == 0) { /* label */
            static const int labels[] = {0, 1, -1, 2};
            if (k < 20)
                msgpack_pack_int64(pk, labels[test_rng_below(r, k < 18 ? 3 : 4)]);
            else if (k < 26)
                rnd_odd(r, pk);
            else
                rnd_number(r, pk);
        } else if (i == 1 && n >= 3) { /* weight */
            if (k < 12)
                msgpack_pack_nil(pk);
            else if (k < 27)
                rnd_number(r, pk);
            else
                rnd_odd(r, pk);
        } else if (n == 4) { /* ids, values */
            uint32_t words = (uint32_t)test_rng_below(r, 12);
            if (k < 27)
                rnd_bin_words(r, pk, words, i == 3);
            else if (i == 3 && k < 29)
                msgpack_pack_nil(pk);
            else
                rnd_odd(r, pk);
        } else if (k < 28) {
            rnd_features(r, pk);
        } else {
            rnd_odd(r, pk);
        }
    }
}

static void assert_same_raw(const slr_raw_example *a, const slr_raw_example *b, int it)
{
    ck_assert_msg(a->has_label == b->has_label && (!a->has_label || !memcmp(&a->label, &b->label, 8)),
                  "record %d: labels differ", it);
    ck_assert_msg(a->has_weight == b->has_weight && !memcmp(&a->weight, &b->weight, 8),
                  "record %d: weights differ", it);
    ck_assert_msg(a->tag == b->tag && a->tag_len == b->tag_len, "record %d: tags differ", it);
    ck_assert_msg(a->n_features == b->n_features, "record %d: %u vs %u features", it, a->n_features,
                  b->n_features);
    for (uint32_t i = 0; i < a->n_features; i++) {
        const slr_raw_feature *x = &a->features[i], *y = &b->features[i];
        /* the same views into the input (a zero-length view may point anywhere) */
        bool same_ns = x->ns_len == y->ns_len && (x->ns_len == 0 || x->ns == y->ns) &&
                       (x->ns == NULL) == (y->ns == NULL);
        bool same_name = x->name_len == y->name_len && (x->name_len == 0 || x->name == y->name) &&
                         (x->name == NULL) == (y->name == NULL);
        ck_assert_msg(same_ns && same_name && x->id == y->id && !memcmp(&x->value, &y->value, 8),
                      "record %d: feature %u differs: ns %p/%u name %p/%u id %llu v %.17g vs "
                      "ns %p/%u name %p/%u id %llu v %.17g",
                      it, i, (const void *)x->ns, x->ns_len, (const void *)x->name, x->name_len,
                      (unsigned long long)x->id, x->value, (const void *)y->ns, y->ns_len,
                      (const void *)y->name, y->name_len, (unsigned long long)y->id, y->value);
    }
}

static void assert_same_example(const slr_example *a, const slr_example *b, int it)
{
    ck_assert_msg(a->has_label == b->has_label && a->label == b->label && a->weight == b->weight,
                  "record %d: example labels or weights differ", it);
    ck_assert_msg(a->n_features == b->n_features, "record %d: %u vs %u hashed features", it,
                  a->n_features, b->n_features);
    for (uint32_t i = 0; i < a->n_features; i++)
        ck_assert_msg(a->features[i].index == b->features[i].index &&
                          !memcmp(&a->features[i].value, &b->features[i].value, 4),
                      "record %d: hashed feature %u differs", it, i);
}

START_TEST(msgpack_fast_paths_match_general)
{
    test_rng r = {.s = 4242};
    slr_decoder *fast, *slow;
    slr_hashing h;
    slr_hashing_init(&h, 20);
    ck_assert_int_eq(slr_decoder_create(&fast, SLR_FORMAT_MSGPACK, NULL), SLR_OK);
    ck_assert_int_eq(slr_decoder_create(&slow, SLR_FORMAT_MSGPACK, NULL), SLR_OK);
    slr_decoder_set_fast_paths(slow, false);
    slr_raw_example raw_f, raw_s;
    slr_raw_example_init(&raw_f);
    slr_raw_example_init(&raw_s);
    slr_example ex_f, ex_s;
    slr_example_init(&ex_f, &h);
    slr_example_init(&ex_s, &h);
    int examples = 0, bad = 0, compact = 0, named = 0;
    for (int it = 0; it < 30000; it++) {
        mpb b;
        mpb_init(&b);
        rnd_record(&r, &b.pk);
        size_t len = b.sb.size;
        bool at_end = true;
        if (test_rng_below(&r, 8) == 0) { /* cut off */
            len = test_rng_below(&r, len + 1);
            at_end = test_rng_below(&r, 2);
        }
        char *buf = malloc(len ? len : 1); /* exact size: the sanitizer build sees overreads */
        memcpy(buf, b.sb.data, len);
        size_t max_record = test_rng_below(&r, 10) ? SLR_DEFAULT_MAX_RECORD : 1 + test_rng_below(&r, 64);
        slr_decoder_set_max_record(fast, max_record);
        slr_decoder_set_max_record(slow, max_record);
        ex_f.max_features = ex_s.max_features = test_rng_below(&r, 6) ? 65536 : (uint32_t)test_rng_below(&r, 6);

        slr_error ef = {0}, es = {0};
        size_t cf = 0, cs = 0;
        slr_decode_result rf = slr_decoder_next(fast, buf, len, at_end, &cf, &raw_f, &ef);
        slr_decode_result rs = slr_decoder_next(slow, buf, len, at_end, &cs, &raw_s, &es);
        ck_assert_msg(rf == rs && cf == cs, "record %d: next %d/%zu vs %d/%zu", it, rf, cf, rs, cs);
        if (rf == SLR_DECODE_EXAMPLE)
            assert_same_raw(&raw_f, &raw_s, it);
        else if (rf == SLR_DECODE_BAD)
            ck_assert_str_eq(ef.msg, es.msg);

        memset(&ef, 0, sizeof ef);
        memset(&es, 0, sizeof es);
        rf = slr_decoder_next_example(fast, buf, len, at_end, &cf, &raw_f, &ex_f, &ef);
        rs = slr_decoder_next_example(slow, buf, len, at_end, &cs, &raw_s, &ex_s, &es);
        ck_assert_msg(rf == rs && cf == cs, "record %d: next_example %d/%zu vs %d/%zu", it, rf, cf,
                      rs, cs);
        if (rf == SLR_DECODE_EXAMPLE) {
            assert_same_example(&ex_f, &ex_s, it);
            examples++;
            compact += len > 0 && (unsigned char)buf[0] == 0x94;
            named += len > 0 && ((unsigned char)buf[0] == 0x92 || (unsigned char)buf[0] == 0x93);
        } else if (rf == SLR_DECODE_BAD) {
            ck_assert_str_eq(ef.msg, es.msg);
            bad++;
        }
        free(buf);
        mpb_free(&b);
    }
    /* both paths saw plenty of good and bad records of the fast shapes */
    ck_assert_int_gt(compact, 300);
    ck_assert_int_gt(named, 1000);
    ck_assert_int_gt(bad, 3000);
    slr_example_free(&ex_f);
    slr_example_free(&ex_s);
    slr_raw_example_free(&raw_f);
    slr_raw_example_free(&raw_s);
    slr_decoder_destroy(fast);
    slr_decoder_destroy(slow);
}
END_TEST

/* ------------------------------------------------------------------ suite */

static Suite *decode_suite(void)
{
    Suite *s = suite_create("decode");
    TCase *tc = tcase_create("formats");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, format_names_and_guess);
    tcase_add_test(tc, format_detected_from_content);
    tcase_add_test(tc, numbers_match_strtod);
    tcase_add_test(tc, vw_good);
    tcase_add_test(tc, text_framing);
    tcase_add_test(tc, vw_bad);
    tcase_add_test(tc, libsvm_good);
    tcase_add_test(tc, libsvm_bad);
    tcase_add_test(tc, criteo_good);
    tcase_add_test(tc, criteo_bad);
    tcase_add_test(tc, msgpack_array_forms);
    tcase_add_test(tc, msgpack_compact_and_map_forms);
    tcase_add_test(tc, msgpack_framing);
    tcase_add_test(tc, msgpack_bad);
    suite_add_tcase(s, tc);

    tc = tcase_create("hashing");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, from_raw_rejects);
    tcase_add_test(tc, hashing_is_xxh3);
    tcase_add_test(tc, quadratic_expansion);
    suite_add_tcase(s, tc);

    tc = tcase_create("encode");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, buf_basics);
    tcase_add_test(tc, round_trips);
    tcase_add_test(tc, round_trips_random);
    tcase_add_test(tc, encode_hashed_round_trip);
    suite_add_tcase(s, tc);

    tc = tcase_create("robustness");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, random_input_never_stalls, 0, 4);
    tcase_add_test(tc, msgpack_fast_paths_match_general);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(decode_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
