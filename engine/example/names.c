/* names.c - the name -> index map behind --keep-names (see names.h).
 *
 * Entries live in one array in first-seen order (that is also the order
 * they are written to a checkpoint), names in one growing text arena, and
 * an open-addressing table of entry numbers keyed by the feature's 64-bit
 * hash finds a known feature without formatting its name.  The pair walk in
 * slr_names_record() must visit -q pairs in the order slr_example_finish()
 * creates them; check_names tests that the recorded indices are the ones
 * the learner used. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quadratic.h"
#include "streamlr/names.h"

typedef struct entry {
    uint64_t key;
    uint32_t index;
    uint32_t len;
    uint64_t off; /* into text */
} entry;

struct slr_names {
    uint64_t max;
    uint64_t dropped;
    entry *entries;
    uint64_t n, cap;
    char *text;
    uint64_t text_len, text_cap;
    uint32_t *table; /* entry number + 1, 0 = empty; size a power of two > 2 n */
    uint64_t table_size;
    /* per-example scratch: entry number + 1 of each base feature's name, 0 = none */
    uint32_t *base;
    uint32_t base_cap;
};

slr_status slr_names_create(slr_names **out, uint64_t max_names, slr_error *err)
{
    *out = NULL;
    if (max_names < 1 || max_names > UINT32_MAX / 4)
        return slr_error_set(err, SLR_ERR_ARG, "--keep-names-max must be 1..%u (got %llu)",
                             UINT32_MAX / 4, (unsigned long long)max_names);
    slr_names *n = calloc(1, sizeof *n);
    if (!n)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    n->max = max_names;
    *out = n;
    return SLR_OK;
}

void slr_names_destroy(slr_names *n)
{
    if (!n)
        return;
    free(n->entries);
    free(n->text);
    free(n->table);
    free(n->base);
    free(n);
}

uint64_t slr_names_count(const slr_names *n) { return n->n; }
uint64_t slr_names_max(const slr_names *n) { return n->max; }
uint64_t slr_names_dropped(const slr_names *n) { return n->dropped; }
void slr_names_set_dropped(slr_names *n, uint64_t dropped) { n->dropped = dropped; }
void slr_names_set_max(slr_names *n, uint64_t max_names)
{
    n->max = max_names > n->n ? max_names : n->n;
}

static uint64_t slot_of(uint64_t key, uint64_t size)
{
    key ^= key >> 33; /* keys are XXH3 hashes already; fold the high bits in */
    return key & (size - 1);
}

/* Entry number + 1 of key, or 0; *slot receives where it is or would go. */
static uint32_t find(const slr_names *n, uint64_t key, uint64_t *slot)
{
    if (!n->table_size)
        return 0;
    uint64_t s = slot_of(key, n->table_size);
    while (n->table[s] && n->entries[n->table[s] - 1].key != key)
        s = (s + 1) & (n->table_size - 1);
    *slot = s;
    return n->table[s];
}

static int grow_table(slr_names *n)
{
    uint64_t size = n->table_size ? n->table_size * 2 : 1024;
    uint32_t *t = calloc(size, sizeof *t);
    if (!t)
        return -1;
    for (uint64_t i = 0; i < n->n; i++) {
        uint64_t s = slot_of(n->entries[i].key, size);
        while (t[s])
            s = (s + 1) & (size - 1);
        t[s] = (uint32_t)(i + 1);
    }
    free(n->table);
    n->table = t;
    n->table_size = size;
    return 0;
}

/* Make room for one more entry of `len` bytes of text. */
static int reserve(slr_names *n, size_t len)
{
    if (2 * (n->n + 1) >= n->table_size && grow_table(n) != 0)
        return -1;
    if (n->n == n->cap) {
        uint64_t cap = n->cap ? n->cap * 2 : 1024;
        entry *e = realloc(n->entries, cap * sizeof *e);
        if (!e)
            return -1;
        n->entries = e;
        n->cap = cap;
    }
    if (n->text_len + len > n->text_cap) {
        uint64_t cap = n->text_cap ? n->text_cap * 2 : 16384;
        while (cap < n->text_len + len)
            cap *= 2;
        char *t = realloc(n->text, cap);
        if (!t)
            return -1;
        n->text = t;
        n->text_cap = cap;
    }
    return 0;
}

