/* sync_ledger.c - the source offset ranges a model already reflects
 * (sync.h), per topic-partition: sorted, disjoint, adjacent ones joined.
 * It is what makes a delta that became visible twice (a member restarted
 * from an older checkpoint re-learns a range, a redelivered record) harmless:
 * every reader applies a range at most once.  A handful of partitions with a
 * few gaps each: plain arrays, searched linearly per partition and by
 * bisection within one, is plenty (it runs once per delta, not per example). */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "streamlr/sync.h"
#include "sync_impl.h"
#include "util/msgpack_obj.h"

typedef struct span {
    int64_t from, to;
} span;

typedef struct part {
    char *topic;
    int32_t partition;
    span *spans;
    size_t n, cap;
} part;

struct slr_sync_ledger {
    part *parts;
    size_t n, cap;
};

slr_status slr_sync_ledger_create(slr_sync_ledger **out, slr_error *err)
{
    *out = calloc(1, sizeof **out);
    return *out ? SLR_OK : slr_error_set(err, SLR_ERR_NOMEM, "out of memory for the sync ledger");
}

void slr_sync_ledger_destroy(slr_sync_ledger *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++) {
        free(g->parts[i].topic);
        free(g->parts[i].spans);
    }
    free(g->parts);
    free(g);
}

static part *find_part(const slr_sync_ledger *g, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->parts[i].partition == partition && strcmp(g->parts[i].topic, topic) == 0)
            return &g->parts[i];
    return NULL;
}

/* Index of the first span whose end is after x (spans are sorted and disjoint). */
static size_t first_ending_after(const part *p, int64_t x)
{
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->spans[mid].to <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

typedef enum cover { COVER_NONE, COVER_ALL, COVER_SOME } cover;

static cover covered(const slr_sync_ledger *g, const slr_sync_range *r)
{
    const part *p = find_part(g, r->topic, r->partition);
    if (!p)
        return COVER_NONE;
    size_t i = first_ending_after(p, r->from);
    if (i == p->n || p->spans[i].from >= r->to)
        return COVER_NONE;
    /* spans are joined when adjacent, so one span holds all of it or it is partial */
    return p->spans[i].from <= r->from && r->to <= p->spans[i].to ? COVER_ALL : COVER_SOME;
}

slr_sync_seen slr_sync_ledger_check(const slr_sync_ledger *g, const slr_sync_range *ranges,
                                    size_t n)
{
    size_t none = 0, all = 0;
    for (size_t i = 0; i < n; i++) {
        if (ranges[i].from >= ranges[i].to)
            continue;
        switch (covered(g, &ranges[i])) {
        case COVER_NONE: none++; break;
        case COVER_ALL: all++; break;
        case COVER_SOME: return SLR_SYNC_OVERLAP;
        }
    }
    if (all == 0)
        return SLR_SYNC_NEW;
    return none == 0 ? SLR_SYNC_REPEAT : SLR_SYNC_OVERLAP;
}

static slr_status insert(part *p, int64_t from, int64_t to, slr_error *err)
{
    size_t i = first_ending_after(p, from - 1); /* the first span that ends at or after from */
    bool join_prev = i < p->n && p->spans[i].to == from;
    bool join_next = (join_prev ? i + 1 : i) < p->n && p->spans[join_prev ? i + 1 : i].from == to;
    if (join_prev && join_next) {
        p->spans[i].to = p->spans[i + 1].to;
        memmove(&p->spans[i + 1], &p->spans[i + 2], (p->n - i - 2) * sizeof(span));
        p->n--;
    } else if (join_prev) {
        p->spans[i].to = to;
    } else if (join_next) {
        p->spans[i].from = from;
    } else {
        if (p->n == p->cap) {
            size_t cap = p->cap ? 2 * p->cap : 4;
            span *s = realloc(p->spans, cap * sizeof *s);
            if (!s)
                return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for the sync ledger");
            p->spans = s;
            p->cap = cap;
        }
        memmove(&p->spans[i + 1], &p->spans[i], (p->n - i) * sizeof(span));
        p->spans[i] = (span){from, to};
        p->n++;
    }
    return SLR_OK;
}

static part *get_part(slr_sync_ledger *g, const char *topic, int32_t partition, slr_error *err)
{
    part *p = find_part(g, topic, partition);
    if (p)
        return p;
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 8;
        part *np = realloc(g->parts, cap * sizeof *np);
        if (!np) {
            slr_error_set(err, SLR_ERR_NOMEM, "out of memory for the sync ledger");
            return NULL;
        }
        g->parts = np;
        g->cap = cap;
    }
    char *t = strdup(topic);
    if (!t) {
        slr_error_set(err, SLR_ERR_NOMEM, "out of memory for the sync ledger");
        return NULL;
    }
    p = &g->parts[g->n++];
    *p = (part){.topic = t, .partition = partition};
    return p;
}

static bool ranges_disjoint(const slr_sync_range *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++)
            if (r[i].partition == r[k].partition && strcmp(r[i].topic, r[k].topic) == 0 &&
                r[i].from < r[k].to && r[k].from < r[i].to)
                return false;
    return true;
}

