/* check_sync.c - the engine core of a group's shared model (sync.h): the
 * delta record's codec, the applied-range ledger, the merge, and members
 * learning in bulk-synchronous rounds in one process. */
#include <check.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "learner/learner_io.h"
#include "streamlr/learner.h"
#include "streamlr/sync.h"
#include "sync/sync_impl.h" /* the entries' bfloat16 */
#define BITS 12
#include "sync_testutil.h"
#include "testutil.h"
#include "util/le.h"

static slr_learner_config test_config(double l1, double l2)
{
    slr_learner_config c;
    slr_learner_config_defaults(&c);
    slr_hashing_init(&c.hashing, BITS);
    c.eta = 0.5;
    c.l1 = l1;
    c.l2 = l2;
    return c;
}

/* ----------------------------------------------------------- the stream */


/* The example at (partition, offset) of a synthetic topic: the same bytes
 * whoever generates it, so a member can re-learn a range.  Features are
 * log-uniform over the table: a few frequent (dense), a long tail. */
static void stream_example(slr_example *ex, int partition, int64_t offset)
{
    test_rng r = {.s = (uint64_t)partition * 1000003u + (uint64_t)offset * 7919u + 1};
    sync_test_example(ex, &r);
}

static void assert_same_model(slr_learner *a, slr_learner *b, const char *what)
{
    size_t la, lb;
    unsigned char *x = model_bytes(a, &la), *y = model_bytes(b, &lb);
    ck_assert_uint_eq(la, lb);
    size_t at = 0;
    while (at < la && x[at] == y[at])
        at++;
    ck_assert_msg(at == la, "%s: models differ at coordinate %zu", what, at / 12);
    free(x);
    free(y);
}

/* ------------------------------------------------------------ the codec */

static void fill_delta(slr_sync_delta *d, size_t n_entries)
{
    memset(d, 0, sizeof *d);
    strcpy(d->member, "member-a");
    d->generation = 7;
    d->round = 3;
    d->examples = 1000;
    d->fingerprint = 0x0123456789abcdefull;
    d->n_ranges = 2;
    d->ranges = calloc(2, sizeof *d->ranges);
    d->ranges[0] = (slr_sync_range){strdup("clicks"), 0, 100, 600};
    d->ranges[1] = (slr_sync_range){strdup("clicks"), 5, 0, 500};
    d->bias_w = -0.25;
    d->bias_g2 = 12.5;
    d->n_entries = n_entries;
    d->entries = malloc(n_entries * SLR_SYNC_ENTRY + 1);
    for (size_t i = 0; i < n_entries; i++) {
        unsigned char *e = d->entries + i * SLR_SYNC_ENTRY;
        slr_le_put_u32(e, (uint32_t)(3 * i + 1));
        slr_le_put_u16(e + 4, slr_sync_bf16(0.001 * (double)i - 0.1));
        /* dense every third; i = 0: dense with no evidence */
        slr_le_put_u16(e + 6, (uint16_t)(slr_sync_bf16((double)i) | (i % 3 == 0 ? 0x8000u : 0)));
    }
}

START_TEST(codec_round_trip)
{
    slr_sync_delta d, back;
    fill_delta(&d, 50);
    unsigned char *buf;
    size_t len;
    slr_error err = {0};
    ck_assert_int_eq(slr_sync_delta_encode(&d, &buf, &len, &err), SLR_OK);
    /* header ~ 80 bytes, five planes' framing, at most 6 bytes an entry */
    ck_assert_uint_le(len, 50 * 6 + 140);
    ck_assert_int_eq(slr_sync_delta_decode(buf, len, &back, &err), SLR_OK);
    ck_assert_str_eq(back.member, "member-a");
    ck_assert_uint_eq(back.generation, 7);
    ck_assert_uint_eq(back.round, 3);
    ck_assert_uint_eq(back.examples, 1000);
    ck_assert_uint_eq(back.fingerprint, 0x0123456789abcdefull);
    ck_assert_uint_eq(back.n_ranges, 2);
    ck_assert_str_eq(back.ranges[1].topic, "clicks");
    ck_assert_int_eq(back.ranges[1].partition, 5);
    ck_assert_int_eq(back.ranges[0].from, 100);
    ck_assert_int_eq(back.ranges[0].to, 600);
    ck_assert(back.bias_w == -0.25 && back.bias_g2 == 12.5);
    ck_assert_uint_eq(back.n_entries, 50);
    /* what every reader merges is what the member holds, bit for bit */
    ck_assert(memcmp(back.entries, d.entries, 50 * SLR_SYNC_ENTRY) == 0);
    ck_assert_uint_eq(slr_le_get_u16(back.entries + 6), 0x8000); /* dense with a zero gain survives */

    /* every strict prefix is refused, with a message, never a crash */
    for (size_t cut = 0; cut < len; cut++) {
        slr_sync_delta t;
        err.msg[0] = '\0';
        ck_assert_int_eq(slr_sync_delta_decode(buf, cut, &t, &err), SLR_ERR_CORRUPT);
        ck_assert_msg(strstr(err.msg, "sync delta"), "cut %zu: %s", cut, err.msg);
    }
    /* and a flipped byte anywhere decodes or is refused, never crashes (ASan/valgrind) */
    for (size_t at = 0; at < len; at++) {
        slr_sync_delta t;
        buf[at] ^= 0x5a;
        if (slr_sync_delta_decode(buf, len, &t, &err) == SLR_OK)
            slr_sync_delta_clear(&t);
        buf[at] ^= 0x5a;
    }
    free(buf);
    slr_sync_delta_clear(&back);
    slr_sync_delta_clear(&d);
}
END_TEST

static slr_status encode_then_decode(slr_sync_delta *d, slr_error *err)
{
    unsigned char *buf;
    size_t len;
    ck_assert_int_eq(slr_sync_delta_encode(d, &buf, &len, err), SLR_OK);
    slr_sync_delta back;
    slr_status st = slr_sync_delta_decode(buf, len, &back, err);
    if (st == SLR_OK)
        slr_sync_delta_clear(&back);
    free(buf);
    return st;
}

START_TEST(codec_rejects)
{
    slr_error err = {0};
    slr_sync_delta d;

    /* entries a reader would refuse are never written: gaps cannot say them */
    unsigned char *nothing;
    size_t none;
    fill_delta(&d, 4); /* entries out of order */
    slr_le_put_u32(d.entries + 2 * SLR_SYNC_ENTRY, 1);
    ck_assert_int_eq(slr_sync_delta_encode(&d, &nothing, &none, &err), SLR_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "not after"), "%s", err.msg);
    slr_sync_delta_clear(&d);

    fill_delta(&d, 4); /* a repeated index */
    slr_le_put_u32(d.entries + SLR_SYNC_ENTRY, 1);
    ck_assert_int_eq(slr_sync_delta_encode(&d, &nothing, &none, &err), SLR_ERR_ARG);
    slr_sync_delta_clear(&d);

    fill_delta(&d, 4); /* NaN weight */
    slr_le_put_u16(d.entries + 4, 0x7fc0);
    ck_assert_int_eq(slr_sync_delta_encode(&d, &nothing, &none, &err), SLR_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "non-finite"), "%s", err.msg);
    slr_sync_delta_clear(&d);

    fill_delta(&d, 4); /* infinite g2 */
    slr_le_put_u16(d.entries + 6, 0x7f80);
    ck_assert_int_eq(slr_sync_delta_encode(&d, &nothing, &none, &err), SLR_ERR_ARG);
    slr_sync_delta_clear(&d);

    fill_delta(&d, 4); /* a range that ends before it starts */
    d.ranges[1].to = -1;
    ck_assert_int_eq(encode_then_decode(&d, &err), SLR_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "range"), "%s", err.msg);
    slr_sync_delta_clear(&d);

    fill_delta(&d, 4); /* a negative bias Sum g^2 */
    d.bias_g2 = -1.0;
    ck_assert_int_eq(encode_then_decode(&d, &err), SLR_ERR_CORRUPT);
    slr_sync_delta_clear(&d);

    fill_delta(&d, 4); /* entries from no examples */
    d.examples = 0;
    ck_assert_int_eq(encode_then_decode(&d, &err), SLR_ERR_CORRUPT);
    slr_sync_delta_clear(&d);

    fill_delta(&d, 4); /* an empty member id */
    d.member[0] = '\0';
    ck_assert_int_eq(encode_then_decode(&d, &err), SLR_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "member id"), "%s", err.msg);
    slr_sync_delta_clear(&d);

    /* a half entry, trailing bytes, another version, another record */
    fill_delta(&d, 4);
    unsigned char *buf;
    size_t len;
    ck_assert_int_eq(slr_sync_delta_encode(&d, &buf, &len, &err), SLR_OK);
    slr_sync_delta back;
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0xc0;
    ck_assert_int_eq(slr_sync_delta_decode(longer, len + 1, &back, &err), SLR_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "after the record"), "%s", err.msg);
    free(longer);
    /* the version is the byte after the 15-byte tag and the array header */
    ck_assert_uint_eq(buf[16], SLR_SYNC_FORMAT_VERSION);
    buf[16] = 2; /* version 2's entries were 20-byte end states */
    ck_assert_int_eq(slr_sync_delta_decode(buf, len, &back, &err), SLR_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "version 2"), "%s", err.msg);
    buf[16] = 4;
    ck_assert_int_eq(slr_sync_delta_decode(buf, len, &back, &err), SLR_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "version 4"), "%s", err.msg);
    free(buf);
    slr_sync_delta_clear(&d);

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 0);
    ck_assert_int_eq(slr_sync_delta_decode(sb.data, sb.size, &back, &err), SLR_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "not a streamlr delta"), "%s", err.msg);
    msgpack_sbuffer_destroy(&sb);
}
END_TEST