/* Append an entry whose text is the concatenation of up to three pieces;
 * returns its number + 1, or 0 if it was not kept. */
static uint32_t insert(slr_names *n, uint64_t key, uint32_t index, const char *a, size_t alen,
                       const char *b, size_t blen, const char *c, size_t clen)
{
    uint64_t slot = 0;
    uint32_t known = find(n, key, &slot);
    if (known)
        return known;
    size_t len = alen + blen + clen;
    if (len > SLR_NAME_MAX)
        len = SLR_NAME_MAX;
    if (n->n >= n->max || reserve(n, len) != 0) {
        n->dropped++;
        return 0;
    }
    find(n, key, &slot); /* the table may have grown */
    char *dst = n->text + n->text_len;
    size_t used = 0;
    const char *parts[3] = {a, b, c};
    size_t lens[3] = {alen, blen, clen};
    for (int k = 0; k < 3 && used < len; k++) {
        size_t take = lens[k] < len - used ? lens[k] : len - used;
        memcpy(dst + used, parts[k], take);
        used += take;
    }
    n->entries[n->n] = (entry){key, index, (uint32_t)len, n->text_len};
    n->text_len += len;
    n->table[slot] = (uint32_t)(++n->n);
    return (uint32_t)n->n;
}

void slr_names_add(slr_names *n, uint64_t key, uint32_t index, const char *name, size_t len)
{
    insert(n, key, index, name, len, NULL, 0, NULL, 0);
}

bool slr_names_lookup(const slr_names *n, uint64_t key, slr_name_ref *out)
{
    uint64_t slot;
    uint32_t i = find(n, key, &slot);
    if (i)
        *out = slr_names_at(n, i - 1);
    return i != 0;
}

slr_name_ref slr_names_at(const slr_names *n, uint64_t i)
{
    const entry *e = &n->entries[i];
    return (slr_name_ref){e->key, e->index, e->len, n->text + e->off};
}

static uint32_t base_name(slr_names *n, const slr_raw_feature *f, uint64_t key, uint32_t index)
{
    uint64_t slot;
    uint32_t known = find(n, key, &slot);
    if (known)
        return known;
    if (f->ns && f->ns_len)
        return insert(n, key, index, f->ns, f->ns_len, "^", 1, f->name, f->name_len);
    return insert(n, key, index, f->name, f->name_len, NULL, 0, NULL, 0);
}

/* "a*b*c" for the --cubic triples, in slr_example_finish() order */
typedef struct triple_names {
    slr_names *n;
    const slr_example *ex;
    uint32_t p; /* position of the next crossed feature */
} triple_names;

static slr_status name_triple(void *ctx, uint32_t i, uint32_t j, uint32_t k)
{
    triple_names *t = ctx;
    slr_names *n = t->n;
    const slr_example *ex = t->ex;
    if (t->p >= ex->n_features)
        return SLR_ERR_ARG; /* cannot happen: finish() made one feature per triple */
    uint32_t p = t->p++;
    uint64_t slot;
    if (!n->base[i] || !n->base[j] || !n->base[k] || find(n, ex->hashes[p], &slot))
        return SLR_OK;
    const entry *e[3] = {&n->entries[n->base[i] - 1], &n->entries[n->base[j] - 1],
                         &n->entries[n->base[k] - 1]};
    /* copy the names out: insert() may move the text */
    char name[3 * SLR_NAME_MAX + 2];
    size_t len = 0;
    for (int x = 0; x < 3; x++) {
        if (x)
            name[len++] = '*';
        memcpy(name + len, n->text + e[x]->off, e[x]->len);
        len += e[x]->len;
    }
    size_t last = e[2]->len;
    insert(n, ex->hashes[p], ex->features[p].index, name, len - last - 1, "*", 1,
           name + len - last, last);
    return SLR_OK;
}

