/* checkpoint_write.c - a checkpoint into an atomic file (checkpoint.c
 * describes the format).  Weights and the other bulk records are streamed
 * from their tables through fixed buffers: nothing of model size is
 * buffered and nothing is allocated, so a fork()ed child may write. */
#include "config.h"

#include <msgpack.h>
#include <string.h>

#include "checkpoint_impl.h"
#include "learner/learner_io.h"
#include "util/le.h"
#include "util/msgpack_obj.h"

static int write_cb(void *data, const char *buf, size_t len)
{
    slr_atomic_file_write(data, buf, len);
    return 0;
}

static void pack_key(msgpack_packer *pk, const char *k) { slr_mp_pack_str(pk, k); }

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
    slr_le_put_f64(r, s->p);
    slr_le_put_f64(r + 8, s->weight);
    slr_le_put_f64(r + 16, s->loss);
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
    slr_le_put_u32(r, c->bin);
    slr_le_put_f64(r + 4, c->h->pos[c->bin]);
    slr_le_put_f64(r + 12, c->h->neg[c->bin]);
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
                slr_mp_pack_str(pk, slr_bad_reason_name((slr_bad_reason)r));
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
        slr_mp_pack_str(pk, SLR_AUC_HISTOGRAM_SCHEME);
        pack_key(pk, "auc_histogram");
        histogram_cursor c = {st->histogram, 0};
        uint64_t n = histogram_nonzero(st->histogram);
        pack_records(pk, f, &c, n, n * HISTOGRAM_RECORD, histogram_record);
    }
}

static size_t name_record(void *src, uint64_t i, unsigned char *r)
{
    slr_name_ref ref = slr_names_at(src, i);
    slr_le_put_u64(r, ref.key);
    slr_le_put_u32(r + 8, ref.index);
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
    slr_mp_pack_str(pk, d->kind);
    pack_key(pk, "name");
    slr_mp_pack_str(pk, d->name);
    pack_key(pk, "position");
    msgpack_pack_uint64(pk, d->position);
}

static void pack_source(msgpack_packer *pk, const slr_job_state *st)
{
    msgpack_pack_map(pk, 8);
    pack_key(pk, "kind");
    slr_mp_pack_str(pk, st->source == SLR_SOURCE_FILES ? "files"
                 : st->source == SLR_SOURCE_KAFKA ? "kafka"
                                                  : "none");
    pack_key(pk, "format");
    slr_mp_pack_str(pk, st->format ? st->format : "");
    pack_key(pk, "files");
    msgpack_pack_array(pk, st->n_files);
    for (uint32_t i = 0; i < st->n_files; i++)
        slr_mp_pack_str(pk, st->files[i]);
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
        slr_mp_pack_str(pk, st->kafka[i].topic);
        msgpack_pack_int32(pk, st->kafka[i].partition);
        msgpack_pack_int64(pk, st->kafka[i].offset);
    }
}

static void pack_sync(msgpack_packer *pk, const slr_sync_mark *s)
{
    msgpack_pack_map(pk, 5);
    pack_key(pk, "topic");
    slr_mp_pack_str(pk, s->topic);
    pack_key(pk, "slice");
    msgpack_pack_int64(pk, s->slice);
    pack_key(pk, "round");
    msgpack_pack_uint64(pk, s->round);
    pack_key(pk, "position");
    msgpack_pack_int64(pk, s->position);
    pack_key(pk, "ledger");
    msgpack_pack_bin(pk, s->ledger_len);
    msgpack_pack_bin_body(pk, s->ledger, s->ledger_len);
}

void slr_checkpoint_write_to(slr_atomic_file *f, const slr_learner *l, const slr_job_state *st)
{
    slr_atomic_file_write(f, SLR_CHECKPOINT_MAGIC, sizeof SLR_CHECKPOINT_MAGIC);
    msgpack_packer pk;
    msgpack_packer_init(&pk, f, write_cb);
    msgpack_pack_map(&pk, 7 + (st->names != NULL) + (st->dead_letter.kind != NULL) +
                              (st->sync.topic != NULL));
    pack_key(&pk, "format_version");
    msgpack_pack_uint32(&pk, SLR_CHECKPOINT_FORMAT_VERSION);
    pack_key(&pk, "writer");
    slr_mp_pack_str(&pk, "streamlr " PACKAGE_VERSION);
    pack_key(&pk, "created");
    msgpack_pack_double(&pk, st->created);
    pack_key(&pk, "sequence");
    msgpack_pack_uint64(&pk, st->sequence);
    pack_key(&pk, "learner");
    slr_learner_pack(&pk, l);
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
    if (st->sync.topic) {
        pack_key(&pk, "sync");
        pack_sync(&pk, &st->sync);
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
