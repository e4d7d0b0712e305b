/* checkpoint.c - the checkpoint format, and its reader (see checkpoint.h;
 * the writer is checkpoint_write.c, the job state checkpoint_state.c).
 *
 * The body is one msgpack map so that it stays self-describing and can grow
 * fields; the bulk (weights, penalty history) is in msgpack bin blobs of
 * fixed-width little-endian records, because packing 16M weights as msgpack
 * objects would cost seconds and the loader would allocate per weight.  The
 * learner's section is the learner's own (learner/learner_io.h); only slots
 * with state (w != 0 or g2 != 0) are stored.  The reader checks every value
 * a writer could not have written, so a damaged or hostile file is refused
 * with what is wrong instead of loading. */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint_impl.h"
#include "util/msgpack_scan.h"
#include "util/le.h"
#include "util/msgpack_obj.h"
#include "learner/learner_io.h"

typedef struct reader {
    const char *path;
    slr_error *err;
} reader;

static slr_status corrupt(reader *r, const char *what)
{
    return slr_error_set(r->err, SLR_ERR_CORRUPT, "%s: %s", r->path, what);
}

static slr_status read_window(reader *r, const msgpack_object *M, slr_job_state *st)
{
    const msgpack_object *win = slr_mp_field(M, "window");
    uint64_t capacity;
    if (!win)
        return SLR_OK; /* written without a window (or by an older streamlr) */
    if (win->type != MSGPACK_OBJECT_BIN || win->via.bin.size % WINDOW_RECORD ||
        !slr_mp_get_uint(M, "window_capacity", &capacity) || capacity < 1 ||
        capacity > SLR_AUC_WINDOW_MAX || win->via.bin.size / WINDOW_RECORD > capacity)
        return corrupt(r, "metrics.window malformed");
    if (slr_auc_window_create(&st->window, (uint32_t)capacity, NULL) != SLR_OK)
        return slr_error_set(r->err, SLR_ERR_NOMEM, "out of memory for the AUC window");
    const unsigned char *p = (const unsigned char *)win->via.bin.ptr;
    for (size_t i = 0; i < win->via.bin.size / WINDOW_RECORD; i++, p += WINDOW_RECORD) {
        double pr = slr_le_get_f64(p), w = slr_le_get_f64(p + 8), loss = slr_le_get_f64(p + 16);
        if (!(pr >= 0 && pr <= 1) || !(w > 0) || !isfinite(w) || !(loss >= 0) || p[24] > 1)
            return corrupt(r, "metrics.window holds an invalid example");
        slr_auc_window_add(st->window, pr, p[24], w, loss);
    }
    return SLR_OK;
}

static slr_status read_histogram(reader *r, const msgpack_object *M, slr_job_state *st)
{
    const msgpack_object *hist = slr_mp_field(M, "auc_histogram");
    if (!hist)
        return SLR_OK;
    char *scheme = slr_mp_strdup(slr_mp_field(M, "auc_histogram_scheme"));
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
        uint32_t b = slr_le_get_u32(p);
        double pos = slr_le_get_f64(p + 4), neg = slr_le_get_f64(p + 12);
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
    if (!slr_mp_get_uint(M, "examples", &m->examples) || !slr_mp_get_double(M, "weight", &m->weight) ||
        !slr_mp_get_double(M, "loss", &m->loss) || !slr_mp_get_double(M, "positives", &m->positives) ||
        !slr_mp_get_double(M, "predicted", &m->predicted) || !slr_mp_get_uint(M, "features", &m->features) ||
        !slr_mp_get_uint(M, "bad", &m->bad) || !slr_mp_get_uint(M, "unlabelled", &m->unlabelled))
        return corrupt(r, "metrics missing or malformed");
    /* "lost" came with the Kafka source; older checkpoints lack it (= 0) */
    if (slr_mp_field(M, "lost") && !slr_mp_get_uint(M, "lost", &m->lost))
        return corrupt(r, "metrics.lost malformed");
    /* per-reason counts: absent in checkpoints from before they existed;
     * a reason this version does not know is left out */
    const msgpack_object *rej = slr_mp_field(M, "rejected");
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
    const msgpack_object *e = slr_mp_field(N, "entries");
    if (!slr_mp_get_uint(N, "max", &max) || !slr_mp_get_uint(N, "dropped", &dropped) || !e ||
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
        slr_names_add(st->names, slr_le_get_u64(p), slr_le_get_u32(p + 8), (const char *)p + NAME_HEADER, len);
        if (slr_names_count(st->names) != before + 1)
            return corrupt(r, "names.entries holds a repeated key or more names than its max");
        p += NAME_HEADER + len;
    }
    slr_names_set_dropped(st->names, dropped);
    return SLR_OK;
}