slr_status slr_sync_ledger_add(slr_sync_ledger *g, const slr_sync_range *ranges, size_t n,
                               slr_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (ranges[i].from < ranges[i].to && covered(g, &ranges[i]) != COVER_NONE)
            return slr_error_set(err, SLR_ERR_ARG,
                                 "%s [%d] offsets %lld..%lld are already (partly) applied",
                                 ranges[i].topic, ranges[i].partition,
                                 (long long)ranges[i].from, (long long)ranges[i].to);
    if (!ranges_disjoint(ranges, n))
        return slr_error_set(err, SLR_ERR_ARG, "a delta's own ranges overlap");
    for (size_t i = 0; i < n; i++) {
        if (ranges[i].from >= ranges[i].to)
            continue;
        part *p = get_part(g, ranges[i].topic, ranges[i].partition, err);
        if (!p)
            return SLR_ERR_NOMEM;
        slr_status st = insert(p, ranges[i].from, ranges[i].to, err);
        if (st != SLR_OK)
            return st;
    }
    return SLR_OK;
}

size_t slr_sync_ledger_ranges(const slr_sync_ledger *g, const char *topic, int32_t partition,
                              int64_t (*out)[2], size_t max)
{
    const part *p = find_part(g, topic, partition);
    if (!p)
        return 0;
    for (size_t i = 0; i < p->n && i < max; i++) {
        out[i][0] = p->spans[i].from;
        out[i][1] = p->spans[i].to;
    }
    return p->n;
}

slr_status slr_sync_ledger_encode(const slr_sync_ledger *g, unsigned char **out, size_t *out_len,
                                  slr_error *err)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, g->n);
    for (size_t i = 0; i < g->n; i++) {
        const part *p = &g->parts[i];
        msgpack_pack_array(&pk, 3);
        slr_mp_pack_str(&pk, p->topic);
        msgpack_pack_int32(&pk, p->partition);
        msgpack_pack_array(&pk, 2 * p->n);
        for (size_t k = 0; k < p->n; k++) {
            msgpack_pack_int64(&pk, p->spans[k].from);
            msgpack_pack_int64(&pk, p->spans[k].to);
        }
    }
    return slr_sync_take(&sb, out, out_len, "the sync ledger", err);
}

static slr_status decode_parts(const msgpack_object *a, slr_sync_ledger *g, slr_error *err)
{
    if (a->type != MSGPACK_OBJECT_ARRAY)
        return slr_error_set(err, SLR_ERR_CORRUPT, "sync ledger: not an array");
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        const msgpack_object *e = &a->via.array.ptr[i];
        int64_t partition;
        if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 3 ||
            e->via.array.ptr[0].type != MSGPACK_OBJECT_STR || e->via.array.ptr[0].via.str.size == 0 ||
            memchr(e->via.array.ptr[0].via.str.ptr, 0, e->via.array.ptr[0].via.str.size) ||
            !slr_mp_int(&e->via.array.ptr[1], &partition) || partition < 0 ||
            partition > INT32_MAX || e->via.array.ptr[2].type != MSGPACK_OBJECT_ARRAY ||
            e->via.array.ptr[2].via.array.size % 2)
            return slr_error_set(err, SLR_ERR_CORRUPT,
                                 "sync ledger: entry %u is not [topic, partition, [from, to, ...]]", i);
        char *topic = slr_mp_strdup(&e->via.array.ptr[0]);
        if (!topic)
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory decoding the sync ledger");
        const msgpack_object *s = e->via.array.ptr[2].via.array.ptr;
        uint32_t ns = e->via.array.ptr[2].via.array.size / 2;
        slr_status st = SLR_OK;
        int64_t prev_to = -1;
        for (uint32_t k = 0; k < ns && st == SLR_OK; k++) {
            slr_sync_range r = {.topic = topic, .partition = (int32_t)partition};
            /* stored joined and in order: a gap between spans, never a touch */
            if (!slr_mp_int(&s[2 * k], &r.from) || !slr_mp_int(&s[2 * k + 1], &r.to) ||
                r.from < 0 || r.to <= r.from || r.from <= prev_to)
                st = slr_error_set(err, SLR_ERR_CORRUPT,
                                   "sync ledger: %s [%d] has an empty, negative or unordered range",
                                   topic, (int)partition);
            else
                st = slr_sync_ledger_add(g, &r, 1, err);
            prev_to = r.to;
        }
        free(topic);
        if (st == SLR_ERR_ARG)
            return slr_error_set(err, SLR_ERR_CORRUPT,
                                 "sync ledger: %s [%d] is listed twice, with overlapping ranges",
                                 e->via.array.ptr[0].via.str.size ? "a topic" : "", (int)partition);
        if (st != SLR_OK)
            return st;
    }
    return SLR_OK;
}

slr_status slr_sync_ledger_decode(const void *buf, size_t len, slr_sync_ledger **out,
                                  slr_error *err)
{
    *out = NULL;
    slr_sync_ledger *g;
    slr_status st = slr_sync_ledger_create(&g, err);
    if (st != SLR_OK)
        return st;
    msgpack_zone zone;
    msgpack_object obj;
    st = slr_sync_unpack(buf, len, &zone, &obj, "sync ledger", err);
    if (st == SLR_OK)
        st = decode_parts(&obj, g, err);
    msgpack_zone_destroy(&zone);
    if (st != SLR_OK) {
        slr_sync_ledger_destroy(g);
        return st;
    }
    *out = g;
    return SLR_OK;
}

int64_t slr_sync_ledger_reach(const slr_sync_ledger *g, const char *topic, int32_t partition)
{
    const part *p = find_part(g, topic, partition);
    return p && p->n ? p->spans[p->n - 1].to : 0;
}
