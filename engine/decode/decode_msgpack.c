/* decode_msgpack.c - the native format: one msgpack object per example.
 *
 *   [label, features]            [label, weight, features]
 *   [label, weight, ids, values] (compact, pre-hashed: bins of LE uint32 / float32)
 *   {"label"|"y", "weight"|"w", "tag", "features"|"f", "ids", "values"}
 * docs/FORMAT.md has the full schema.
 *
 * Two steps.  slr_msgpack_scan() (msgpack_scan.h) first walks the bytes to
 * find where the object ends, without allocating, and how much zone memory
 * the unpack will take, so the decoder's zone is sized once and then reused:
 * after warm-up no call allocates.  Then msgpack_unpack() builds the object
 * tree and interpret() maps it onto the raw example.
 *
 * msgpack-c's C unpacker (checked for 4.0: template_callback_str/_bin) makes
 * str and bin objects point into the input buffer rather than copying them,
 * so names, tags and the compact bins are views into the caller's buffer,
 * like in the text formats; the zone holds only the object tree, which is
 * not referenced once the call returns, so it is cleared at once. */
#include <math.h>
#include <msgpack.h>
#include <msgpack/unpack_define.h> /* MSGPACK_EMBED_STACK_SIZE */
#include <stdlib.h>
#include <string.h>

#include "decode/decode_impl.h"
#include "util/msgpack_scan.h"

#define ZONE_INITIAL_CHUNK (64u << 10)
#define ZONE_SLACK 256 /* alignment of the first allocation, rounding */

struct slr_msgpack_state {
    msgpack_zone zone;
    size_t chunk_size;
};

slr_status slr_decode_msgpack_init(slr_decoder *d, slr_error *err)
{
    struct slr_msgpack_state *mp = malloc(sizeof *mp);
    if (!mp || !msgpack_zone_init(&mp->zone, ZONE_INITIAL_CHUNK)) {
        free(mp);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for the msgpack decoder");
    }
    mp->chunk_size = ZONE_INITIAL_CHUNK;
    d->mp = mp;
    return SLR_OK;
}

void slr_decode_msgpack_fini(slr_decoder *d)
{
    if (d->mp) {
        msgpack_zone_destroy(&d->mp->zone);
        free(d->mp);
        d->mp = NULL;
    }
}

/* Grow the zone's chunk so one object's tree fits in it. */
static bool zone_fit(struct slr_msgpack_state *mp, size_t need)
{
    need += ZONE_SLACK;
    if (need <= mp->chunk_size)
        return true;
    size_t chunk = mp->chunk_size;
    while (chunk < need)
        chunk *= 2;
    msgpack_zone fresh;
    if (!msgpack_zone_init(&fresh, chunk))
        return false;
    msgpack_zone_destroy(&mp->zone);
    mp->zone = fresh;
    mp->chunk_size = chunk;
    return true;
}

/* -------------------------------------------------------------- interpret */

static const char default_ns[] = "";

static const char *type_name(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "a bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "an integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return "a float";
    case MSGPACK_OBJECT_STR: return "a string";
    case MSGPACK_OBJECT_ARRAY: return "an array";
    case MSGPACK_OBJECT_MAP: return "a map";
    case MSGPACK_OBJECT_BIN: return "a bin";
    case MSGPACK_OBJECT_EXT: return "an ext";
    }
    return "an unknown type";
}

static bool as_number(const msgpack_object *o, double *out)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; return true;
    default: return false;
    }
}

/* msgpack-c gives an empty str a NULL pointer, but a NULL name means a
 * pre-hashed feature and a NULL tag no tag: empty strings must stay strings. */
static inline const char *str_ptr(const msgpack_object_str *s)
{
    return s->ptr ? s->ptr : "";
}

static inline bool str_is(const msgpack_object_str *s, const char *lit)
{
    size_t n = strlen(lit);
    return s->size == n && !memcmp(s->ptr, lit, n);
}

static slr_decode_result set_label(const msgpack_object *o, slr_raw_example *raw, slr_error *err)
{
    if (o->type == MSGPACK_OBJECT_NIL)
        return SLR_DECODE_EXAMPLE;
    if (o->type == MSGPACK_OBJECT_BOOLEAN)
        raw->label = o->via.boolean ? 1.0 : 0.0;
    else if (!as_number(o, &raw->label))
        return slr_decode_bad(err, "label is %s; expected 0, 1, -1, a bool or nil", type_name(o->type));
    raw->has_label = true;
    return SLR_DECODE_EXAMPLE;
}

