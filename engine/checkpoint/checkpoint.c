/* checkpoint.c - encoding and decoding of checkpoints (see checkpoint.h).
 *
 * The body is one msgpack map so that it stays self-describing and can grow
 * fields; the bulk (weights, penalty history) is in msgpack bin blobs of
 * fixed-width little-endian records, because packing 16M weights as msgpack
 * objects would cost seconds and the loader would allocate per weight.
 * Weights are streamed from the table straight into the file; nothing of
 * model size is buffered.  Only slots with state (w != 0 or g2 != 0) are
 * stored. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint_impl.h"
#include "decode/msgpack_scan.h"
#include "learner/learner_impl.h"

static const char MAGIC[8] = {'S', 'T', 'R', 'E', 'A', 'M', 'L', 'R'};
#define WEIGHT_RECORD 20 /* u32 index, f64 w, f32 g2, u32 stamp */

/* ------------------------------------------------------------ job state */

void slr_job_state_init(slr_job_state *st)
{
    memset(st, 0, sizeof *st);
    slr_metrics_init(&st->metrics);
    st->file.line = 1;
}

void slr_job_state_free(slr_job_state *st)
{
    free(st->format);
    for (uint32_t i = 0; i < st->n_files; i++)
        free(st->files[i]);
    free(st->files);
    for (uint32_t i = 0; i < st->n_kafka; i++)
        free(st->kafka[i].topic);
    free(st->kafka);
    free(st->dead_letter.kind);
    free(st->dead_letter.name);
    slr_auc_window_destroy(st->window);
    slr_auc_histogram_destroy(st->histogram);
    slr_names_destroy(st->names);
    slr_job_state_init(st);
}

slr_status slr_job_state_set_files(slr_job_state *st, const char *const *files, uint32_t n,
                                   slr_error *err)
{
    for (uint32_t i = 0; i < st->n_files; i++)
        free(st->files[i]);
    free(st->files);
    st->files = calloc(n ? n : 1, sizeof *st->files);
    st->n_files = 0;
    if (!st->files)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        if (!(st->files[i] = strdup(files[i])))
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
        st->n_files = i + 1;
    }
    st->source = SLR_SOURCE_FILES;
    return SLR_OK;
}

slr_status slr_job_state_copy(slr_job_state *dst, const slr_job_state *src, slr_error *err)
{
    *dst = *src;
    dst->format = NULL;
    dst->files = NULL;
    dst->n_files = 0;
    dst->kafka = NULL;
    dst->n_kafka = 0;
    dst->window = NULL; /* the metrics objects are not copied */
    dst->histogram = NULL;
    dst->names = NULL;
    dst->dead_letter.kind = NULL;
    dst->dead_letter.name = NULL;
    if (src->format && !(dst->format = strdup(src->format)))
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    if (src->n_files) {
        slr_status st = slr_job_state_set_files(dst, (const char *const *)src->files,
                                                src->n_files, err);
        dst->source = src->source;
        if (st != SLR_OK)
            return st;
    }
    for (uint32_t i = 0; i < src->n_kafka; i++) {
        slr_status st = slr_job_state_set_kafka_offset(dst, src->kafka[i].topic,
                                                       src->kafka[i].partition,
                                                       src->kafka[i].offset, err);
        if (st != SLR_OK)
            return st;
    }
    if ((src->dead_letter.kind && !(dst->dead_letter.kind = strdup(src->dead_letter.kind))) ||
        (src->dead_letter.name && !(dst->dead_letter.name = strdup(src->dead_letter.name))))
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    dst->source = src->source;
    return SLR_OK;
}

int64_t slr_job_state_kafka_offset(const slr_job_state *st, const char *topic, int32_t partition)
{
    for (uint32_t i = 0; i < st->n_kafka; i++)
        if (st->kafka[i].partition == partition && !strcmp(st->kafka[i].topic, topic))
            return st->kafka[i].offset;
    return -1;
}

slr_status slr_job_state_set_kafka_offset(slr_job_state *st, const char *topic, int32_t partition,
                                          int64_t offset, slr_error *err)
{
    st->source = SLR_SOURCE_KAFKA;
    for (uint32_t i = 0; i < st->n_kafka; i++)
        if (st->kafka[i].partition == partition && !strcmp(st->kafka[i].topic, topic)) {
            st->kafka[i].offset = offset;
            return SLR_OK;
        }
    slr_kafka_offset *k = realloc(st->kafka, (st->n_kafka + 1) * sizeof *k);
    if (!k)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    st->kafka = k;
    char *t = strdup(topic);
    if (!t)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    st->kafka[st->n_kafka++] = (slr_kafka_offset){t, partition, offset};
    return SLR_OK;
}

/* ------------------------------------------------------------ encoding */

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static void put_f64(unsigned char *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(p, v);
}
static double get_f64(const unsigned char *p)
{
    uint64_t v = get_u64(p);
    double d;
    memcpy(&d, &v, 8);
    return d;
}
static void put_f32(unsigned char *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(p, v);
}
static float get_f32(const unsigned char *p)
{
    uint32_t v = get_u32(p);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

static int write_cb(void *data, const char *buf, size_t len)
{
    slr_atomic_file_write(data, buf, len);
    return 0;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s ? s : "", n);
}

static void pack_key(msgpack_packer *pk, const char *k) { pack_str(pk, k); }