/* fill_delta(n) encoded, with the entry count set to `count` (if >= 0) and
 * plane `plane` (if >= 0) given raw length `raw` (if >= 0) and the bytes
 * bin[0..blen) (if bin), then decoded: the wire's own mistakes, which no
 * writer makes. */
static slr_status decode_mangled(size_t n, int64_t count, int plane, int64_t raw, const void *bin,
                                 size_t blen, slr_error *err)
{
    slr_sync_delta d, back;
    fill_delta(&d, n);
    unsigned char *buf;
    size_t len;
    ck_assert_int_eq(slr_sync_delta_encode(&d, &buf, &len, err), SLR_OK);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    msgpack_object obj;
    size_t off = 0;
    ck_assert_int_eq(msgpack_unpack((const char *)buf, len, &off, &zone, &obj), MSGPACK_UNPACK_SUCCESS);
    msgpack_object *f = obj.via.array.ptr;
    ck_assert_uint_eq(obj.via.array.size, 11);
    if (count >= 0)
        f[9].via.u64 = (uint64_t)count;
    if (plane >= 0) {
        msgpack_object *pl = f[10].via.array.ptr[plane].via.array.ptr;
        if (raw >= 0)
            pl[0].via.u64 = (uint64_t)raw;
        if (bin) {
            pl[1].via.bin.ptr = bin;
            pl[1].via.bin.size = (uint32_t)blen;
        }
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, obj);
    err->msg[0] = '\0';
    slr_status st = slr_sync_delta_decode(sb.data, sb.size, &back, err);
    if (st == SLR_OK)
        slr_sync_delta_clear(&back);
    msgpack_sbuffer_destroy(&sb);
    msgpack_zone_destroy(&zone);
    free(buf);
    slr_sync_delta_clear(&d);
    return st;
}