static slr_decode_result set_weight(const msgpack_object *o, slr_raw_example *raw, slr_error *err)
{
    if (o->type == MSGPACK_OBJECT_NIL)
        return SLR_DECODE_EXAMPLE;
    if (!as_number(o, &raw->weight))
        return slr_decode_bad(err, "weight is %s; expected a number or nil", type_name(o->type));
    raw->has_weight = true;
    return SLR_DECODE_EXAMPLE;
}

static inline slr_decode_result add(slr_raw_example *raw, const char *ns, size_t ns_len,
                                    const char *name, size_t name_len, uint64_t id, double v,
                                    slr_error *err)
{
    return slr_raw_add(raw, ns, ns_len, name, name_len, id, v, err) == SLR_OK ? SLR_DECODE_EXAMPLE
                                                                             : SLR_DECODE_BAD;
}

/* One entry of the features map whose key is a string. */
static slr_decode_result named_entry(const msgpack_object_str *key, const msgpack_object *val,
                                     slr_raw_example *raw, slr_error *err)
{
    double v;
    slr_decode_result r = SLR_DECODE_EXAMPLE;
    switch (val->type) {
    case MSGPACK_OBJECT_MAP: /* a namespace of named features */
        for (uint32_t i = 0; i < val->via.map.size && r == SLR_DECODE_EXAMPLE; i++) {
            const msgpack_object *k = &val->via.map.ptr[i].key, *x = &val->via.map.ptr[i].val;
            if (k->type != MSGPACK_OBJECT_STR)
                return slr_decode_bad(err, "features[\"%.*s\"] has a key that is %s; names must be strings",
                                      SLR_QUOTE(key->ptr, key->size), type_name(k->type));
            if (!as_number(x, &v))
                return slr_decode_bad(err, "feature \"%.*s\" in namespace \"%.*s\" is %s, not a number",
                                      SLR_QUOTE(k->via.str.ptr, k->via.str.size),
                                      SLR_QUOTE(key->ptr, key->size), type_name(x->type));
            r = add(raw, str_ptr(key), key->size, str_ptr(&k->via.str), k->via.str.size, 0, v, err);
        }
        return r;
    case MSGPACK_OBJECT_ARRAY: /* a namespace of categorical names */
        for (uint32_t i = 0; i < val->via.array.size && r == SLR_DECODE_EXAMPLE; i++) {
            const msgpack_object *x = &val->via.array.ptr[i];
            if (x->type != MSGPACK_OBJECT_STR)
                return slr_decode_bad(err, "features[\"%.*s\"] holds %s; a namespace array holds names (strings)",
                                      SLR_QUOTE(key->ptr, key->size), type_name(x->type));
            r = add(raw, str_ptr(key), key->size, str_ptr(&x->via.str), x->via.str.size, 0, 1.0, err);
        }
        return r;
    case MSGPACK_OBJECT_STR: /* a categorical field: namespace = key */
        return add(raw, str_ptr(key), key->size, str_ptr(&val->via.str), val->via.str.size, 0, 1.0, err);
    case MSGPACK_OBJECT_BOOLEAN:
        if (!val->via.boolean)
            return SLR_DECODE_EXAMPLE;
        return add(raw, default_ns, 0, str_ptr(key), key->size, 0, 1.0, err);
    case MSGPACK_OBJECT_NIL:
        return SLR_DECODE_EXAMPLE; /* a missing value */
    default:
        if (as_number(val, &v))
            return add(raw, default_ns, 0, str_ptr(key), key->size, 0, v, err);
        return slr_decode_bad(err, "features[\"%.*s\"] is %s; expected a number, string, bool, nil, "
                                   "array of names or map of name to number",
                              SLR_QUOTE(key->ptr, key->size), type_name(val->type));
    }
}