static void pack_learner(msgpack_packer *pk, slr_atomic_file *f, const slr_learner *l)
{
    const slr_learner_config *c = &l->cfg;
    bool ignores = slr_hashing_ignores_any(&c->hashing);
    bool linear = c->hashing.any_ignored_linear;
    unsigned cubic = c->hashing.n_cubic > 0;
    msgpack_pack_map(pk, 17 + ignores + linear + c->noconstant + cubic);
    if (linear) { /* only then: a model without it reads as before */
        pack_key(pk, "ignore_linear");
        msgpack_pack_bin(pk, sizeof c->hashing.ignored_linear);
        msgpack_pack_bin_body(pk, c->hashing.ignored_linear, sizeof c->hashing.ignored_linear);
    }
    if (cubic) { /* only then: a model without it reads as before */
        pack_key(pk, "cubic");
        msgpack_pack_array(pk, c->hashing.n_cubic);
        for (unsigned i = 0; i < c->hashing.n_cubic; i++) {
            msgpack_pack_str(pk, 3);
            msgpack_pack_str_body(pk, c->hashing.cubic[i], 3);
        }
    }
    if (c->noconstant) { /* only then: a model without it reads as before */
        pack_key(pk, "noconstant");
        msgpack_pack_true(pk);
    }
    if (ignores) { /* only then: a model without it reads as before */
        pack_key(pk, "ignore");
        msgpack_pack_bin(pk, sizeof c->hashing.ignored);
        msgpack_pack_bin_body(pk, c->hashing.ignored, sizeof c->hashing.ignored);
    }
    pack_key(pk, "bits");
    msgpack_pack_uint32(pk, c->hashing.bits);
    pack_key(pk, "quadratic");
    msgpack_pack_array(pk, c->hashing.n_quadratic);
    for (unsigned i = 0; i < c->hashing.n_quadratic; i++) {
        msgpack_pack_str(pk, 2);
        msgpack_pack_str_body(pk, c->hashing.quadratic[i], 2);
    }
    pack_key(pk, "schedule");
    pack_str(pk, slr_schedule_name(c->schedule));
    pack_key(pk, "eta");
    msgpack_pack_double(pk, c->eta);
    pack_key(pk, "power_t");
    msgpack_pack_double(pk, c->power_t);
    pack_key(pk, "initial_t");
    msgpack_pack_double(pk, c->initial_t);
    pack_key(pk, "adagrad_delta");
    msgpack_pack_double(pk, c->adagrad_delta);
    pack_key(pk, "l1");
    msgpack_pack_double(pk, c->l1);
    pack_key(pk, "l2");
    msgpack_pack_double(pk, c->l2);
    pack_key(pk, "tg_period");
    msgpack_pack_uint32(pk, c->tg_period);
    pack_key(pk, "tg_threshold");
    msgpack_pack_double(pk, c->tg_threshold);
    pack_key(pk, "eager");
    c->eager ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    pack_key(pk, "step");
    msgpack_pack_uint64(pk, l->step);
    pack_key(pk, "epoch");
    msgpack_pack_uint64(pk, l->epoch);
    pack_key(pk, "bias");
    const slr_slot *bias = &l->slots[l->n_slots];
    msgpack_pack_array(pk, 2);
    msgpack_pack_double(pk, bias->w);
    msgpack_pack_double(pk, bias->g2);

    pack_key(pk, "weights");
    uint64_t n = 0;
    for (uint64_t j = 0; j < l->n_slots; j++)
        n += l->slots[j].w != 0.0 || l->slots[j].g2 != 0.0f;
    msgpack_pack_bin(pk, (size_t)(n * WEIGHT_RECORD));
    unsigned char chunk[WEIGHT_RECORD * 1024];
    size_t used = 0;
    for (uint64_t j = 0; j < l->n_slots; j++) {
        const slr_slot *s = &l->slots[j];
        if (s->w == 0.0 && s->g2 == 0.0f)
            continue;
        unsigned char *r = chunk + used;
        put_u32(r, (uint32_t)j);
        put_f64(r + 4, s->w);
        put_f32(r + 12, s->g2);
        put_u32(r + 16, s->stamp);
        used += WEIGHT_RECORD;
        if (used == sizeof chunk) {
            slr_atomic_file_write(f, chunk, used);
            used = 0;
        }
    }
    slr_atomic_file_write(f, chunk, used);

    pack_key(pk, "history");
    if (!l->use_history) {
        msgpack_pack_nil(pk);
    } else {
        msgpack_pack_map(pk, 3);
        pack_key(pk, "base");
        msgpack_pack_uint64(pk, l->hist.base);
        const double *cols[2] = {l->hist.log_p, l->hist.c};
        const char *names[2] = {"log_p", "c"};
        for (int k = 0; k < 2; k++) {
            pack_key(pk, names[k]);
            msgpack_pack_bin(pk, l->hist.len * 8);
            for (size_t i = 0; i < l->hist.len; i++) {
                unsigned char b[8];
                put_f64(b, cols[k][i]);
                slr_atomic_file_write(f, b, 8);
            }
        }
    }
}

#define WINDOW_RECORD 25    /* f64 p, f64 weight, f64 loss, u8 y */
#define HISTOGRAM_RECORD 20 /* u32 bin, f64 positive weight, f64 negative weight */

#define NAME_HEADER 14          /* u64 key, u32 index, u16 length, then the bytes */
#define RECORD_MAX (NAME_HEADER + SLR_NAME_MAX)

/* Write a bin blob of `bytes` bytes made of n records produced one at a time
 * by `fill` (each at most RECORD_MAX bytes), through a fixed buffer: like
 * the weights, nothing of the data's size is buffered. */