#define REFUSED(call, what)                                                                        \
    do {                                                                                           \
        ck_assert_int_eq((call), SLR_ERR_CORRUPT);                                                 \
        ck_assert_msg(strstr(err.msg, what), "%s: %s", #call, err.msg);                            \
    } while (0)

/* Format 3's planes (sync_delta.c): varint gaps, byte planes, zstd frames
 * that must say what they hold; counts that lie are refused, never
 * believed (no allocation beyond what the record's size allows). */
START_TEST(codec_planes_refused)
{
    slr_error err = {0};
    /* fill_delta(4): indices 1, 4, 7, 10: gaps 1, 2, 2, 2 */
    ck_assert_int_eq(decode_mangled(4, -1, -1, -1, NULL, 0, &err), SLR_OK);
    const unsigned char same[] = {1, 2, 2, 2}, longer[] = {0x81, 0x00, 2, 2, 2};
    ck_assert_msg(decode_mangled(4, -1, 0, 4, same, 4, &err) == SLR_OK, "%s", err.msg);
    REFUSED(decode_mangled(4, -1, 0, 5, longer, 5, &err), "not minimal");
    const unsigned char six[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 2, 2};
    REFUSED(decode_mangled(4, -1, 0, 8, six, 8, &err), "too long");
    const unsigned char cut[] = {1, 2, 2, 0x82};
    REFUSED(decode_mangled(4, -1, 0, 4, cut, 4, &err), "cut short");
    const unsigned char more[] = {1, 2, 2, 2, 2};
    REFUSED(decode_mangled(4, -1, 0, 5, more, 5, &err), "go on past");
    const unsigned char wide[] = {0xfe, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0};
    REFUSED(decode_mangled(4, -1, 0, 8, wide, 8, &err), "beyond 2^32");
    /* counts that lie: the planes hold 4 entries */
    REFUSED(decode_mangled(4, 5, -1, -1, NULL, 0, &err), "holds");
    REFUSED(decode_mangled(4, 3, -1, -1, NULL, 0, &err), "holds");
    REFUSED(decode_mangled(4, INT64_C(1) << 40, -1, -1, NULL, 0, &err), "count and five planes");
    REFUSED(decode_mangled(4, -1, 2, 5, NULL, 0, &err), "holds"); /* a plane's length */
    /* a truncated plane (raw, so it would have to be a zstd frame) */
    REFUSED(decode_mangled(4, -1, 3, -1, same, 3, &err), "zstd frame");
    /* a NaN weight increment (high byte 0xff with the low bytes of -0.1) */
    const unsigned char nan_hi[] = {0xff, 0xff, 0xff, 0xff};
    REFUSED(decode_mangled(4, -1, 2, -1, nan_hi, 4, &err), "non-finite");

    /* zstd planes: a frame of the plane decodes, whoever wrote it ... */
    enum { N = 2000 };
    unsigned char raw[N], z[N + 600];
    test_rng r = {.s = 5};
    for (int i = 0; i < N; i++)
        raw[i] = (unsigned char)(test_rng_next(&r) % 4);
    size_t zl = ZSTD_compress(z, sizeof z, raw, N, 3);
    ck_assert(!ZSTD_isError(zl) && zl < N / 2 && zl * 64 > N);
    ck_assert_msg(decode_mangled(N, -1, 1, N, z, zl, &err) == SLR_OK, "%s", err.msg);
    /* ... but not one cut short, nor one that holds other than its length */
    REFUSED(decode_mangled(N, -1, 1, N, z, zl - 1, &err), "zstd frame");
    size_t zs = ZSTD_compress(z, sizeof z, raw, N - 1, 3);
    REFUSED(decode_mangled(N, -1, 1, N, z, zs, &err), "zstd frame");
    /* nor one that would make a reader allocate over 64 times its size */
    memset(raw, 7, N);
    size_t zz = ZSTD_compress(z, sizeof z, raw, N, 3);
    ck_assert(!ZSTD_isError(zz) && zz * 64 < N);
    REFUSED(decode_mangled(N, -1, 1, N, z, zz, &err), "zstd frame");
}
END_TEST

/* A member's real round: format 3 takes a few bytes an entry, where
 * format 2 took 20, and the entries every reader decodes are the member's
 * own, bit for bit. */
/* A new member `id` that learned offsets [0, n) of partition 0 of `topic`
 * and ended its round with delta *d. */
static slr_sync_member *member_after(slr_learner_config cfg, const char *id, const char *topic,
                                     int64_t n, slr_sync_delta *d)
{
    slr_error err = {0};
    slr_sync_member *m;
    ck_assert_int_eq(slr_sync_member_create(&m, &cfg, id, 1, &err), SLR_OK);
    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    for (int64_t o = 0; o < n; o++) {
        stream_example(&ex, 0, o);
        slr_sync_member_learn(m, &ex, NULL);
    }
    slr_example_free(&ex);
    slr_sync_range rg = {(char *)topic, 0, 0, n};
    ck_assert_int_eq(slr_sync_member_end_round(m, &rg, 1, d, &err), SLR_OK);
    return m;
}

START_TEST(codec_is_compact)
{
    slr_error err = {0};
    slr_sync_delta d, back;
    slr_sync_member *m = member_after(test_config(1e-5, 1e-4), "solo", "clicks", 400, &d);
    unsigned char *buf;
    size_t len;
    ck_assert_int_eq(slr_sync_delta_encode(&d, &buf, &len, &err), SLR_OK);
    fprintf(stderr, "a round of 400 examples: %zu entries in %zu bytes\n", d.n_entries, len);
    ck_assert_uint_gt(d.n_entries, 500);
    ck_assert_msg(len < 5 * d.n_entries + 150, "%zu bytes for %zu entries", len, d.n_entries);
    ck_assert_int_eq(slr_sync_delta_decode(buf, len, &back, &err), SLR_OK);
    ck_assert_uint_eq(back.n_entries, d.n_entries);
    ck_assert(memcmp(back.entries, d.entries, d.n_entries * SLR_SYNC_ENTRY) == 0);
    free(buf);
    slr_sync_delta_clear(&back);
    slr_sync_delta_clear(&d);
    slr_sync_member_destroy(m);
}
END_TEST

/* ----------------------------------------------------------- the ledger */

static slr_sync_range R(int32_t p, int64_t from, int64_t to)
{
    return (slr_sync_range){(char *)"t", p, from, to};
}

START_TEST(ledger_overlaps_repeats_gaps)
{
    slr_sync_ledger *g;
    slr_error err = {0};
    ck_assert_int_eq(slr_sync_ledger_create(&g, &err), SLR_OK);
    slr_sync_range a[] = {R(0, 0, 100), R(1, 0, 50)};
    ck_assert_int_eq(slr_sync_ledger_check(g, a, 2), SLR_SYNC_NEW);
    ck_assert_int_eq(slr_sync_ledger_add(g, a, 2, &err), SLR_OK);
    ck_assert_int_eq(slr_sync_ledger_check(g, a, 2), SLR_SYNC_REPEAT);
    slr_sync_range inside[] = {R(0, 10, 20)};
    ck_assert_int_eq(slr_sync_ledger_check(g, inside, 1), SLR_SYNC_REPEAT);
    slr_sync_range partly[] = {R(0, 90, 110)};
    ck_assert_int_eq(slr_sync_ledger_check(g, partly, 1), SLR_SYNC_OVERLAP);
    ck_assert_int_ne(slr_sync_ledger_add(g, partly, 1, &err), SLR_OK);
    slr_sync_range mixed[] = {R(0, 0, 100), R(2, 0, 10)}; /* one old, one new */
    ck_assert_int_eq(slr_sync_ledger_check(g, mixed, 2), SLR_SYNC_OVERLAP);
    slr_sync_range own_overlap[] = {R(3, 0, 10), R(3, 5, 15)};
    ck_assert_int_ne(slr_sync_ledger_add(g, own_overlap, 2, &err), SLR_OK);

    /* a gap stays a gap, and filling it joins the spans */
    slr_sync_range later[] = {R(0, 200, 300)};
    ck_assert_int_eq(slr_sync_ledger_add(g, later, 1, &err), SLR_OK);
    int64_t s[4][2];
    ck_assert_uint_eq(slr_sync_ledger_ranges(g, "t", 0, s, 4), 2);
    ck_assert(s[0][0] == 0 && s[0][1] == 100 && s[1][0] == 200 && s[1][1] == 300);
    slr_sync_range gap_part[] = {R(0, 100, 150)};
    ck_assert_int_eq(slr_sync_ledger_check(g, gap_part, 1), SLR_SYNC_NEW);
    ck_assert_int_eq(slr_sync_ledger_add(g, gap_part, 1, &err), SLR_OK);
    slr_sync_range gap_rest[] = {R(0, 150, 200)};
    ck_assert_int_eq(slr_sync_ledger_add(g, gap_rest, 1, &err), SLR_OK);
    ck_assert_uint_eq(slr_sync_ledger_ranges(g, "t", 0, s, 4), 1);
    ck_assert(s[0][0] == 0 && s[0][1] == 300);
    /* another topic of the same partition number is another partition */
    slr_sync_range other[] = {{(char *)"u", 0, 0, 300}};
    ck_assert_int_eq(slr_sync_ledger_check(g, other, 1), SLR_SYNC_NEW);
    /* empty ranges are nothing */
    slr_sync_range empty[] = {R(0, 5, 5)};
    ck_assert_int_eq(slr_sync_ledger_check(g, empty, 1), SLR_SYNC_NEW);

    /* through msgpack and back: the same answers */
    unsigned char *buf;
    size_t len;
    ck_assert_int_eq(slr_sync_ledger_encode(g, &buf, &len, &err), SLR_OK);
    slr_sync_ledger *h;
    ck_assert_int_eq(slr_sync_ledger_decode(buf, len, &h, &err), SLR_OK);
    ck_assert_uint_eq(slr_sync_ledger_ranges(h, "t", 0, s, 4), 1);
    ck_assert(s[0][0] == 0 && s[0][1] == 300);
    ck_assert_int_eq(slr_sync_ledger_check(h, a, 2), SLR_SYNC_REPEAT);
    for (size_t cut = 0; cut < len; cut++) {
        slr_sync_ledger *t;
        ck_assert_int_eq(slr_sync_ledger_decode(buf, cut, &t, &err), SLR_ERR_CORRUPT);
    }
    free(buf);
    slr_sync_ledger_destroy(h);
    slr_sync_ledger_destroy(g);
}
END_TEST

/* ---------------------------------------------------------- the members */

#define MAX_MEMBERS 32
#define PARTITIONS 6 /* unless a test says otherwise */
#define MAX_PARTITIONS 32

typedef struct group_result {
    double progressive; /* mean progressive log loss over every example */
    double test;        /* mean log loss of the final shared model on held-out examples */
    size_t n_learned;
} group_result;

static double test_loss(slr_learner *l)
{
    slr_example ex;
    slr_learner_config c = *slr_learner_config_of(l);
    slr_example_init(&ex, &c.hashing);
    double s = 0;
    for (int i = 0; i < 4000; i++) {
        stream_example(&ex, 99, i); /* a partition nobody learns */
        s += slr_logloss_margin(slr_learner_margin(l, &ex), ex.label);
    }
    slr_example_free(&ex);
    return s / 4000;
}

/* K members over `parts` partitions (member k owns p = k, k + K, ...),
 * `per` examples of each of its partitions per round, `rounds` rounds. */
static group_result run_group_over(int K, int parts, int per, int rounds, slr_sync_rule rule,
                                   const slr_learner_config *cfg, slr_sync_member **keep)
{
    slr_sync_member *m[MAX_MEMBERS];
    slr_error err = {0};
    for (int k = 0; k < K; k++) {
        char id[16];
        snprintf(id, sizeof id, "m%02d", k); /* ids sort as numbers */
        ck_assert_msg(slr_sync_member_create(&m[k], cfg, id, 1, &err) == SLR_OK, "%s", err.msg);
    }
    slr_example ex;
    slr_example_init(&ex, &cfg->hashing);
    group_result res = {0};
    double loss_sum = 0;
    for (int r = 0; r < rounds; r++) {
        slr_sync_delta d[MAX_MEMBERS];
        for (int k = 0; k < K; k++) {
            slr_sync_range ranges[MAX_PARTITIONS];
            size_t nr = 0;
            for (int p = k; p < parts; p += K)
                ranges[nr++] = (slr_sync_range){(char *)"clicks", p, (int64_t)r * per,
                                                (int64_t)(r + 1) * per};
            for (int i = 0; i < per; i++) /* the member's partitions interleaved */
                for (size_t q = 0; q < nr; q++) {
                    stream_example(&ex, ranges[q].partition, (int64_t)r * per + i);
                    double loss;
                    slr_sync_member_learn(m[k], &ex, &loss);
                    loss_sum += loss;
                    res.n_learned++;
                }
            ck_assert_int_eq(slr_sync_member_end_round(m[k], ranges, nr, &d[k], &err), SLR_OK);
        }
        for (int k = 0; k < K; k++) {
            size_t skipped;
            ck_assert_msg(slr_sync_member_apply(m[k], d, (size_t)K, rule, &skipped, &err) == SLR_OK,
                          "%s", err.msg);
            ck_assert_uint_eq(skipped, 0);
        }
        for (int k = 0; k < K; k++)
            slr_sync_delta_clear(&d[k]);
    }
    slr_example_free(&ex);
    res.progressive = loss_sum / (double)res.n_learned;
    res.test = test_loss((slr_learner *)slr_sync_member_shared(m[0]));
    for (int k = 0; k < K; k++) {
        if (keep)
            keep[k] = m[k];
        else
            slr_sync_member_destroy(m[k]);
    }
    return res;
}

static group_result run_group(int K, int per, int rounds, slr_sync_rule rule,
                              const slr_learner_config *cfg, slr_sync_member **keep)
{
    return run_group_over(K, PARTITIONS, per, rounds, rule, cfg, keep);
}

/* One learner over the same examples, round by round, partitions interleaved. */
static group_result run_single_over(int parts, int per, int rounds, const slr_learner_config *cfg,
                                    slr_learner **keep)
{
    slr_learner *l;
    ck_assert_int_eq(slr_learner_create(&l, cfg, NULL), SLR_OK);
    slr_example ex;
    slr_example_init(&ex, &cfg->hashing);
    group_result res = {0};
    double loss_sum = 0;
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < per; i++)
            for (int p = 0; p < parts; p++) {
                stream_example(&ex, p, (int64_t)r * per + i);
                double loss;
                slr_learner_learn(l, &ex, &loss);
                loss_sum += loss;
                res.n_learned++;
            }
    slr_example_free(&ex);
    res.progressive = loss_sum / (double)res.n_learned;
    res.test = test_loss(l);
    if (keep)
        *keep = l;
    else
        slr_learner_destroy(l);
    return res;
}