static slr_decode_result features(const msgpack_object *f, slr_raw_example *raw, slr_error *err)
{
    slr_decode_result r = SLR_DECODE_EXAMPLE;
    if (f->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < f->via.array.size && r == SLR_DECODE_EXAMPLE; i++) {
            const msgpack_object *x = &f->via.array.ptr[i];
            if (x->type != MSGPACK_OBJECT_STR)
                return slr_decode_bad(err, "features array holds %s; it may hold only names (strings)",
                                      type_name(x->type));
            r = add(raw, default_ns, 0, str_ptr(&x->via.str), x->via.str.size, 0, 1.0, err);
        }
        return r;
    }
    if (f->type != MSGPACK_OBJECT_MAP)
        return slr_decode_bad(err, "features is %s; expected a map or an array of names",
                              type_name(f->type));
    for (uint32_t i = 0; i < f->via.map.size && r == SLR_DECODE_EXAMPLE; i++) {
        const msgpack_object *k = &f->via.map.ptr[i].key, *v = &f->via.map.ptr[i].val;
        double x;
        if (k->type == MSGPACK_OBJECT_STR) {
            r = named_entry(&k->via.str, v, raw, err);
        } else if (k->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            if (!as_number(v, &x))
                return slr_decode_bad(err, "pre-hashed feature %llu is %s, not a number",
                                      (unsigned long long)k->via.u64, type_name(v->type));
            r = add(raw, NULL, 0, NULL, 0, k->via.u64, x, err);
        } else {
            return slr_decode_bad(err, "features has a key that is %s; keys must be strings "
                                       "(names) or non-negative integers (pre-hashed ids)",
                                  type_name(k->type));
        }
    }
    return r;
}

static inline uint32_t le32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

/* The fast path: two bins, no per-feature objects at all. */
static slr_decode_result compact(const msgpack_object *ids, const msgpack_object *values,
                                 slr_raw_example *raw, slr_error *err)
{
    if (ids->type != MSGPACK_OBJECT_BIN || ids->via.bin.size % 4)
        return slr_decode_bad(err, "ids must be a bin of little-endian uint32 (a multiple of 4 bytes); "
                                   "got %s of %u bytes", type_name(ids->type),
                              ids->type == MSGPACK_OBJECT_BIN ? ids->via.bin.size : 0);
    uint32_t n = ids->via.bin.size / 4;
    const char *vals = NULL;
    if (values->type == MSGPACK_OBJECT_BIN) {
        if (values->via.bin.size != ids->via.bin.size)
            return slr_decode_bad(err, "ids holds %u ids but values holds %u bytes (needs %u float32)",
                                  n, values->via.bin.size, n);
        vals = values->via.bin.ptr;
    } else if (values->type != MSGPACK_OBJECT_NIL) {
        return slr_decode_bad(err, "values must be a bin of little-endian float32 or nil; got %s",
                              type_name(values->type));
    }
    if (n == 0)
        return SLR_DECODE_EXAMPLE;
    if (slr_raw_example_grow(raw, n, err) != SLR_OK)
        return SLR_DECODE_BAD;
    slr_raw_feature *out = raw->features + raw->n_features;
    const char *ip = ids->via.bin.ptr;
    for (uint32_t i = 0; i < n; i++) {
        float v = 1.0f;
        if (vals) {
            uint32_t bits = le32(vals + 4 * (size_t)i);
            memcpy(&v, &bits, sizeof v);
        }
        out[i] = (slr_raw_feature){.id = le32(ip + 4 * (size_t)i), .value = v};
    }
    raw->n_features += n;
    return SLR_DECODE_EXAMPLE;
}

static slr_decode_result from_array(const msgpack_object_array *a, slr_raw_example *raw,
                                    slr_error *err)
{
    if (a->size < 2 || a->size > 4)
        return slr_decode_bad(err, "an example array has 2 to 4 elements ([label, features], "
                                   "[label, weight, features] or [label, weight, ids, values]); got %u",
                              a->size);
    slr_decode_result r = set_label(&a->ptr[0], raw, err);
    if (r == SLR_DECODE_EXAMPLE && a->size >= 3)
        r = set_weight(&a->ptr[1], raw, err);
    if (r != SLR_DECODE_EXAMPLE)
        return r;
    if (a->size == 4)
        return compact(&a->ptr[2], &a->ptr[3], raw, err);
    return features(&a->ptr[a->size - 1], raw, err);
}

enum { KEY_LABEL = 1, KEY_WEIGHT = 2, KEY_TAG = 4, KEY_FEATURES = 8, KEY_IDS = 16, KEY_VALUES = 32 };