typedef size_t (*record_fn)(void *src, uint64_t i, unsigned char *out);
static void pack_records(msgpack_packer *pk, slr_atomic_file *f, void *src, uint64_t n,
                         uint64_t bytes, record_fn fill)
{
    msgpack_pack_bin(pk, (size_t)bytes);
    unsigned char chunk[1024 * 32];
    size_t used = 0;
    for (uint64_t i = 0; i < n; i++) {
        used += fill(src, i, chunk + used);
        if (used + RECORD_MAX > sizeof chunk) {
            slr_atomic_file_write(f, chunk, used);
            used = 0;
        }
    }
    slr_atomic_file_write(f, chunk, used);
}

static size_t window_record(void *src, uint64_t i, unsigned char *r)
{
    const slr_scored *s = slr_auc_window_at(src, (uint32_t)i);
    put_f64(r, s->p);
    put_f64(r + 8, s->weight);
    put_f64(r + 16, s->loss);
    r[24] = s->y > 0.5;
    return WINDOW_RECORD;
}

/* the histogram's nonzero bins, found by a cursor the caller resets */
typedef struct histogram_cursor {
    const slr_auc_histogram *h;
    uint32_t bin;
} histogram_cursor;

static uint64_t histogram_nonzero(const slr_auc_histogram *h)
{
    uint64_t n = 0;
    for (uint32_t b = 0; b < SLR_AUC_HISTOGRAM_BINS; b++)
        n += h->pos[b] != 0 || h->neg[b] != 0;
    return n;
}

static size_t histogram_record(void *src, uint64_t i, unsigned char *r)
{
    histogram_cursor *c = src;
    (void)i;
    while (c->h->pos[c->bin] == 0 && c->h->neg[c->bin] == 0)
        c->bin++;
    put_u32(r, c->bin);
    put_f64(r + 4, c->h->pos[c->bin]);
    put_f64(r + 12, c->h->neg[c->bin]);
    c->bin++;
    return HISTOGRAM_RECORD;
}

static void pack_metrics(msgpack_packer *pk, slr_atomic_file *f, const slr_job_state *st)
{
    const slr_metrics *m = &st->metrics;
    uint32_t reasons = 0;
    for (int r = 0; r < SLR_BAD_REASON_COUNT; r++)
        reasons += m->rejected[r] != 0;
    msgpack_pack_map(pk, 8 + (reasons > 0) + (m->lost > 0) + (st->window ? 2 : 0) +
                             (st->histogram ? 2 : 0));
    pack_key(pk, "examples");
    msgpack_pack_uint64(pk, m->examples);
    pack_key(pk, "weight");
    msgpack_pack_double(pk, m->weight);
    pack_key(pk, "loss");
    msgpack_pack_double(pk, m->loss);
    pack_key(pk, "positives");
    msgpack_pack_double(pk, m->positives);
    pack_key(pk, "predicted");
    msgpack_pack_double(pk, m->predicted);
    pack_key(pk, "features");
    msgpack_pack_uint64(pk, m->features);
    pack_key(pk, "bad");
    msgpack_pack_uint64(pk, m->bad);
    pack_key(pk, "unlabelled");
    msgpack_pack_uint64(pk, m->unlabelled);
    if (m->lost > 0) { /* Kafka offsets deleted by retention before they were consumed */
        pack_key(pk, "lost");
        msgpack_pack_uint64(pk, m->lost);
    }
    if (reasons > 0) {
        pack_key(pk, "rejected");
        msgpack_pack_map(pk, reasons);
        for (int r = 0; r < SLR_BAD_REASON_COUNT; r++)
            if (m->rejected[r]) {
                pack_str(pk, slr_bad_reason_name((slr_bad_reason)r));
                msgpack_pack_uint64(pk, m->rejected[r]);
            }
    }
    if (st->window) {
        pack_key(pk, "window_capacity");
        msgpack_pack_uint32(pk, st->window->capacity);
        pack_key(pk, "window");
        pack_records(pk, f, st->window, st->window->size,
                     (uint64_t)st->window->size * WINDOW_RECORD, window_record);
    }
    if (st->histogram) {
        pack_key(pk, "auc_histogram_scheme");
        pack_str(pk, SLR_AUC_HISTOGRAM_SCHEME);
        pack_key(pk, "auc_histogram");
        histogram_cursor c = {st->histogram, 0};
        uint64_t n = histogram_nonzero(st->histogram);
        pack_records(pk, f, &c, n, n * HISTOGRAM_RECORD, histogram_record);
    }
}

static size_t name_record(void *src, uint64_t i, unsigned char *r)
{
    slr_name_ref ref = slr_names_at(src, i);
    put_u64(r, ref.key);
    put_u32(r + 8, ref.index);
    r[12] = (unsigned char)(ref.len & 0xff);
    r[13] = (unsigned char)(ref.len >> 8);
    memcpy(r + NAME_HEADER, ref.name, ref.len);
    return NAME_HEADER + ref.len;
}

static void pack_names(msgpack_packer *pk, slr_atomic_file *f, slr_names *n)
{
    uint64_t count = slr_names_count(n), bytes = 0;
    for (uint64_t i = 0; i < count; i++)
        bytes += NAME_HEADER + slr_names_at(n, i).len;
    msgpack_pack_map(pk, 3);
    pack_key(pk, "max");
    msgpack_pack_uint64(pk, slr_names_max(n));
    pack_key(pk, "dropped");
    msgpack_pack_uint64(pk, slr_names_dropped(n));
    pack_key(pk, "entries");
    pack_records(pk, f, n, count, bytes, name_record);
}

static void pack_dead_letter(msgpack_packer *pk, const slr_dead_letter_mark *d)
{
    msgpack_pack_map(pk, 3);
    pack_key(pk, "kind");
    pack_str(pk, d->kind);
    pack_key(pk, "name");
    pack_str(pk, d->name);
    pack_key(pk, "position");
    msgpack_pack_uint64(pk, d->position);
}