static group_result run_single(int per, int rounds, const slr_learner_config *cfg, slr_learner **keep)
{
    return run_single_over(PARTITIONS, per, rounds, cfg, keep);
}

/* The state (w, g2) of every coordinate with any, the bias last. */
static double *all_state(const slr_learner *l, size_t *n)
{
    const uint64_t bias = slr_learner_bias_index(l);
    double *s = malloc((bias + 1) * 2 * sizeof *s);
    for (uint32_t j = 0; j < bias; j++) {
        unsigned char r[SLR_STATE_RECORD];
        slr_learner_state_export(l, &j, 1, r);
        s[2 * j] = slr_le_get_f64(r + SLR_STATE_W);
        s[2 * j + 1] = slr_le_get_f64(r + SLR_STATE_G2);
    }
    slr_learner_bias_get(l, &s[2 * bias], &s[2 * bias + 1]);
    *n = bias + 1;
    return s;
}

/* K = 1: the merge of a member's own round is its own learning, up to the
 * rounding of the round's increments to bfloat16 (2^-9 of each, relative):
 * the coordinates it touched are within that of its learner's end state,
 * the rest bit for bit as they were, and its learner then follows the
 * shared model bit for bit. */
static void check_one_member(slr_learner_config cfg)
{
    make_theta();
    slr_sync_member *m;
    slr_error err = {0};
    ck_assert_int_eq(slr_sync_member_create(&m, &cfg, "solo", 1, &err), SLR_OK);
    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    size_t rounded = 0;
    for (int r = 0; r < 12; r++) {
        for (int i = 0; i < 250; i++) {
            stream_example(&ex, 0, (int64_t)r * 250 + i);
            slr_sync_member_learn(m, &ex, NULL);
        }
        slr_sync_range rg = {(char *)"clicks", 0, (int64_t)r * 250, (int64_t)(r + 1) * 250};
        slr_sync_delta d;
        ck_assert_int_eq(slr_sync_member_end_round(m, &rg, 1, &d, &err), SLR_OK);
        size_t n;
        double *own = all_state(slr_sync_member_learner(m), &n);
        ck_assert_int_eq(slr_sync_member_apply(m, &d, 1, SLR_SYNC_RELAXD, NULL, &err), SLR_OK);
        double *merged = all_state(slr_sync_member_shared(m), &n);
        size_t e = 0;
        for (size_t j = 0; j + 1 < n; j++) {
            double w = merged[2 * j], g2 = merged[2 * j + 1];
            double ow = own[2 * j], og2 = own[2 * j + 1];
            if (e < d.n_entries && slr_le_get_u32(d.entries + e * SLR_SYNC_ENTRY) == j) {
                const unsigned char *p = d.entries + e++ * SLR_SYNC_ENTRY;
                double dw = slr_sync_from_bf16(slr_le_get_u16(p + 4));
                double dg = slr_sync_from_bf16(slr_le_get_u16(p + 6) & 0x7fff);
                ck_assert_msg(fabs(w - ow) <= 0x1p-8 * fabs(dw) + 0x1p-50 * fabs(ow) &&
                                  fabs(g2 - og2) <= 0x1p-8 * dg + 0x1p-50 * og2,
                              "round %d coordinate %zu: merged %.17g/%.17g, learned %.17g/%.17g",
                              r, j, w, g2, ow, og2);
                rounded += w != ow;
            } else {
                ck_assert_msg(w == ow && g2 == og2, "round %d: untouched coordinate %zu moved", r, j);
            }
        }
        ck_assert_uint_eq(e, d.n_entries);
        ck_assert(fabs(merged[2 * n - 2] - own[2 * n - 2]) <= 1e-12 && merged[2 * n - 1] == own[2 * n - 1]);
        free(own);
        free(merged);
        slr_sync_delta_clear(&d);
        assert_same_model(slr_sync_member_learner(m), (slr_learner *)slr_sync_member_shared(m),
                          "member's learner vs shared");
    }
    ck_assert_uint_gt(rounded, 0); /* the rounding is there, and bounded */
    slr_example_free(&ex);
    slr_sync_member_destroy(m);
}

START_TEST(one_member_is_one_learner)
{
    check_one_member(test_config(0, 0));
}
END_TEST

START_TEST(one_member_is_one_learner_with_penalties)
{
    check_one_member(test_config(1e-4, 1e-3));
}
END_TEST

static unsigned char *shared_bytes(slr_sync_member *m, size_t *len)
{
    return model_bytes((slr_learner *)slr_sync_member_shared(m), len);
}

/* 3 members, 6 partitions, BSP rounds: one model, reproducible, every
 * offset once, and about as good as one learner that saw everything. */