static int key_bit(const msgpack_object_str *k)
{
    if (str_is(k, "label") || str_is(k, "y"))
        return KEY_LABEL;
    if (str_is(k, "weight") || str_is(k, "w"))
        return KEY_WEIGHT;
    if (str_is(k, "tag"))
        return KEY_TAG;
    if (str_is(k, "features") || str_is(k, "f"))
        return KEY_FEATURES;
    if (str_is(k, "ids"))
        return KEY_IDS;
    if (str_is(k, "values"))
        return KEY_VALUES;
    return 0;
}

static slr_decode_result from_map(const msgpack_object_map *m, slr_raw_example *raw, slr_error *err)
{
    static const msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    const msgpack_object *feats = NULL, *ids = NULL, *values = &nil;
    int seen = 0;
    slr_decode_result r = SLR_DECODE_EXAMPLE;
    for (uint32_t i = 0; i < m->size && r == SLR_DECODE_EXAMPLE; i++) {
        const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR)
            return slr_decode_bad(err, "an example map has a key that is %s; keys are strings",
                                  type_name(k->type));
        int bit = key_bit(&k->via.str);
        if (!bit)
            return slr_decode_bad(err, "unknown key \"%.*s\" in an example map (expected label/y, "
                                       "weight/w, tag, features/f, ids, values)",
                                  SLR_QUOTE(k->via.str.ptr, k->via.str.size));
        if (seen & bit)
            return slr_decode_bad(err, "key \"%.*s\" repeats a field already given",
                                  SLR_QUOTE(k->via.str.ptr, k->via.str.size));
        seen |= bit;
        switch (bit) {
        case KEY_LABEL: r = set_label(v, raw, err); break;
        case KEY_WEIGHT: r = set_weight(v, raw, err); break;
        case KEY_FEATURES: feats = v; break;
        case KEY_IDS: ids = v; break;
        case KEY_VALUES: values = v; break;
        case KEY_TAG:
            if (v->type == MSGPACK_OBJECT_STR) {
                raw->tag = str_ptr(&v->via.str);
                raw->tag_len = v->via.str.size;
            } else if (v->type != MSGPACK_OBJECT_NIL) {
                r = slr_decode_bad(err, "tag is %s; expected a string or nil", type_name(v->type));
            }
            break;
        }
    }
    if (r != SLR_DECODE_EXAMPLE)
        return r;
    if ((seen & KEY_VALUES) && !ids)
        return slr_decode_bad(err, "\"values\" given without \"ids\"");
    if (feats && (r = features(feats, raw, err)) != SLR_DECODE_EXAMPLE)
        return r;
    return ids ? compact(ids, values, raw, err) : SLR_DECODE_EXAMPLE;
}

static slr_decode_result interpret(const msgpack_object *o, slr_raw_example *raw, slr_error *err)
{
    if (o->type == MSGPACK_OBJECT_ARRAY)
        return from_array(&o->via.array, raw, err);
    if (o->type == MSGPACK_OBJECT_MAP)
        return from_map(&o->via.map, raw, err);
    return slr_decode_bad(err, "an example is a msgpack array or map; got %s", type_name(o->type));
}

/* ------------------------------------------------------------ named fast path */

/* msgpack-c's unpacker builds an object per element, about 0.8 us for a
 * 39-feature example here; walking the bytes once costs a fraction of that.
 * The walk below accepts the common shapes -- [label, features] and
 * [label, weight, features] with a features map of namespaces -- and gives
 * exactly the raw example interpret() would; anything else, including every
 * error, makes it give up so that the general path decides. */

typedef struct cursor {
    const unsigned char *b;
    size_t pos, len;
} cursor;

static inline bool cur_need(const cursor *c, size_t n) { return c->len - c->pos >= n; }

#define WALK_INLINE static inline __attribute__((always_inline))

WALK_INLINE bool cur_str(cursor *c, const char **p, uint32_t *n)
{
    if (!cur_need(c, 1))
        return false;
    unsigned t = c->b[c->pos];
    uint64_t size;
    size_t head;
    if (t >= 0xa0 && t <= 0xbf) { /* fixstr: nearly every name */
        size = t & 0x1f;
        if (size >= c->len - c->pos)
            return false;
        *p = (const char *)c->b + c->pos + 1;
        *n = (uint32_t)size;
        c->pos += 1 + (size_t)size;
        return true;
    }
    if (t < 0xd9 || t > 0xdb) /* str8, str16, str32 */
        return false;
    head = 1 + ((size_t)1 << (t - 0xd9));
    if (!cur_need(c, head))
        return false;
    size = be_read(c->b + c->pos + 1, (int)head - 1);
    if (size > c->len - c->pos - head)
        return false;
    *p = (const char *)c->b + c->pos + head;
    *n = (uint32_t)size;
    c->pos += head + (size_t)size;
    return true;
}