static void pack_source(msgpack_packer *pk, const slr_job_state *st)
{
    msgpack_pack_map(pk, 8);
    pack_key(pk, "kind");
    pack_str(pk, st->source == SLR_SOURCE_FILES ? "files"
                 : st->source == SLR_SOURCE_KAFKA ? "kafka"
                                                  : "none");
    pack_key(pk, "format");
    pack_str(pk, st->format ? st->format : "");
    pack_key(pk, "files");
    msgpack_pack_array(pk, st->n_files);
    for (uint32_t i = 0; i < st->n_files; i++)
        pack_str(pk, st->files[i]);
    pack_key(pk, "file_index");
    msgpack_pack_uint32(pk, st->file.file_index);
    pack_key(pk, "offset");
    msgpack_pack_uint64(pk, st->file.offset);
    pack_key(pk, "line");
    msgpack_pack_uint64(pk, st->file.line);
    pack_key(pk, "records");
    msgpack_pack_uint64(pk, st->file.records);
    pack_key(pk, "kafka");
    msgpack_pack_array(pk, st->n_kafka);
    for (uint32_t i = 0; i < st->n_kafka; i++) {
        msgpack_pack_array(pk, 3);
        pack_str(pk, st->kafka[i].topic);
        msgpack_pack_int32(pk, st->kafka[i].partition);
        msgpack_pack_int64(pk, st->kafka[i].offset);
    }
}

void slr_checkpoint_write_to(slr_atomic_file *f, const slr_learner *l, const slr_job_state *st)
{
    slr_atomic_file_write(f, MAGIC, sizeof MAGIC);
    msgpack_packer pk;
    msgpack_packer_init(&pk, f, write_cb);
    msgpack_pack_map(&pk, 7 + (st->names != NULL) + (st->dead_letter.kind != NULL));
    pack_key(&pk, "format_version");
    msgpack_pack_uint32(&pk, SLR_CHECKPOINT_FORMAT_VERSION);
    pack_key(&pk, "writer");
    pack_str(&pk, "streamlr " PACKAGE_VERSION);
    pack_key(&pk, "created");
    msgpack_pack_double(&pk, st->created);
    pack_key(&pk, "sequence");
    msgpack_pack_uint64(&pk, st->sequence);
    pack_key(&pk, "learner");
    pack_learner(&pk, f, l);
    pack_key(&pk, "metrics");
    pack_metrics(&pk, f, st);
    pack_key(&pk, "source");
    pack_source(&pk, st);
    if (st->names) {
        pack_key(&pk, "names");
        pack_names(&pk, f, st->names);
    }
    if (st->dead_letter.kind) {
        pack_key(&pk, "dead_letters");
        pack_dead_letter(&pk, &st->dead_letter);
    }
    unsigned char sum[8];
    uint64_t digest = slr_atomic_file_digest(f);
    for (int i = 0; i < 8; i++) /* big-endian, as written in docs/CHECKPOINT.md */
        sum[i] = (unsigned char)(digest >> (56 - 8 * i));
    slr_atomic_file_write(f, sum, sizeof sum);
}

slr_status slr_checkpoint_write(const char *path, const slr_learner *l, const slr_job_state *st,
                                slr_error *err)
{
    slr_atomic_file f;
    slr_status rc = slr_atomic_file_open(&f, path, err);
    if (rc != SLR_OK)
        return rc;
    slr_checkpoint_write_to(&f, l, st);
    return slr_atomic_file_commit(&f, err);
}

/* ------------------------------------------------------------ decoding */

typedef struct reader {
    const char *path;
    slr_error *err;
} reader;

static slr_status corrupt(reader *r, const char *what)
{
    return slr_error_set(r->err, SLR_ERR_CORRUPT, "%s: %s", r->path, what);
}

static const msgpack_object *field(const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == n &&
            !memcmp(kv->key.via.str.ptr, key, n))
            return &kv->val;
    }
    return NULL;
}

static bool get_uint(const msgpack_object *map, const char *key, uint64_t *out)
{
    const msgpack_object *o = field(map, key);
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *out = o->via.u64;
    return true;
}

static bool get_int(const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        *out = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = o->via.i64;
    else
        return false;
    return true;
}

static bool get_double(const msgpack_object *map, const char *key, double *out)
{
    const msgpack_object *o = field(map, key);
    if (!o)
        return false;
    if (o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32)
        *out = o->via.f64;
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        *out = (double)o->via.u64;
    else
        return false;
    return true;
}

static char *dup_str(const msgpack_object *o)
{
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return NULL;
    char *s = malloc(o->via.str.size + 1);
    if (s) {
        memcpy(s, o->via.str.ptr, o->via.str.size);
        s[o->via.str.size] = '\0';
    }
    return s;
}