static slr_status read_source(reader *r, const msgpack_object *S, slr_job_state *st)
{
    char *kind_name = slr_mp_strdup(slr_mp_field(S, "kind"));
    if (!kind_name)
        return corrupt(r, "source.kind missing");
    slr_source_kind kind = !strcmp(kind_name, "files")   ? SLR_SOURCE_FILES
                           : !strcmp(kind_name, "kafka") ? SLR_SOURCE_KAFKA
                                                         : SLR_SOURCE_NONE;
    free(kind_name);
    st->format = slr_mp_strdup(slr_mp_field(S, "format"));
    const msgpack_object *files = slr_mp_field(S, "files"), *kafka = slr_mp_field(S, "kafka");
    uint64_t idx, off, line, recs;
    if (!st->format || !files || files->type != MSGPACK_OBJECT_ARRAY || !kafka ||
        kafka->type != MSGPACK_OBJECT_ARRAY || !slr_mp_get_uint(S, "file_index", &idx) ||
        !slr_mp_get_uint(S, "offset", &off) || !slr_mp_get_uint(S, "line", &line) ||
        !slr_mp_get_uint(S, "records", &recs) || idx > UINT32_MAX)
        return corrupt(r, "source position missing or malformed");
    st->files = calloc(files->via.array.size + 1, sizeof *st->files);
    if (!st->files)
        return slr_error_set(r->err, SLR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < files->via.array.size; i++) {
        if (!(st->files[i] = slr_mp_strdup(&files->via.array.ptr[i])))
            return corrupt(r, "source.files entry is not a string");
        st->n_files = i + 1;
    }
    st->file = (slr_file_position){(uint32_t)idx, off, line, recs};
    for (uint32_t i = 0; i < kafka->via.array.size; i++) {
        const msgpack_object *e = &kafka->via.array.ptr[i];
        int64_t part, offset;
        if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 3 ||
            e->via.array.ptr[0].type != MSGPACK_OBJECT_STR ||
            !slr_mp_int(&e->via.array.ptr[1], &part) || !slr_mp_int(&e->via.array.ptr[2], &offset) ||
            part < 0 || part > INT32_MAX)
            return corrupt(r, "source.kafka entry malformed");
        char *topic = slr_mp_strdup(&e->via.array.ptr[0]);
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
    d->kind = slr_mp_strdup(slr_mp_field(D, "kind"));
    d->name = slr_mp_strdup(slr_mp_field(D, "name"));
    if (!d->kind || !d->name || !slr_mp_get_uint(D, "position", &d->position))
        return corrupt(r, "dead_letters malformed");
    return SLR_OK;
}

/* Absent in checkpoints of jobs that share no model (and older ones). */
static slr_status read_sync(reader *r, const msgpack_object *Y, slr_job_state *st)
{
    if (!Y || Y->type == MSGPACK_OBJECT_NIL)
        return SLR_OK;
    char *topic = slr_mp_strdup(slr_mp_field(Y, "topic"));
    const msgpack_object *g = slr_mp_field(Y, "ledger"), *sl = slr_mp_field(Y, "slice"),
                         *pos = slr_mp_field(Y, "position");
    int64_t slice, position;
    uint64_t round;
    slr_status s = SLR_OK;
    if (!topic || !g || g->type != MSGPACK_OBJECT_BIN || !sl || !slr_mp_int(sl, &slice) ||
        slice < 1 || !pos || !slr_mp_int(pos, &position) || position < 0 ||
        !slr_mp_get_uint(Y, "round", &round))
        s = corrupt(r, "sync malformed");
    else
        s = slr_job_state_set_sync(st, topic, slice, round, position,
                                   (const unsigned char *)g->via.bin.ptr, g->via.bin.size, r->err);
    free(topic);
    return s;
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

    if (len < sizeof SLR_CHECKPOINT_MAGIC + 8 || memcmp(data, SLR_CHECKPOINT_MAGIC, sizeof SLR_CHECKPOINT_MAGIC) != 0) {
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
    const char *b = data + sizeof SLR_CHECKPOINT_MAGIC;
    size_t blen = len - sizeof SLR_CHECKPOINT_MAGIC - 8, size, need;
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
    if (!slr_mp_get_uint(&body, "format_version", &version)) {
        rc = corrupt(&r, "format_version missing");
        goto done;
    }
    /* format 1 (before AdaGrad's Sum g^2 became a double) still loads */
    if (version < 1 || version > SLR_CHECKPOINT_FORMAT_VERSION) {
        rc = slr_error_set(err, SLR_ERR_MISMATCH,
                           "%s: checkpoint format version %llu; this streamlr reads versions 1 to %d",
                           name, (unsigned long long)version, SLR_CHECKPOINT_FORMAT_VERSION);
        goto done;
    }
    const msgpack_object *L = slr_mp_field(&body, "learner"), *M = slr_mp_field(&body, "metrics"),
                         *S = slr_mp_field(&body, "source");
    if (!L || !M || !S) {
        rc = corrupt(&r, "learner, metrics or source section missing");
        goto done;
    }
    slr_job_state_free(st);
    if (!slr_mp_get_uint(&body, "sequence", &st->sequence) || !slr_mp_get_double(&body, "created", &st->created)) {
        rc = corrupt(&r, "sequence or created missing");
        goto done;
    }
    const msgpack_object *N = slr_mp_field(&body, "names");
    if ((rc = slr_learner_unpack_version(L, name, version == 1 ? 1 : SLR_LEARNER_SECTION_VERSION, &l, err)) != SLR_OK || (rc = read_metrics(&r, M, st)) != SLR_OK ||
        (rc = read_source(&r, S, st)) != SLR_OK || (N && (rc = read_names(&r, N, st)) != SLR_OK) ||
        (rc = read_dead_letter(&r, slr_mp_field(&body, "dead_letters"), &st->dead_letter)) != SLR_OK ||
        (rc = read_sync(&r, slr_mp_field(&body, "sync"), st)) != SLR_OK)
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