/* A number as as_number() reads it: integers and floats of every width. */
WALK_INLINE bool cur_number(cursor *c, double *v)
{
    if (!cur_need(c, 1))
        return false;
    unsigned t = c->b[c->pos];
    if (t <= 0x7f) {
        *v = (double)t;
        c->pos++;
        return true;
    }
    if (t >= 0xe0) {
        *v = (double)(int8_t)t;
        c->pos++;
        return true;
    }
    int n;
    switch (t) {
    case 0xca: case 0xce: case 0xd2: n = 4; break;
    case 0xcb: case 0xcf: case 0xd3: n = 8; break;
    case 0xcc: case 0xd0: n = 1; break;
    case 0xcd: case 0xd1: n = 2; break;
    default: return false;
    }
    if (!cur_need(c, 1 + (size_t)n))
        return false;
    uint64_t u = be_read(c->b + c->pos + 1, n);
    c->pos += 1 + (size_t)n;
    if (t == 0xca) {
        uint32_t bits = (uint32_t)u;
        float f;
        memcpy(&f, &bits, 4);
        *v = f;
    } else if (t == 0xcb) {
        memcpy(v, &u, 8);
    } else if (t >= 0xcc && t <= 0xcf) {
        *v = (double)u;
    } else { /* signed: sign-extend from n bytes */
        int shift = 64 - 8 * n;
        *v = (double)((int64_t)(u << shift) >> shift);
    }
    return true;
}

/* A container header (fixmap/map16/map32 or fixarray/array16/array32). */
static bool cur_header(cursor *c, bool map, uint32_t *n)
{
    if (!cur_need(c, 1))
        return false;
    unsigned t = c->b[c->pos], fix = map ? 0x80 : 0x90, x16 = map ? 0xde : 0xdc;
    if (t >= fix && t <= fix + 15) {
        *n = t & 0x0f;
        c->pos++;
        return true;
    }
    int k = t == x16 ? 2 : t == x16 + 1 ? 4 : 0;
    if (!k || !cur_need(c, 1 + (size_t)k))
        return false;
    *n = (uint32_t)be_read(c->b + c->pos + 1, k);
    c->pos += 1 + (size_t)k;
    /* every element takes a byte at least: a count beyond the bytes is cut off */
    return *n <= c->len - c->pos;
}

/* nil, a bool or a number (set_label) */
static bool cur_label(cursor *c, double *v, bool *has)
{
    if (!cur_need(c, 1))
        return false;
    unsigned t = c->b[c->pos];
    if (t == 0xc0 || t == 0xc2 || t == 0xc3) {
        c->pos++;
        *has = t != 0xc0;
        *v = t == 0xc3 ? 1.0 : 0.0;
        return true;
    }
    *has = true;
    return cur_number(c, v);
}

/* One value of the features map under string key k (named_entry's cases). */
static bool walk_named_entry(cursor *c, const char *k, uint32_t k_len, slr_raw_example *raw)
{
    const char *name;
    uint32_t n, name_len;
    double v;
    if (!cur_need(c, 1))
        return false;
    unsigned t = c->b[c->pos];
    if ((t >= 0x80 && t <= 0x8f) || t == 0xde || t == 0xdf) { /* {name: number} */
        if (!cur_header(c, true, &n))
            return false;
        for (uint32_t i = 0; i < n; i++)
            if (!cur_str(c, &name, &name_len) || !cur_number(c, &v) ||
                slr_raw_add(raw, k, k_len, name, name_len, 0, v, NULL) != SLR_OK)
                return false;
        return true;
    }
    if ((t >= 0x90 && t <= 0x9f) || t == 0xdc || t == 0xdd) { /* [name, ...] */
        if (!cur_header(c, false, &n))
            return false;
        for (uint32_t i = 0; i < n; i++)
            if (!cur_str(c, &name, &name_len) ||
                slr_raw_add(raw, k, k_len, name, name_len, 0, 1.0, NULL) != SLR_OK)
                return false;
        return true;
    }
    if ((t >= 0xa0 && t <= 0xbf) || (t >= 0xd9 && t <= 0xdb)) /* a categorical value */
        return cur_str(c, &name, &name_len) &&
               slr_raw_add(raw, k, k_len, name, name_len, 0, 1.0, NULL) == SLR_OK;
    if (t == 0xc0 || t == 0xc2) { /* nil, false: nothing */
        c->pos++;
        return true;
    }
    if (t == 0xc3) {
        c->pos++;
        return slr_raw_add(raw, default_ns, 0, k, k_len, 0, 1.0, NULL) == SLR_OK;
    }
    return cur_number(c, &v) && slr_raw_add(raw, default_ns, 0, k, k_len, 0, v, NULL) == SLR_OK;
}