static slr_status read_config(reader *r, const msgpack_object *L, slr_learner_config *c)
{
    uint64_t bits, period;
    slr_learner_config_defaults(c);
    if (!get_uint(L, "bits", &bits) || bits < SLR_BITS_MIN || bits > SLR_BITS_MAX)
        return corrupt(r, "learner.bits missing or out of range");
    slr_hashing_init(&c->hashing, (unsigned)bits);
    const msgpack_object *q = field(L, "quadratic");
    if (!q || q->type != MSGPACK_OBJECT_ARRAY || q->via.array.size > SLR_MAX_QUADRATIC)
        return corrupt(r, "learner.quadratic missing or malformed");
    for (uint32_t i = 0; i < q->via.array.size; i++) {
        const msgpack_object *p = &q->via.array.ptr[i];
        if (p->type != MSGPACK_OBJECT_STR || p->via.str.size != 2)
            return corrupt(r, "learner.quadratic entry is not a 2-letter string");
        char pair[3] = {p->via.str.ptr[0], p->via.str.ptr[1], 0};
        if (slr_hashing_add_quadratic(&c->hashing, pair, NULL) != SLR_OK)
            return corrupt(r, "learner.quadratic entry is invalid");
    }
    const msgpack_object *cu = field(L, "cubic"); /* optional: --cubic */
    if (cu && (cu->type != MSGPACK_OBJECT_ARRAY || cu->via.array.size > SLR_MAX_CUBIC))
        return corrupt(r, "learner.cubic malformed");
    for (uint32_t i = 0; cu && i < cu->via.array.size; i++) {
        const msgpack_object *t = &cu->via.array.ptr[i];
        if (t->type != MSGPACK_OBJECT_STR || t->via.str.size != 3)
            return corrupt(r, "learner.cubic entry is not a 3-letter string");
        char triple[4] = {t->via.str.ptr[0], t->via.str.ptr[1], t->via.str.ptr[2], 0};
        if (slr_hashing_add_cubic(&c->hashing, triple, NULL) != SLR_OK)
            return corrupt(r, "learner.cubic entry is invalid");
    }
    const msgpack_object *ign = field(L, "ignore"); /* optional: --ignore / --keep */
    if (ign && (ign->type != MSGPACK_OBJECT_BIN || ign->via.bin.size != sizeof c->hashing.ignored))
        return corrupt(r, "learner.ignore is not a 32-byte bitmap");
    if (ign)
        memcpy(c->hashing.ignored, ign->via.bin.ptr, sizeof c->hashing.ignored);
    const msgpack_object *lin = field(L, "ignore_linear"); /* optional: --ignore_linear */
    if (lin && (lin->type != MSGPACK_OBJECT_BIN ||
                lin->via.bin.size != sizeof c->hashing.ignored_linear))
        return corrupt(r, "learner.ignore_linear is not a 32-byte bitmap");
    for (int b = 0; lin && b < 256; b++)
        slr_hashing_ignore_linear(&c->hashing, (unsigned char)b,
                                  slr_letter_in((const uint8_t *)lin->via.bin.ptr, (unsigned char)b));
    char *sched = dup_str(field(L, "schedule"));
    slr_status st = sched ? slr_schedule_parse(sched, &c->schedule, NULL) : SLR_ERR_ARG;
    free(sched);
    if (st != SLR_OK)
        return corrupt(r, "learner.schedule missing or unknown");
    if (!get_double(L, "eta", &c->eta) || !get_double(L, "power_t", &c->power_t) ||
        !get_double(L, "initial_t", &c->initial_t) ||
        !get_double(L, "adagrad_delta", &c->adagrad_delta) || !get_double(L, "l1", &c->l1) ||
        !get_double(L, "l2", &c->l2) || !get_double(L, "tg_threshold", &c->tg_threshold) ||
        !get_uint(L, "tg_period", &period) || period > UINT32_MAX)
        return corrupt(r, "a learner hyperparameter is missing or not a number");
    c->tg_period = (uint32_t)period;
    const msgpack_object *eager = field(L, "eager");
    if (!eager || eager->type != MSGPACK_OBJECT_BOOLEAN)
        return corrupt(r, "learner.eager missing");
    c->eager = eager->via.boolean;
    const msgpack_object *nc = field(L, "noconstant"); /* optional: VW's --noconstant */
    if (nc && nc->type != MSGPACK_OBJECT_BOOLEAN)
        return corrupt(r, "learner.noconstant is not a boolean");
    c->noconstant = nc && nc->via.boolean;
    slr_error verr;
    if (slr_learner_config_validate(c, &verr) != SLR_OK)
        return slr_error_set(r->err, SLR_ERR_CORRUPT, "%s: invalid hyperparameters: %s", r->path,
                             verr.msg);
    return SLR_OK;
}