static void check_three_members(const slr_learner_config *cfgp)
{
    make_theta();
    const slr_learner_config cfg = *cfgp;
    const int per = 100, rounds = 20; /* 600 examples a member a round, 36k in all */
    slr_sync_member *m[3], *again[3];
    group_result g = run_group(3, per, rounds, SLR_SYNC_RELAXD, &cfg, m);
    group_result g2 = run_group(3, per, rounds, SLR_SYNC_RELAXD, &cfg, again);
    group_result one = run_single(per, rounds, &cfg, NULL);

    size_t l0, l;
    unsigned char *ref = shared_bytes(m[0], &l0);
    for (int k = 0; k < 3; k++) {
        unsigned char *b = shared_bytes(m[k], &l);
        ck_assert_msg(l == l0 && memcmp(b, ref, l) == 0, "member %d holds another model", k);
        free(b);
        b = shared_bytes(again[k], &l);
        ck_assert_msg(l == l0 && memcmp(b, ref, l) == 0, "a rerun's member %d differs", k);
        free(b);
        assert_same_model(slr_sync_member_learner(m[k]), (slr_learner *)slr_sync_member_shared(m[k]),
                          "a member's learner after the round vs the shared model");
    }
    free(ref);
    /* every example once: the group step is their number, each partition's
     * offsets are covered by exactly one range */
    ck_assert_uint_eq(slr_learner_steps(slr_sync_member_shared(m[0])), (uint64_t)PARTITIONS * per * rounds);
    for (int p = 0; p < PARTITIONS; p++) {
        int64_t s[4][2];
        ck_assert_uint_eq(slr_sync_ledger_ranges(slr_sync_member_ledger(m[1]), "clicks", p, s, 4), 1);
        ck_assert(s[0][0] == 0 && s[0][1] == (int64_t)per * rounds);
    }
    ck_assert(g.progressive == g2.progressive && g.test == g2.test);

    /* The bound: within 2% of one learner (progressive and held-out).  A
     * plain sum with 4 members must break it, or the bound proves nothing. */
    fprintf(stderr, "3 members relaxd (l1 %g, l2 %g): progressive %.5f test %.5f; one learner %.5f %.5f\n",
            cfg.l1, cfg.l2, g.progressive, g.test, one.progressive, one.test);
    ck_assert_msg(g.progressive <= 1.02 * one.progressive, "progressive %.5f vs one learner %.5f",
                  g.progressive, one.progressive);
    ck_assert_msg(g.test <= 1.02 * one.test, "held-out %.5f vs one learner %.5f", g.test, one.test);
    for (int k = 0; k < 3; k++) {
        slr_sync_member_destroy(m[k]);
        slr_sync_member_destroy(again[k]);
    }
}

START_TEST(three_members_one_model)
{
    slr_learner_config cfg = test_config(0, 0);
    check_three_members(&cfg);
}
END_TEST

/* the same with both penalties: the lazy catch-ups split differently in
 * each member's learner, yet the shared model is one function of the deltas */
START_TEST(three_members_with_penalties)
{
    slr_learner_config cfg = test_config(1e-5, 1e-4);
    check_three_members(&cfg);
}
END_TEST

START_TEST(broken_merges_break_the_bound)
{
    make_theta();
    slr_learner_config cfg = test_config(0, 0);
    const int per = 100, rounds = 20;
    group_result one = run_single(per, rounds, &cfg, NULL);
    group_result sum4 = run_group(4, per, rounds, SLR_SYNC_SUM, &cfg, NULL);
    group_result mean4 = run_group(4, per, rounds, SLR_SYNC_MEAN, &cfg, NULL);
    group_result relaxd4 = run_group(4, per, rounds, SLR_SYNC_RELAXD, &cfg, NULL);
    fprintf(stderr, "4 members: sum %.5f/%.5f mean %.5f/%.5f relaxd %.5f/%.5f; one %.5f/%.5f\n",
            sum4.progressive, sum4.test, mean4.progressive, mean4.test, relaxd4.progressive,
            relaxd4.test, one.progressive, one.test);
    ck_assert_msg(sum4.progressive > 1.02 * one.progressive || sum4.test > 1.02 * one.test,
                  "a plain sum with 4 members stays within the bound: the bound is too loose");
    ck_assert(relaxd4.progressive <= 1.02 * one.progressive && relaxd4.test <= 1.02 * one.test);
}
END_TEST

/* Past 8 deltas a round, every delta's share of the round's common error
 * counts once (docs/SCALING.md, "More than 8 deltas a round"): 16 and 32
 * partitions, one delta each, stay within the bound of one learner, where
 * relaxd without that correction overshoots. */
START_TEST(many_deltas_hold)
{
    make_theta();
    slr_learner_config cfg = test_config(0, 0);
    const int per = 1000, rounds = 20; /* S = 1000, as the engine's benchmark */
    for (int parts = 16; parts <= 32; parts *= 2) {
        group_result one = run_single_over(parts, per, rounds, &cfg, NULL);
        group_result flat = run_group_over(parts, parts, per, rounds, SLR_SYNC_RELAXD_FLAT, &cfg, NULL);
        group_result g = run_group_over(parts, parts, per, rounds, SLR_SYNC_RELAXD, &cfg, NULL);
        fprintf(stderr, "%d deltas a round: relaxd %.5f/%.5f, without the common error %.5f/%.5f; "
                        "one %.5f/%.5f\n",
                parts, g.progressive, g.test, flat.progressive, flat.test, one.progressive, one.test);
        ck_assert_msg(flat.progressive > 1.02 * one.progressive || flat.test > 1.02 * one.test,
                      "%d deltas: relaxd without the common error stays within the bound: the bound "
                      "is too loose", parts);
        ck_assert_msg(g.progressive <= 1.02 * one.progressive && g.test <= 1.02 * one.test,
                      "%d deltas: progressive %.5f, held-out %.5f vs one learner %.5f, %.5f", parts,
                      g.progressive, g.test, one.progressive, one.test);
    }
}
END_TEST

/* Up to 8 deltas a round the merge is relaxd as simulated and measured
 * first, bit for bit: the correction past 8 changes nothing below it. */
START_TEST(eight_deltas_unchanged)
{
    make_theta();
    slr_learner_config cfg = test_config(1e-5, 1e-4);
    slr_sync_member *a[8], *b[8];
    run_group_over(8, 8, 100, 10, SLR_SYNC_RELAXD, &cfg, a);
    run_group_over(8, 8, 100, 10, SLR_SYNC_RELAXD_FLAT, &cfg, b);
    size_t la, lb;
    unsigned char *x = shared_bytes(a[0], &la), *y = shared_bytes(b[0], &lb);
    ck_assert_msg(la == lb && memcmp(x, y, la) == 0, "8 deltas a round: the merge changed");
    free(x);
    free(y);
    for (int k = 0; k < 8; k++) {
        slr_sync_member_destroy(a[k]);
        slr_sync_member_destroy(b[k]);
    }
}
END_TEST

/* L2 is paid once per group step: a coordinate only member 0 touched, once,
 * decays over the group's N examples as in one learner that saw them all,
 * not over K N nor over member 0's own count alone. */
START_TEST(l2_paid_once)
{
    slr_learner_config cfg = test_config(0, 1e-3);
    slr_sync_member *m[3];
    slr_learner *plain;
    slr_error err = {0};
    const char *ids[3] = {"a", "b", "c"};
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(slr_sync_member_create(&m[k], &cfg, ids[k], 1, &err), SLR_OK);
    ck_assert_int_eq(slr_learner_create(&plain, &cfg, &err), SLR_OK);
    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    const uint32_t c = 5;
    const int n[3] = {1, 40, 70}, n_round1 = 100;
    for (int r = 0; r < 2; r++) {
        slr_sync_delta d[3];
        for (int k = 0; k < 3; k++) {
            int count = r == 0 ? n[k] : n_round1;
            for (int i = 0; i < count; i++) {
                slr_example_reset(&ex);
                uint64_t f = r == 0 && k == 0 ? c : 100 + (uint64_t)(37 * i + 11 * k) % 900;
                ck_assert_int_eq(slr_example_add_hashed(&ex, f, 1.0, NULL), SLR_OK);
                ck_assert_int_eq(slr_example_finish(&ex, NULL), SLR_OK);
                ex.label = (i + k) % 2;
                ex.has_label = true;
                ex.weight = 1.0;
                slr_sync_member_learn(m[k], &ex, NULL);
                slr_learner_learn(plain, &ex, NULL); /* the same examples, members in turn */
            }
            slr_sync_range rg = {(char *)"t", k, r * 1000, r * 1000 + count};
            ck_assert_int_eq(slr_sync_member_end_round(m[k], &rg, 1, &d[k], &err), SLR_OK);
        }
        for (int k = 0; k < 3; k++)
            ck_assert_int_eq(slr_sync_member_apply(m[k], d, 3, SLR_SYNC_RELAXD, NULL, &err), SLR_OK);
        for (int k = 0; k < 3; k++)
            slr_sync_delta_clear(&d[k]);
    }
    slr_learner *s = (slr_learner *)slr_sync_member_shared(m[1]);
    const uint64_t N = 1 + 40 + 70 + 3 * n_round1;
    ck_assert_uint_eq(slr_learner_steps(s), N);
    slr_learner_sync(s);
    slr_learner_sync(plain);
    double got = slr_learner_weight(s, c), want = slr_learner_weight(plain, c);
    /* as one learner, but for the rounding of member a's increment */
    ck_assert_msg(want != 0.0 && fabs(got - want) <= 0x1p-8 * fabs(want),
                  "decayed weight %.17g, one learner %.17g", got, want);
    /* what paying it per member (3 N) or on member 0's clock alone would give */
    uint32_t cc = c;
    unsigned char rec[SLR_STATE_RECORD];
    slr_learner_state_export(s, &cc, 1, rec);
    double g2 = slr_le_get_f64(rec + SLR_STATE_G2);
    double w1;
    {
        /* member a's weight right after its one example */
        slr_learner *solo;
        ck_assert_int_eq(slr_learner_create(&solo, &cfg, &err), SLR_OK);
        slr_example_reset(&ex);
        slr_example_add_hashed(&ex, c, 1.0, NULL);
        slr_example_finish(&ex, NULL);
        ex.label = 0;
        slr_learner_learn(solo, &ex, NULL);
        /* as member a's record carries it: an increment from theta_0's 0 */
        w1 = slr_sync_from_bf16(slr_sync_bf16(slr_learner_weight(solo, c)));
        slr_learner_destroy(solo);
    }
    double per_member = slr_learner_penalized(s, w1, g2, 1, 3 * N);
    double own_clock = slr_learner_penalized(s, w1, g2, 1, 1 + n_round1);
    ck_assert_msg(fabs(per_member - got) > 1e-2 * fabs(got) && fabs(own_clock - got) > 1e-2 * fabs(got),
                  "the test cannot tell paying once from paying per member: %.17g %.17g %.17g",
                  got, per_member, own_clock);
    ck_assert(got == slr_learner_penalized(s, w1, g2, 1, N));
    slr_example_free(&ex);
    slr_learner_destroy(plain);
    for (int k = 0; k < 3; k++)
        slr_sync_member_destroy(m[k]);
}
END_TEST