/* [label, features] or [label, weight, features] with a features map, into
 * raw (reset first).  True with *consumed set when the whole record was of
 * those shapes and complete in buf. */
static bool walk_named(const slr_decoder *d, const char *buf, size_t len, size_t *consumed,
                       slr_raw_example *raw)
{
    cursor c = {(const unsigned char *)buf, 0, len};
    uint32_t n, entries;
    if (!cur_header(&c, false, &n) || n < 2 || n > 3)
        return false;
    slr_raw_example_reset(raw);
    if (!cur_label(&c, &raw->label, &raw->has_label))
        return false;
    if (n == 3) { /* nil or a number (set_weight) */
        if (cur_need(&c, 1) && c.b[c.pos] == 0xc0)
            c.pos++;
        else if (cur_number(&c, &raw->weight))
            raw->has_weight = true;
        else
            return false;
    }
    if (!cur_header(&c, true, &entries))
        return false;
    for (uint32_t i = 0; i < entries; i++) {
        const char *k;
        uint32_t k_len;
        if (cur_need(&c, 1) && c.b[c.pos] <= 0x7f) { /* a small pre-hashed id */
            uint64_t id = c.b[c.pos++];
            double v;
            if (!cur_number(&c, &v) || slr_raw_add(raw, NULL, 0, NULL, 0, id, v, NULL) != SLR_OK)
                return false;
            continue;
        }
        if (!cur_str(&c, &k, &k_len) || !walk_named_entry(&c, k, k_len, raw))
            return false;
    }
    if (c.pos > d->max_record)
        return false;
    *consumed = c.pos;
    return true;
}

/* ------------------------------------------------------------ compact fast path */

/* A bin header at b[*pos]: its payload and size, if all of it is in b[0, len). */
static bool read_bin(const unsigned char *b, size_t len, size_t *pos, const char **data,
                     uint32_t *size)
{
    if (*pos >= len)
        return false;
    int len_bytes = b[*pos] == 0xc4 ? 1 : b[*pos] == 0xc5 ? 2 : b[*pos] == 0xc6 ? 4 : 0;
    if (!len_bytes || len - *pos - 1 < (size_t)len_bytes)
        return false;
    uint64_t n = be_read(b + *pos + 1, len_bytes);
    *pos += 1 + (size_t)len_bytes;
    if (n > len - *pos)
        return false;
    *data = (const char *)b + *pos;
    *size = (uint32_t)n;
    *pos += (size_t)n;
    return true;
}