static slr_status read_learner(reader *r, const msgpack_object *L, slr_learner **out)
{
    slr_learner_config cfg;
    slr_status st = read_config(r, L, &cfg);
    if (st != SLR_OK)
        return st;
    uint64_t step, epoch;
    if (!get_uint(L, "step", &step) || !get_uint(L, "epoch", &epoch) || epoch > step ||
        step - epoch >= UINT32_MAX)
        return corrupt(r, "learner.step/epoch missing or inconsistent");
    const msgpack_object *bias = field(L, "bias");
    if (!bias || bias->type != MSGPACK_OBJECT_ARRAY || bias->via.array.size != 2 ||
        bias->via.array.ptr[0].type != MSGPACK_OBJECT_FLOAT64 ||
        bias->via.array.ptr[1].type != MSGPACK_OBJECT_FLOAT64)
        return corrupt(r, "learner.bias missing or malformed");
    const msgpack_object *weights = field(L, "weights");
    if (!weights || weights->type != MSGPACK_OBJECT_BIN ||
        weights->via.bin.size % WEIGHT_RECORD != 0)
        return corrupt(r, "learner.weights missing or not a whole number of records");

    slr_learner *l;
    slr_error cerr;
    if ((st = slr_learner_create(&l, &cfg, &cerr)) != SLR_OK)
        return slr_error_set(r->err, st, "%s: %s", r->path, cerr.msg);
    l->step = step;
    l->epoch = epoch;
    l->slots[l->n_slots].w = bias->via.array.ptr[0].via.f64;
    double bias_g2 = bias->via.array.ptr[1].via.f64;
    if (!(fabs(l->slots[l->n_slots].w) <= SLR_MAX_ABS_WEIGHT) || !(bias_g2 >= 0 && bias_g2 <= FLT_MAX))
        goto bad_weight;
    l->slots[l->n_slots].g2 = (float)bias_g2;

    const unsigned char *p = (const unsigned char *)weights->via.bin.ptr;
    size_t n = weights->via.bin.size / WEIGHT_RECORD;
    int64_t prev = -1;
    for (size_t i = 0; i < n; i++, p += WEIGHT_RECORD) {
        uint32_t j = get_u32(p);
        if ((uint64_t)j >= l->n_slots || (int64_t)j <= prev) {
            slr_learner_destroy(l);
            return corrupt(r, "learner.weights has an index out of range or out of order");
        }
        prev = j;
        slr_slot *s = &l->slots[j];
        s->w = get_f64(p + 4);
        s->g2 = get_f32(p + 12);
        s->stamp = get_u32(p + 16);
        if (!(fabs(s->w) <= SLR_MAX_ABS_WEIGHT) || !isfinite(s->g2) || s->g2 < 0 ||
            epoch + s->stamp > step)
            goto bad_weight;
    }

    const msgpack_object *h = field(L, "history");
    if (l->use_history) {
        uint64_t base;
        const msgpack_object *lp = h ? field(h, "log_p") : NULL, *c = h ? field(h, "c") : NULL;
        if (!h || !get_uint(h, "base", &base) || !lp || !c || lp->type != MSGPACK_OBJECT_BIN ||
            c->type != MSGPACK_OBJECT_BIN || lp->via.bin.size != c->via.bin.size ||
            lp->via.bin.size % 8 || lp->via.bin.size / 8 > l->hist.cap ||
            lp->via.bin.size / 8 == 0 || base != epoch || base + lp->via.bin.size / 8 - 1 != step) {
            slr_learner_destroy(l);
            return corrupt(r, "learner.history missing or inconsistent with the step counter");
        }
        l->hist.base = base;
        l->hist.len = lp->via.bin.size / 8;
        for (size_t i = 0; i < l->hist.len; i++) {
            double lpi = get_f64((const unsigned char *)lp->via.bin.ptr + 8 * i);
            double ci = get_f64((const unsigned char *)c->via.bin.ptr + 8 * i);
            /* the catch-up searches these sums and relies on their order */
            bool ok = i == 0 ? lpi == 0.0 && ci == 0.0
                             : isfinite(lpi) && isfinite(ci) && lpi <= l->hist.log_p[i - 1] &&
                                   ci >= l->hist.c[i - 1];
            if (!ok) {
                slr_learner_destroy(l);
                return corrupt(r, "learner.history is not a valid sequence of running sums");
            }
            l->hist.log_p[i] = lpi;
            l->hist.c[i] = ci;
        }
    } else if (!h || h->type != MSGPACK_OBJECT_NIL) {
        slr_learner_destroy(l);
        return corrupt(r, "learner.history present for a learner that keeps none");
    }
    *out = l;
    return SLR_OK;

bad_weight:
    slr_learner_destroy(l);
    return corrupt(r, "learner.weights holds a non-finite or inconsistent value");
}

static slr_status read_window(reader *r, const msgpack_object *M, slr_job_state *st)
{
    const msgpack_object *win = field(M, "window");
    uint64_t capacity;
    if (!win)
        return SLR_OK; /* written without a window (or by an older streamlr) */
    if (win->type != MSGPACK_OBJECT_BIN || win->via.bin.size % WINDOW_RECORD ||
        !get_uint(M, "window_capacity", &capacity) || capacity < 1 ||
        capacity > SLR_AUC_WINDOW_MAX || win->via.bin.size / WINDOW_RECORD > capacity)
        return corrupt(r, "metrics.window malformed");
    if (slr_auc_window_create(&st->window, (uint32_t)capacity, NULL) != SLR_OK)
        return slr_error_set(r->err, SLR_ERR_NOMEM, "out of memory for the AUC window");
    const unsigned char *p = (const unsigned char *)win->via.bin.ptr;
    for (size_t i = 0; i < win->via.bin.size / WINDOW_RECORD; i++, p += WINDOW_RECORD) {
        double pr = get_f64(p), w = get_f64(p + 8), loss = get_f64(p + 16);
        if (!(pr >= 0 && pr <= 1) || !(w > 0) || !isfinite(w) || !(loss >= 0) || p[24] > 1)
            return corrupt(r, "metrics.window holds an invalid example");
        slr_auc_window_add(st->window, pr, p[24], w, loss);
    }
    return SLR_OK;
}

static slr_status read_histogram(reader *r, const msgpack_object *M, slr_job_state *st)
{
    const msgpack_object *hist = field(M, "auc_histogram");
    if (!hist)
        return SLR_OK;
    char *scheme = dup_str(field(M, "auc_histogram_scheme"));
    bool known = scheme && !strcmp(scheme, SLR_AUC_HISTOGRAM_SCHEME);
    free(scheme);
    if (!known)
        return SLR_OK; /* another binning: the cumulative AUC starts afresh (documented) */
    if (hist->type != MSGPACK_OBJECT_BIN || hist->via.bin.size % HISTOGRAM_RECORD)
        return corrupt(r, "metrics.auc_histogram malformed");
    if (slr_auc_histogram_create(&st->histogram, NULL) != SLR_OK)
        return slr_error_set(r->err, SLR_ERR_NOMEM, "out of memory for the AUC histogram");
    const unsigned char *p = (const unsigned char *)hist->via.bin.ptr;
    for (size_t i = 0; i < hist->via.bin.size / HISTOGRAM_RECORD; i++, p += HISTOGRAM_RECORD) {
        uint32_t b = get_u32(p);
        double pos = get_f64(p + 4), neg = get_f64(p + 12);
        if (b >= SLR_AUC_HISTOGRAM_BINS || !(pos >= 0) || !(neg >= 0) || !isfinite(pos + neg))
            return corrupt(r, "metrics.auc_histogram holds an invalid bin");
        st->histogram->pos[b] = pos;
        st->histogram->neg[b] = neg;
    }
    return SLR_OK;
}