/* A delta seen again (member b restarted from an older checkpoint and
 * re-learned its range) is recognised and not applied a second time. */
START_TEST(repeat_not_applied_twice)
{
    make_theta();
    slr_learner_config cfg = test_config(0, 0);
    slr_error err = {0};
    /* group x sees b's repeat; group y is the same run where b learned nothing */
    slr_sync_member *x[2], *y[2];
    const char *ids[2] = {"a", "b"};
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(slr_sync_member_create(&x[k], &cfg, ids[k], 1, &err), SLR_OK);
        ck_assert_int_eq(slr_sync_member_create(&y[k], &cfg, ids[k], 1, &err), SLR_OK);
    }
    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    for (int r = 0; r < 3; r++) {
        slr_sync_delta dx[2], dy[2];
        for (int k = 0; k < 2; k++) {
            /* b re-learns round 0's offsets in round 1 */
            int64_t from = k == 1 && r == 1 ? 0 : r * 300;
            slr_sync_range rg = {(char *)"t", k, from, from + 300};
            for (int64_t o = from; o < from + 300; o++) {
                stream_example(&ex, k, o);
                slr_sync_member_learn(x[k], &ex, NULL);
                if (!(k == 1 && r == 1))
                    slr_sync_member_learn(y[k], &ex, NULL);
            }
            ck_assert_int_eq(slr_sync_member_end_round(x[k], &rg, 1, &dx[k], &err), SLR_OK);
            ck_assert_int_eq(slr_sync_member_end_round(y[k], &rg, k == 1 && r == 1 ? 0 : 1, &dy[k],
                                                       &err), SLR_OK);
        }
        for (int k = 0; k < 2; k++) {
            size_t skipped;
            ck_assert_int_eq(slr_sync_member_apply(x[k], dx, 2, SLR_SYNC_RELAXD, &skipped, &err), SLR_OK);
            ck_assert_uint_eq(skipped, r == 1 ? 1 : 0);
            ck_assert_int_eq(slr_sync_member_apply(y[k], dy, 2, SLR_SYNC_RELAXD, NULL, &err), SLR_OK);
        }
        for (int k = 0; k < 2; k++) {
            slr_sync_delta_clear(&dx[k]);
            slr_sync_delta_clear(&dy[k]);
        }
        for (int k = 0; k < 2; k++) {
            assert_same_model((slr_learner *)slr_sync_member_shared(x[k]),
                              (slr_learner *)slr_sync_member_shared(y[k]), "with the repeat vs without");
            assert_same_model(slr_sync_member_learner(x[k]), (slr_learner *)slr_sync_member_shared(x[k]),
                              "member's learner vs shared after a skipped delta");
        }
    }
    ck_assert_uint_eq(slr_learner_steps(slr_sync_member_shared(x[0])), 5 * 300);

    /* a delta delivered twice in one round: both copies claim one range */
    slr_sync_delta d[2];
    for (int k = 0; k < 2; k++) {
        slr_sync_range rg = {(char *)"t", 0, 5000, 5010};
        for (int i = 0; i < 10; i++) {
            stream_example(&ex, 0, 5000 + i);
            slr_sync_member_learn(x[k], &ex, NULL);
        }
        ck_assert_int_eq(slr_sync_member_end_round(x[k], &rg, 1, &d[k], &err), SLR_OK);
    }
    ck_assert_int_eq(slr_sync_member_apply(x[0], d, 2, SLR_SYNC_RELAXD, NULL, &err), SLR_ERR_MISMATCH);
    ck_assert_msg(strstr(err.msg, "member \"b\""), "%s", err.msg);
    for (int k = 0; k < 2; k++)
        slr_sync_delta_clear(&d[k]);
    slr_example_free(&ex);
    for (int k = 0; k < 2; k++) {
        slr_sync_member_destroy(x[k]);
        slr_sync_member_destroy(y[k]);
    }
}
END_TEST

/* A member whose round had no example (a partition's empty last slice,
 * [x, x)) publishes a delta that every reader can decode and merge: after
 * round 0 the bias's end state is not zero, and it must not be sent as if
 * the member had learned it. */
START_TEST(empty_round_decodes)
{
    make_theta();
    slr_error err = {0};
    slr_sync_delta d, back;
    slr_sync_member *m = member_after(test_config(0, 0), "t/000000", "t", 50, &d);
    ck_assert_int_eq(slr_sync_member_apply(m, &d, 1, SLR_SYNC_RELAXD, NULL, &err), SLR_OK);
    slr_sync_delta_clear(&d);
    slr_sync_range rg = {(char *)"t", 0, 50, 50};
    ck_assert_int_eq(slr_sync_member_end_round(m, &rg, 1, &d, &err), SLR_OK);
    ck_assert_uint_eq(d.examples, 0);
    unsigned char *buf;
    size_t len;
    ck_assert_int_eq(slr_sync_delta_encode(&d, &buf, &len, &err), SLR_OK);
    ck_assert_msg(slr_sync_delta_decode(buf, len, &back, &err) == SLR_OK, "%s", err.msg);
    uint64_t steps = slr_learner_steps(slr_sync_member_shared(m));
    ck_assert_int_eq(slr_sync_member_apply(m, &back, 1, SLR_SYNC_RELAXD, NULL, &err), SLR_OK);
    ck_assert_uint_eq(slr_learner_steps(slr_sync_member_shared(m)), steps);
    free(buf);
    slr_sync_delta_clear(&d);
    slr_sync_delta_clear(&back);
    slr_sync_member_destroy(m);
}
END_TEST

/* A reader (a scorer) is a member that learns nothing and publishes
 * nothing: applying the others' deltas gives it their model. */