bool slr_decode_msgpack_compact(const slr_decoder *d, const char *buf, size_t len,
                                size_t *consumed, slr_raw_compact *out)
{
    const unsigned char *b = (const unsigned char *)buf;
    if (len < 4 || b[0] != 0x94) /* fixarray of 4 */
        return false;
    size_t pos = 1;
    double label = 0.0, weight = 1.0;
    bool has_label = true, has_weight = false;
    switch (b[pos++]) {
    case 0x00: case 0xc2: label = 0.0; break; /* 0, false */
    case 0x01: case 0xc3: label = 1.0; break; /* 1, true */
    case 0xff: label = -1.0; break;
    case 0xc0: has_label = false; break;
    default: return false;
    }
    unsigned c = b[pos++];
    if (c <= 0x7f) {
        weight = c, has_weight = true;
    } else if (c == 0xcb && len - pos >= 8) {
        uint64_t bits = be_read(b + pos, 8);
        memcpy(&weight, &bits, 8);
        pos += 8, has_weight = true;
    } else if (c == 0xca && len - pos >= 4) {
        uint32_t bits = (uint32_t)be_read(b + pos, 4);
        float f;
        memcpy(&f, &bits, 4);
        weight = f, pos += 4, has_weight = true;
    } else if (c != 0xc0) {
        return false;
    }
    const char *ids, *vals = NULL;
    uint32_t ids_size, vals_size;
    if (!read_bin(b, len, &pos, &ids, &ids_size) || ids_size % 4 || pos >= len)
        return false;
    if (b[pos] == 0xc0)
        pos++;
    else if (!read_bin(b, len, &pos, &vals, &vals_size) || vals_size != ids_size)
        return false;
    if (pos > d->max_record)
        return false;

    *out = (slr_raw_compact){.label = label, .weight = weight, .has_label = has_label,
                             .has_weight = has_weight, .ids = (const unsigned char *)ids,
                             .values = (const unsigned char *)vals, .n = ids_size / 4};
    *consumed = pos;
    return true;
}

/* ------------------------------------------------------------------- next */

slr_decode_result slr_decode_msgpack_frame(const char *buf, size_t len, bool at_end,
                                           size_t *consumed)
{
    size_t size = 0, need = 0;
    switch (slr_msgpack_scan((const unsigned char *)buf, len, &size, &need)) {
    case SLR_MSGPACK_COMPLETE:
        *consumed = size;
        return SLR_DECODE_EXAMPLE;
    case SLR_MSGPACK_INCOMPLETE:
        if (!at_end)
            return SLR_DECODE_NEED_MORE;
        break;
    default:
        break;
    }
    *consumed = 1;
    return SLR_DECODE_BAD;
}

slr_decode_result slr_decode_msgpack_next(slr_decoder *d, const char *buf, size_t len, bool at_end,
                                          size_t *consumed, slr_raw_example *raw, slr_error *err)
{
    if (d->fast_paths && walk_named(d, buf, len, consumed, raw))
        return SLR_DECODE_EXAMPLE;
    size_t size = 0, need = 0;
    switch (slr_msgpack_scan((const unsigned char *)buf, len, &size, &need)) {
    case SLR_MSGPACK_INVALID:
        *consumed = 1;
        d->bad_reason = SLR_BAD_JUNK;
        d->bad_resync = true;
        return slr_decode_bad(err, "not msgpack data (byte 0xc1 is never used); skipping a byte");
    case SLR_MSGPACK_INCOMPLETE:
        if (len >= d->max_record) {
            *consumed = 1;
            d->bad_reason = SLR_BAD_TOO_LARGE;
            d->bad_resync = true;
            return slr_decode_bad(err, "msgpack object longer than %zu bytes; skipping a byte",
                                  d->max_record);
        }
        if (!at_end)
            return SLR_DECODE_NEED_MORE;
        *consumed = 1;
        d->bad_reason = SLR_BAD_JUNK;
        d->bad_resync = true;
        return slr_decode_bad(err, "truncated msgpack object (%zu bytes left); skipping a byte", len);
    case SLR_MSGPACK_COMPLETE:
        break;
    }
    *consumed = size;
    if (size > d->max_record) {
        d->bad_reason = SLR_BAD_TOO_LARGE;
        return slr_decode_bad(err, "msgpack object of %zu bytes is longer than the %zu-byte limit",
                              size, d->max_record);
    }
    if (!zone_fit(d->mp, need)) {
        slr_error_set(err, SLR_ERR_NOMEM, "out of memory unpacking a msgpack object of %zu bytes", size);
        return SLR_DECODE_BAD;
    }

    msgpack_object obj;
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack(buf, size, &off, &d->mp->zone, &obj);
    slr_decode_result r;
    if (ur != MSGPACK_UNPACK_SUCCESS || off != size) {
        /* The scan accepted the bytes, so only the unpacker's fixed stack can refuse them. */
        r = slr_decode_bad(err, "msgpack object is nested more than %d levels deep",
                           MSGPACK_EMBED_STACK_SIZE);
    } else {
        slr_raw_example_reset(raw);
        r = interpret(&obj, raw, err);
    }
    msgpack_zone_clear(&d->mp->zone);
    return r;
}