static slr_status read_metrics(reader *r, const msgpack_object *M, slr_job_state *st)
{
    slr_metrics *m = &st->metrics;
    slr_metrics_init(m);
    if (!get_uint(M, "examples", &m->examples) || !get_double(M, "weight", &m->weight) ||
        !get_double(M, "loss", &m->loss) || !get_double(M, "positives", &m->positives) ||
        !get_double(M, "predicted", &m->predicted) || !get_uint(M, "features", &m->features) ||
        !get_uint(M, "bad", &m->bad) || !get_uint(M, "unlabelled", &m->unlabelled))
        return corrupt(r, "metrics missing or malformed");
    /* "lost" came with the Kafka source; older checkpoints lack it (= 0) */
    if (field(M, "lost") && !get_uint(M, "lost", &m->lost))
        return corrupt(r, "metrics.lost malformed");
    /* per-reason counts: absent in checkpoints from before they existed;
     * a reason this version does not know is left out */
    const msgpack_object *rej = field(M, "rejected");
    if (rej && rej->type != MSGPACK_OBJECT_MAP)
        return corrupt(r, "metrics.rejected is not a map");
    for (uint32_t i = 0; rej && i < rej->via.map.size; i++) {
        const msgpack_object *k = &rej->via.map.ptr[i].key, *v = &rej->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return corrupt(r, "metrics.rejected entry malformed");
        slr_bad_reason why = slr_bad_reason_from_name(k->via.str.ptr, k->via.str.size);
        if (why != SLR_BAD_REASON_COUNT)
            m->rejected[why] = v->via.u64;
    }
    const double sums[4] = {m->weight, m->loss, m->positives, m->predicted};
    for (int i = 0; i < 4; i++)
        if (!isfinite(sums[i]) || sums[i] < 0)
            return corrupt(r, "metrics hold a negative or non-finite sum");
    slr_status rc = read_window(r, M, st);
    return rc == SLR_OK ? read_histogram(r, M, st) : rc;
}

static slr_status read_names(reader *r, const msgpack_object *N, slr_job_state *st)
{
    uint64_t max, dropped;
    const msgpack_object *e = field(N, "entries");
    if (!get_uint(N, "max", &max) || !get_uint(N, "dropped", &dropped) || !e ||
        e->type != MSGPACK_OBJECT_BIN)
        return corrupt(r, "names malformed");
    slr_status rc = slr_names_create(&st->names, max, r->err);
    if (rc != SLR_OK)
        return rc == SLR_ERR_ARG ? corrupt(r, "names.max out of range") : rc;
    const unsigned char *p = (const unsigned char *)e->via.bin.ptr, *end = p + e->via.bin.size;
    while (p < end) {
        if (end - p < NAME_HEADER)
            return corrupt(r, "names.entries truncated");
        size_t len = (size_t)p[12] | (size_t)p[13] << 8;
        if (len > SLR_NAME_MAX || (size_t)(end - p) < NAME_HEADER + len)
            return corrupt(r, "names.entries holds an invalid name");
        uint64_t before = slr_names_count(st->names);
        slr_names_add(st->names, get_u64(p), get_u32(p + 8), (const char *)p + NAME_HEADER, len);
        if (slr_names_count(st->names) != before + 1)
            return corrupt(r, "names.entries holds a repeated key or more names than its max");
        p += NAME_HEADER + len;
    }
    slr_names_set_dropped(st->names, dropped);
    return SLR_OK;
}

static slr_status read_source(reader *r, const msgpack_object *S, slr_job_state *st)
{
    char *kind_name = dup_str(field(S, "kind"));
    if (!kind_name)
        return corrupt(r, "source.kind missing");
    slr_source_kind kind = !strcmp(kind_name, "files")   ? SLR_SOURCE_FILES
                           : !strcmp(kind_name, "kafka") ? SLR_SOURCE_KAFKA
                                                         : SLR_SOURCE_NONE;
    free(kind_name);
    st->format = dup_str(field(S, "format"));
    const msgpack_object *files = field(S, "files"), *kafka = field(S, "kafka");
    uint64_t idx, off, line, recs;
    if (!st->format || !files || files->type != MSGPACK_OBJECT_ARRAY || !kafka ||
        kafka->type != MSGPACK_OBJECT_ARRAY || !get_uint(S, "file_index", &idx) ||
        !get_uint(S, "offset", &off) || !get_uint(S, "line", &line) ||
        !get_uint(S, "records", &recs) || idx > UINT32_MAX)
        return corrupt(r, "source position missing or malformed");
    st->files = calloc(files->via.array.size + 1, sizeof *st->files);
    if (!st->files)
        return slr_error_set(r->err, SLR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < files->via.array.size; i++) {
        if (!(st->files[i] = dup_str(&files->via.array.ptr[i])))
            return corrupt(r, "source.files entry is not a string");
        st->n_files = i + 1;
    }
    st->file = (slr_file_position){(uint32_t)idx, off, line, recs};
    for (uint32_t i = 0; i < kafka->via.array.size; i++) {
        const msgpack_object *e = &kafka->via.array.ptr[i];
        int64_t part, offset;
        if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 3 ||
            e->via.array.ptr[0].type != MSGPACK_OBJECT_STR ||
            !get_int(&e->via.array.ptr[1], &part) || !get_int(&e->via.array.ptr[2], &offset) ||
            part < 0 || part > INT32_MAX)
            return corrupt(r, "source.kafka entry malformed");
        char *topic = dup_str(&e->via.array.ptr[0]);
        slr_status s = topic ? slr_job_state_set_kafka_offset(st, topic, (int32_t)part, offset,
                                                              r->err)
                             : SLR_ERR_NOMEM;
        free(topic);
        if (s != SLR_OK)
            return s;
    }
    st->source = kind; /* after set_kafka_offset, which assumes Kafka */
    return SLR_OK;
}