START_TEST(reader_follows_the_group)
{
    make_theta();
    slr_learner_config cfg = test_config(1e-5, 1e-4);
    slr_error err = {0};
    slr_sync_member *m[3];
    const char *ids[3] = {"a", "b", "reader"};
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(slr_sync_member_create(&m[k], &cfg, ids[k], 1, &err), SLR_OK);
    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    for (int r = 0; r < 4; r++) {
        slr_sync_delta d[3];
        for (int k = 0; k < 3; k++) {
            for (int i = 0; k < 2 && i < 150; i++) {
                stream_example(&ex, k, r * 150 + i);
                slr_sync_member_learn(m[k], &ex, NULL);
            }
            slr_sync_range rg = {(char *)"t", k, r * 150, r * 150 + 150};
            ck_assert_int_eq(slr_sync_member_end_round(m[k], &rg, k < 2, &d[k], &err), SLR_OK);
        }
        for (int k = 0; k < 3; k++) /* the reader's empty delta is not published */
            ck_assert_int_eq(slr_sync_member_apply(m[k], d, 2, SLR_SYNC_RELAXD, NULL, &err), SLR_OK);
        for (int k = 0; k < 3; k++)
            slr_sync_delta_clear(&d[k]);
    }
    assert_same_model((slr_learner *)slr_sync_member_shared(m[0]),
                      (slr_learner *)slr_sync_member_shared(m[2]), "member vs reader");
    assert_same_model(slr_sync_member_learner(m[2]), (slr_learner *)slr_sync_member_shared(m[2]),
                      "reader's learner vs its shared model");
    slr_example_free(&ex);
    for (int k = 0; k < 3; k++)
        slr_sync_member_destroy(m[k]);
}
END_TEST

/* A round that carries the group step past 2^32 (the learners' stamps are
 * 32 bits from an epoch): both members rebase, stay one model, and their
 * learners follow it. */
START_TEST(group_step_past_stamp_range)
{
    make_theta();
    slr_learner_config cfg = test_config(1e-5, 1e-4);
    slr_error err = {0};
    slr_sync_member *m[2];
    const char *ids[2] = {"a", "b"};
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(slr_sync_member_create(&m[k], &cfg, ids[k], 1, &err), SLR_OK);
    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    for (int r = 0; r < 3; r++) {
        slr_sync_delta d[2];
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < 200; i++) {
                stream_example(&ex, k, r * 200 + i);
                slr_sync_member_learn(m[k], &ex, NULL);
            }
            slr_sync_range rg = {(char *)"t", k, r * 200, r * 200 + 200};
            ck_assert_int_eq(slr_sync_member_end_round(m[k], &rg, 1, &d[k], &err), SLR_OK);
        }
        if (r == 1)
            d[1].examples = UINT64_C(5000000000); /* as if b had learned that many */
        for (int k = 0; k < 2; k++)
            ck_assert_msg(slr_sync_member_apply(m[k], d, 2, SLR_SYNC_RELAXD, NULL, &err) == SLR_OK,
                          "%s", err.msg);
        for (int k = 0; k < 2; k++)
            slr_sync_delta_clear(&d[k]);
    }
    ck_assert_uint_eq(slr_learner_steps(slr_sync_member_shared(m[0])), UINT64_C(5000000000) + 1000);
    assert_same_model((slr_learner *)slr_sync_member_shared(m[0]),
                      (slr_learner *)slr_sync_member_shared(m[1]), "a vs b");
    for (int k = 0; k < 2; k++)
        assert_same_model(slr_sync_member_learner(m[k]), (slr_learner *)slr_sync_member_shared(m[k]),
                          "learner vs shared");
    slr_example_free(&ex);
    for (int k = 0; k < 2; k++)
        slr_sync_member_destroy(m[k]);
}
END_TEST

/* Deltas from another configuration, another round, or out of order are
 * refused and leave the model as it was. */
START_TEST(merge_refuses_mismatches)
{
    make_theta();
    slr_learner_config cfg = test_config(0, 0), other = test_config(0, 0);
    other.eta = 0.25;
    slr_error err = {0};
    slr_sync_member *a, *b;
    ck_assert_int_eq(slr_sync_member_create(&a, &cfg, "a", 1, &err), SLR_OK);
    ck_assert_int_eq(slr_sync_member_create(&b, &other, "b", 1, &err), SLR_OK);
    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    slr_sync_delta d[2];
    slr_sync_member *mm[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 50; i++) {
            stream_example(&ex, k, i);
            slr_sync_member_learn(mm[k], &ex, NULL);
        }
        slr_sync_range rg = {(char *)"t", k, 0, 50};
        ck_assert_int_eq(slr_sync_member_end_round(mm[k], &rg, 1, &d[k], &err), SLR_OK);
    }
    size_t before_len, after_len;
    unsigned char *before = shared_bytes(a, &before_len);
    ck_assert_int_eq(slr_sync_member_apply(a, d, 2, SLR_SYNC_RELAXD, NULL, &err), SLR_ERR_MISMATCH);
    ck_assert_msg(strstr(err.msg, "other settings"), "%s", err.msg);
    slr_sync_delta swapped[2] = {d[1], d[0]};
    d[1].fingerprint = d[0].fingerprint;
    swapped[0].fingerprint = d[0].fingerprint;
    ck_assert_int_eq(slr_sync_merge((slr_learner *)slr_sync_member_shared(a), 0, swapped, 2,
                                    SLR_SYNC_RELAXD, NULL, NULL, &err), SLR_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "increasing member id"), "%s", err.msg);
    ck_assert_int_eq(slr_sync_merge((slr_learner *)slr_sync_member_shared(a), 1, d, 2,
                                    SLR_SYNC_RELAXD, NULL, NULL, &err), SLR_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "round 0 to round 1"), "%s", err.msg);
    unsigned char *after = shared_bytes(a, &after_len);
    ck_assert(before_len == after_len && memcmp(before, after, before_len) == 0);
    free(before);
    free(after);
    slr_example_free(&ex);
    for (int k = 0; k < 2; k++)
        slr_sync_delta_clear(&d[k]);
    slr_sync_member_destroy(a);
    slr_sync_member_destroy(b);

    slr_learner_config inv = test_config(0, 0);
    inv.schedule = SLR_SCHEDULE_INVPOW;
    ck_assert_int_eq(slr_sync_member_create(&a, &inv, "a", 1, &err), SLR_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "adagrad"), "%s", err.msg);
    /* nor FTRL's z and n, nor a decaying Sum g^2: the merge is built on neither */
    slr_learner_config ftrl = test_config(0, 0), decay = test_config(0, 0);
    ftrl.optimizer = SLR_OPTIMIZER_FTRL;
    decay.decay = 0.999;
    ck_assert_int_eq(slr_sync_member_create(&a, &ftrl, "a", 1, &err), SLR_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "--optimizer ftrl"), "%s", err.msg);
    ck_assert_int_eq(slr_sync_member_create(&a, &decay, "a", 1, &err), SLR_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "--decay"), "%s", err.msg);
}
END_TEST

/* ------------------------------------------------------- pooled members */

/* a and b hold the same state, stamps (penalties owed) included: compared
 * without paying them, which would change the bits of later rounds */
static void assert_same_state(const slr_learner *a, const slr_learner *b, const char *what)
{
    ck_assert_uint_eq(slr_learner_steps(a), slr_learner_steps(b));
    const uint32_t n = (uint32_t)slr_learner_bias_index(a);
    for (uint32_t j = 0; j < n; j++) {
        unsigned char x[SLR_STATE_RECORD], y[SLR_STATE_RECORD];
        slr_learner_state_export(a, &j, 1, x);
        slr_learner_state_export(b, &j, 1, y);
        ck_assert_msg(memcmp(x, y, sizeof x) == 0, "%s: coordinate %u differs", what, j);
    }
    double aw, ag, bw, bg;
    slr_learner_bias_get(a, &aw, &ag);
    slr_learner_bias_get(b, &bw, &bg);
    ck_assert_msg(memcmp(&aw, &bw, sizeof aw) == 0 && memcmp(&ag, &bg, sizeof ag) == 0,
                  "%s: the bias differs", what);
}

/* Learn examples [from, to) of partition p's slice of round r into m (its
 * table taken first, as train_sync does before a message). */
static void learn_part(slr_sync_member *m, int p, int r, int per, int from, int to)
{
    slr_error err = {0};
    slr_example ex;
    slr_example_init(&ex, &slr_learner_config_of(slr_sync_member_shared(m))->hashing);
    for (int i = from; i < to; i++) {
        ck_assert_int_eq(slr_sync_member_begin(m, &err), SLR_OK);
        stream_example(&ex, p, (int64_t)r * per + i);
        slr_sync_member_learn(m, &ex, NULL);
    }
    slr_example_free(&ex);
}

