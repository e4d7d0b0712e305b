/* checkpoint_state.c - the job state a checkpoint carries besides the
 * learner (slr_job_state, checkpoint.h): its lifetime, copies, the file list,
 * the Kafka next offsets (kept in position.h's table) and the sync mark of a
 * member of a group sharing a model. */
#include <stdlib.h>
#include <string.h>

#include "streamlr/checkpoint.h"

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
    slr_kafka_offsets_free(st->kafka, st->n_kafka);
    free(st->dead_letter.kind);
    free(st->dead_letter.name);
    slr_auc_window_destroy(st->window);
    slr_auc_histogram_destroy(st->histogram);
    slr_names_destroy(st->names);
    free(st->sync.topic);
    free(st->sync.ledger);
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
    memset(&dst->sync, 0, sizeof dst->sync);
    if (src->sync.topic) {
        slr_status st = slr_job_state_set_sync(dst, src->sync.topic, src->sync.slice,
                                               src->sync.round, src->sync.position,
                                               src->sync.ledger, src->sync.ledger_len, err);
        if (st != SLR_OK)
            return st;
    }
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
    return slr_kafka_offsets_get(st->kafka, st->n_kafka, topic, partition);
}

slr_status slr_job_state_set_kafka_offset(slr_job_state *st, const char *topic, int32_t partition,
                                          int64_t offset, slr_error *err)
{
    st->source = SLR_SOURCE_KAFKA;
    return slr_kafka_offsets_set(&st->kafka, &st->n_kafka, topic, partition, offset, err);
}

slr_status slr_job_state_set_sync(slr_job_state *st, const char *topic, int64_t slice,
                                  uint64_t round, int64_t position, const unsigned char *ledger,
                                  size_t ledger_len, slr_error *err)
{
    char *t = strdup(topic);
    unsigned char *g = malloc(ledger_len ? ledger_len : 1);
    if (!t || !g) {
        free(t);
        free(g);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    }
    if (ledger_len)
        memcpy(g, ledger, ledger_len);
    free(st->sync.topic);
    free(st->sync.ledger);
    st->sync = (slr_sync_mark){t, slice, round, position, g, ledger_len};
    return SLR_OK;
}