/* Absent in checkpoints from before dead letters existed, nil without a sink. */
static slr_status read_dead_letter(reader *r, const msgpack_object *D, slr_dead_letter_mark *d)
{
    if (!D || D->type == MSGPACK_OBJECT_NIL)
        return SLR_OK;
    d->kind = dup_str(field(D, "kind"));
    d->name = dup_str(field(D, "name"));
    if (!d->kind || !d->name || !get_uint(D, "position", &d->position))
        return corrupt(r, "dead_letters malformed");
    return SLR_OK;
}

static slr_status read_file(const char *path, char **data, size_t *len, slr_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return slr_error_set(err, errno == ENOENT ? SLR_ERR_NOT_FOUND : SLR_ERR_IO,
                             "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return slr_error_set(err, SLR_ERR_IO, "%s is not a regular file", path);
    }
    size_t n = (size_t)sb.st_size, got = 0;
    char *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory reading %s (%zu bytes)", path, n);
    }
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int e = k < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return slr_error_set(err, SLR_ERR_IO, "reading %s failed: %s", path, strerror(e));
        }
        got += (size_t)k;
    }
    close(fd);
    *data = buf;
    *len = n;
    return SLR_OK;
}

slr_status slr_checkpoint_decode(const char *data, size_t len, const char *name,
                                 slr_learner **out, slr_job_state *st, slr_error *err)
{
    *out = NULL;
    reader r = {name, err};
    msgpack_zone zone;
    bool zone_ready = false;
    slr_learner *l = NULL;
    slr_status rc;

    if (len < sizeof MAGIC + 8 || memcmp(data, MAGIC, sizeof MAGIC) != 0) {
        rc = corrupt(&r, "not a streamlr checkpoint (bad magic or too short)");
        goto done;
    }
    uint64_t want = 0;
    for (int i = 0; i < 8; i++)
        want = (want << 8) | (unsigned char)data[len - 8 + i];
    if (XXH3_64bits(data, len - 8) != want) {
        rc = corrupt(&r, "checksum mismatch (truncated or damaged file)");
        goto done;
    }
    const char *b = data + sizeof MAGIC;
    size_t blen = len - sizeof MAGIC - 8, size, need;
    /* A valid checksum only says the bytes are what a writer wrote; the
     * scan bounds what unpacking them can allocate, whoever wrote them. */
    if (slr_msgpack_scan((const unsigned char *)b, blen, &size, &need) != SLR_MSGPACK_COMPLETE ||
        size != blen) {
        rc = corrupt(&r, "body is not one msgpack map");
        goto done;
    }
    if (!msgpack_zone_init(&zone, need + 256)) {
        rc = slr_error_set(err, SLR_ERR_NOMEM, "%s: out of memory (%zu bytes)", name, need);
        goto done;
    }
    zone_ready = true;
    msgpack_object body;
    size_t off = 0;
    if (msgpack_unpack(b, blen, &off, &zone, &body) != MSGPACK_UNPACK_SUCCESS || off != blen ||
        body.type != MSGPACK_OBJECT_MAP) {
        rc = corrupt(&r, "body is not one msgpack map");
        goto done;
    }
    uint64_t version;
    if (!get_uint(&body, "format_version", &version)) {
        rc = corrupt(&r, "format_version missing");
        goto done;
    }
    if (version != SLR_CHECKPOINT_FORMAT_VERSION) {
        rc = slr_error_set(err, SLR_ERR_MISMATCH,
                           "%s: checkpoint format version %llu; this streamlr reads version %d",
                           name, (unsigned long long)version, SLR_CHECKPOINT_FORMAT_VERSION);
        goto done;
    }
    const msgpack_object *L = field(&body, "learner"), *M = field(&body, "metrics"),
                         *S = field(&body, "source");
    if (!L || !M || !S) {
        rc = corrupt(&r, "learner, metrics or source section missing");
        goto done;
    }
    slr_job_state_free(st);
    if (!get_uint(&body, "sequence", &st->sequence) || !get_double(&body, "created", &st->created)) {
        rc = corrupt(&r, "sequence or created missing");
        goto done;
    }
    const msgpack_object *N = field(&body, "names");
    if ((rc = read_learner(&r, L, &l)) != SLR_OK || (rc = read_metrics(&r, M, st)) != SLR_OK ||
        (rc = read_source(&r, S, st)) != SLR_OK || (N && (rc = read_names(&r, N, st)) != SLR_OK) ||
        (rc = read_dead_letter(&r, field(&body, "dead_letters"), &st->dead_letter)) != SLR_OK)
        goto done;
    *out = l;
    l = NULL;
done:
    slr_learner_destroy(l);
    if (rc != SLR_OK)
        slr_job_state_free(st);
    if (zone_ready)
        msgpack_zone_destroy(&zone);
    return rc;
}

slr_status slr_checkpoint_read(const char *path, slr_learner **out, slr_job_state *st,
                               slr_error *err)
{
    *out = NULL;
    char *data = NULL;
    size_t len = 0;
    slr_status rc = read_file(path, &data, &len, err);
    if (rc != SLR_OK)
        return rc;
    rc = slr_checkpoint_decode(data, len, path, out, st, err);
    free(data);
    return rc;
}