static unsigned char *delta_bytes(const slr_sync_delta *d, size_t *len)
{
    unsigned char *b;
    slr_error err = {0};
    ck_assert_msg(slr_sync_delta_encode(d, &b, len, &err) == SLR_OK, "%s", err.msg);
    return b;
}

/* Members sharing work tables (slr_sync_pool) learn what members with a
 * table each (slr_sync_member_create_on) learn, bit for bit: every delta's
 * bytes and theta after every round, with slices learned interleaved (two
 * tables held at once), one given up mid-slice (its member destroyed, as
 * when a partition is taken away, and made again), one given up and won by
 * another process's delta (the member holds its table at the merge), and a
 * partition's empty last slice.  Four partitions need two tables here. */
static void check_pooled(slr_learner_config cfg)
{
    make_theta();
    enum { P = 4, PER = 60, ROUNDS = 6 };
    slr_error err = {0};
    slr_learner *ta, *tb;
    ck_assert_int_eq(slr_learner_create(&ta, &cfg, &err), SLR_OK);
    ck_assert_int_eq(slr_learner_create(&tb, &cfg, &err), SLR_OK);
    slr_sync_pool *pool;
    ck_assert_int_eq(slr_sync_pool_create(&pool, tb, &err), SLR_OK);
    slr_sync_member *a[P], *b[P];
    char name[P][16];
    for (int p = 0; p < P; p++) {
        snprintf(name[p], sizeof name[p], "clicks/%06d", p);
        ck_assert_int_eq(slr_sync_member_create_on(&a[p], ta, name[p], 0, 0, &err), SLR_OK);
        ck_assert_int_eq(slr_sync_member_create_pooled(&b[p], pool, name[p], 0, 0, &err), SLR_OK);
        ck_assert_ptr_null(slr_sync_member_learner(b[p])); /* no table until it learns */
    }
    for (int r = 0; r < ROUNDS; r++) {
        bool last = r == ROUNDS - 1;
        if (r == 2) { /* partition 3 taken away mid-slice, then given back */
            learn_part(a[3], 3, r, PER, 0, PER / 2);
            learn_part(b[3], 3, r, PER, 0, PER / 2);
            slr_sync_member_destroy(a[3]);
            slr_sync_member_destroy(b[3]);
            ck_assert_int_eq(slr_sync_member_create_on(&a[3], ta, name[3], 0, r, &err), SLR_OK);
            ck_assert_int_eq(slr_sync_member_create_pooled(&b[3], pool, name[3], 0, r, &err), SLR_OK);
        }
        slr_sync_delta da[P], db[P];
        for (int p = 0; p < P; p += 2) { /* p and p + 1 interleaved: two tables at once */
            for (int h = 0; h < 2; h++)
                for (int q = p; q < p + 2; q++) {
                    bool lost = r == 3 && q == 1; /* learns half, another process wins */
                    bool empty = last && q == 2;  /* the partition's last slice is empty */
                    if (empty || (lost && h == 1))
                        continue;
                    learn_part(a[q], q, r, PER, h * PER / 2, (h + 1) * PER / 2);
                    learn_part(b[q], q, r, PER, h * PER / 2, (h + 1) * PER / 2);
                }
            for (int q = p; q < p + 2; q++) {
                bool empty = last && q == 2;
                slr_sync_range g = {(char *)"clicks", q, (int64_t)r * PER,
                                    (int64_t)r * PER + (empty ? 0 : PER)};
                if (r == 3 && q == 1) { /* the winner: a whole slice from theta_r */
                    slr_sync_member *w;
                    ck_assert_int_eq(slr_sync_member_create_on(&w, ta, name[q], 0, r, &err), SLR_OK);
                    learn_part(w, q, r, PER, 0, PER);
                    ck_assert_int_eq(slr_sync_member_end_round(w, &g, 1, &da[q], &err), SLR_OK);
                    slr_sync_member_destroy(w);
                    ck_assert_int_eq(slr_sync_member_create_on(&w, ta, name[q], 0, r, &err), SLR_OK);
                    learn_part(w, q, r, PER, 0, PER);
                    ck_assert_int_eq(slr_sync_member_end_round(w, &g, 1, &db[q], &err), SLR_OK);
                    slr_sync_member_destroy(w);
                    continue;
                }
                ck_assert_int_eq(slr_sync_member_end_round(a[q], &g, 1, &da[q], &err), SLR_OK);
                ck_assert_int_eq(slr_sync_member_end_round(b[q], &g, 1, &db[q], &err), SLR_OK);
                ck_assert_int_eq(slr_sync_member_release(b[q], &err), SLR_OK);
                ck_assert_ptr_null(slr_sync_member_learner(b[q]));
            }
        }
        for (int p = 0; p < P; p++) {
            size_t la, lb;
            unsigned char *x = delta_bytes(&da[p], &la), *y = delta_bytes(&db[p], &lb);
            ck_assert_msg(la == lb && memcmp(x, y, la) == 0,
                          "round %d partition %d: the pooled member's delta differs", r, p);
            free(x);
            free(y);
        }
        uint32_t *ca, *cb;
        size_t na, nb;
        ck_assert_int_eq(slr_sync_merge(ta, (uint64_t)r, da, P, SLR_SYNC_RELAXD, &ca, &na, &err), SLR_OK);
        ck_assert_int_eq(slr_sync_merge(tb, (uint64_t)r, db, P, SLR_SYNC_RELAXD, &cb, &nb, &err), SLR_OK);
        for (int p = 0; p < P; p++) {
            bool own = !(r == 3 && p == 1);
            ck_assert_int_eq(slr_sync_member_follow(a[p], ca, na, own, &err), SLR_OK);
            ck_assert_int_eq(slr_sync_member_follow(b[p], cb, nb, own, &err), SLR_OK);
            slr_sync_delta_clear(&da[p]);
            slr_sync_delta_clear(&db[p]);
        }
        ck_assert_int_eq(slr_sync_pool_follow(pool, cb, nb, &err), SLR_OK);
        free(ca);
        free(cb);
        assert_same_state(ta, tb, "theta with pooled members vs with a table each");
    }
    ck_assert_uint_eq(slr_sync_pool_tables(pool), 3);
    for (int p = 0; p < P; p++) {
        slr_sync_member_destroy(a[p]);
        slr_sync_member_destroy(b[p]);
    }
    slr_sync_pool_destroy(pool);
    slr_learner_destroy(ta);
    slr_learner_destroy(tb);
}

START_TEST(pooled_members_learn_as_members_with_tables)
{
    check_pooled(test_config(0, 0));
}
END_TEST

START_TEST(pooled_members_learn_as_members_with_tables_with_penalties)
{
    check_pooled(test_config(1e-4, 1e-3));
}
END_TEST

static Suite *sync_suite(void)
{
    Suite *s = suite_create("sync");
    TCase *tc = tcase_create("codec");
    tcase_add_test(tc, codec_round_trip);
    tcase_add_test(tc, codec_rejects);
    tcase_add_test(tc, codec_planes_refused);
    tcase_add_test(tc, codec_is_compact);
    tcase_add_test(tc, ledger_overlaps_repeats_gaps);
    suite_add_tcase(s, tc);
    tc = tcase_create("merge");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, one_member_is_one_learner);
    tcase_add_test(tc, one_member_is_one_learner_with_penalties);
    tcase_add_test(tc, three_members_one_model);
    tcase_add_test(tc, three_members_with_penalties);
    tcase_add_test(tc, broken_merges_break_the_bound);
    tcase_add_test(tc, many_deltas_hold);
    tcase_add_test(tc, eight_deltas_unchanged);
    tcase_add_test(tc, l2_paid_once);
    tcase_add_test(tc, repeat_not_applied_twice);
    tcase_add_test(tc, empty_round_decodes);
    tcase_add_test(tc, merge_refuses_mismatches);
    tcase_add_test(tc, group_step_past_stamp_range);
    tcase_add_test(tc, reader_follows_the_group);
    tcase_add_test(tc, pooled_members_learn_as_members_with_tables);
    tcase_add_test(tc, pooled_members_learn_as_members_with_tables_with_penalties);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sync_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