void slr_names_record(slr_names *n, const slr_raw_example *raw, const slr_example *ex)
{
    if (raw->n_features > n->base_cap) {
        uint32_t *b = realloc(n->base, (size_t)raw->n_features * sizeof *b);
        if (!b)
            return;
        n->base = b;
        n->base_cap = raw->n_features;
    }
    /* base features: the nonzero raw features, in order */
    uint32_t nb = 0;
    for (uint32_t i = 0; i < raw->n_features && nb < ex->n_features; i++) {
        const slr_raw_feature *f = &raw->features[i];
        if (f->value == 0.0 || (f->name && slr_hashing_ignores(ex->hashing, f->ns_len
                                                                        ? (unsigned char)f->ns[0]
                                                                        : ' ')))
            continue; /* not in the example (slr_example_add) */
        n->base[nb] = f->name ? base_name(n, f, ex->hashes[nb], ex->features[nb].index) : 0;
        nb++;
    }
    /* -q pairs, in slr_example_finish() order */
    uint32_t p = nb;
    const slr_hashing *h = ex->hashing;
    for (unsigned q = 0; q < h->n_quadratic; q++) {
        unsigned char a = (unsigned char)h->quadratic[q][0], b = (unsigned char)h->quadratic[q][1];
        for (uint32_t sa = 0; sa < ex->n_spans; sa++) {
            if (!slr_ns_matches(a, ex->spans[sa].letter))
                continue; /* the common case: one test per span, not per pair */
            for (uint32_t sb = 0; sb < ex->n_spans; sb++) {
                if (!slr_quadratic_crosses(ex, a, b, sa, sb))
                    continue;
                slr_namespace_span A = ex->spans[sa], B = ex->spans[sb];
                for (uint32_t i = A.begin; i < A.end; i++) {
                    uint32_t j0 = sa == sb ? i + 1 : B.begin;
                    for (uint32_t j = j0; j < B.end && p < ex->n_features; j++, p++) {
                        uint64_t slot;
                        if (!n->base[i] || !n->base[j] || find(n, ex->hashes[p], &slot))
                            continue;
                        const entry *ei = &n->entries[n->base[i] - 1];
                        const entry *ej = &n->entries[n->base[j] - 1];
                        /* copy the two names out: insert() may move the text */
                        char pair[2 * SLR_NAME_MAX];
                        memcpy(pair, n->text + ei->off, ei->len);
                        memcpy(pair + ei->len, n->text + ej->off, ej->len);
                        insert(n, ex->hashes[p], ex->features[p].index, pair, ei->len, "*", 1,
                               pair + ei->len, ej->len);
                    }
                }
            }
        }
    }
    triple_names tn = {n, ex, p};
    for (unsigned c = 0; c < h->n_cubic; c++)
        slr_cubic_walk(ex, h->cubic[c], name_triple, &tn);
}

static int by_index(const void *a, const void *b)
{
    const slr_name_ref *x = a, *y = b;
    if (x->index != y->index)
        return (x->index > y->index) - (x->index < y->index);
    return (x->name > y->name) - (x->name < y->name); /* arena order = first seen */
}

slr_name_ref *slr_names_by_index(const slr_names *n, uint64_t *count)
{
    *count = 0;
    if (!n->n)
        return NULL;
    slr_name_ref *refs = malloc(n->n * sizeof *refs);
    if (!refs)
        return NULL;
    for (uint64_t i = 0; i < n->n; i++)
        refs[i] = slr_names_at(n, i);
    qsort(refs, n->n, sizeof *refs, by_index);
    *count = n->n;
    return refs;
}
