/* job.c - the per-record pipeline shared by every source (see job.h):
 * a record read into an item (decoded, its names and bytes kept as the
 * job needs), then learned from -- predicted, written (-p, --audit), held
 * out or applied -- and the helper threads that run beside it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "learner/learner_impl.h"
#include "streamlr/predict.h"
#include "streamlr/sync.h"

bool slr_job_start_thread(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    bool ok = pthread_create(thread, NULL, fn, arg) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ok;
}

void *slr_job_prefault_thread(void *learner)
{
    slr_learner_prefault(learner);
    return NULL;
}

slr_status slr_job_reader_init(slr_job_reader *r, const slr_train_options *opt, slr_error *err)
{
    slr_raw_example_init(&r->raw);
    r->keep_names = opt->keep_names;
    r->keep_bytes = opt->dead_letter != NULL;
    r->keep_tag = opt->predictions != NULL || opt->audit != NULL;
    slr_status st = slr_decoder_create(&r->decoder, opt->format, err);
    if (st != SLR_OK)
        return st;
    slr_decoder_set_max_record(r->decoder, opt->max_record ? opt->max_record : SLR_DEFAULT_MAX_RECORD);
    slr_decoder_set_keep_raw(r->decoder, r->keep_names);
    return SLR_OK;
}

void slr_job_reader_free(slr_job_reader *r)
{
    slr_decoder_destroy(r->decoder);
    slr_raw_example_free(&r->raw);
    memset(r, 0, sizeof *r);
}

void slr_job_item_init(slr_job_item *it, const slr_learner *model, uint32_t max_features)
{
    memset(it, 0, sizeof *it);
    slr_example_init(&it->ex, &slr_learner_config_of(model)->hashing);
    if (max_features)
        it->ex.max_features = max_features;
}

void slr_job_item_free(slr_job_item *it)
{
    slr_example_free(&it->ex);
    slr_buf_free(&it->bytes);
    slr_buf_free(&it->tag);
    slr_raw_example_free(&it->raw);
    free(it->names);
    memset(it, 0, sizeof *it);
}

/* raw into the item with its names copied, so it outlives the read buffer */
static bool keep_raw(slr_job_item *it, const slr_raw_example *raw)
{
    size_t bytes = 0;
    for (uint32_t i = 0; i < raw->n_features; i++)
        bytes += raw->features[i].name ? (size_t)raw->features[i].ns_len + raw->features[i].name_len : 0;
    if (bytes > it->names_cap) {
        char *p = realloc(it->names, bytes);
        if (!p)
            return false;
        it->names = p;
        it->names_cap = bytes;
    }
    slr_raw_example_reset(&it->raw);
    char *w = it->names;
    for (uint32_t i = 0; i < raw->n_features; i++) {
        slr_raw_feature f = raw->features[i];
        if (f.name) {
            memcpy(w, f.ns ? f.ns : "", f.ns_len);
            f.ns = w;
            w += f.ns_len;
            memcpy(w, f.name, f.name_len);
            f.name = w;
            w += f.name_len;
        }
        if (slr_raw_example_push(&it->raw, &f, NULL) != SLR_OK)
            return false;
    }
    return true;
}

/* -p: one line per example or bad record, so line i answers record i; the
 * example's tag after the probability, as VW writes it */
static void write_prediction(slr_job *job, double p, const slr_job_item *it)
{
    slr_buf_reset(&job->prediction);
    const slr_buf *tag = it->kind == SLR_ITEM_EXAMPLE ? &it->tag : NULL;
    if (slr_prediction_line(&job->prediction, p, tag ? tag->data : NULL, tag ? tag->len : 0,
                            NULL) == SLR_OK)
        fwrite(job->prediction.data, 1, job->prediction.len, job->opt->predictions);
    else
        fputs("nan\n", job->opt->predictions); /* out of memory: keep line i for record i */
}

bool slr_job_read(slr_job_reader *r, const char *buf, size_t len, bool at_end,
                  const slr_where *where, size_t *consumed, slr_job_item *it)
{
    r->raw.tag = NULL; /* the compact msgpack form has no tag and leaves raw as it was */
    r->raw.tag_len = 0;
    slr_decode_result d = slr_decoder_next_example(r->decoder, buf, len, at_end, consumed,
                                                   &r->raw, &it->ex, &it->reason);
    if (d == SLR_DECODE_NEED_MORE)
        return false;
    it->where = *where;
    it->kind = d == SLR_DECODE_EXAMPLE ? SLR_ITEM_EXAMPLE
               : d == SLR_DECODE_SKIP  ? SLR_ITEM_SKIP
                                       : SLR_ITEM_BAD;
    slr_buf_reset(&it->bytes);
    if (it->kind == SLR_ITEM_BAD) {
        it->why = slr_decoder_last_bad(r->decoder, &it->resync, &it->truncated);
        /* the bytes go to the dead letter, or at least count in a junk span */
        if (slr_buf_append(&it->bytes, buf, *consumed, NULL) != SLR_OK)
            slr_error_set(&it->reason, SLR_ERR_NOMEM, "out of memory keeping a bad record");
    } else if (it->kind == SLR_ITEM_EXAMPLE) {
        slr_buf_reset(&it->tag);
        if ((r->keep_names && !keep_raw(it, &r->raw)) ||
            (r->keep_tag && r->raw.tag &&
             slr_buf_append(&it->tag, r->raw.tag, r->raw.tag_len, NULL) != SLR_OK) ||
            (r->keep_bytes && !it->ex.has_label &&
             slr_buf_append(&it->bytes, buf, *consumed, NULL) != SLR_OK)) {
            it->kind = SLR_ITEM_BAD;
            slr_error_set(&it->reason, SLR_ERR_NOMEM, "out of memory keeping a record");
        }
    }
    return true;
}

slr_job_file_read slr_job_read_file(slr_job_reader *r, slr_file_source *src, bool text,
                                    slr_job_item *it, slr_status *st)
{
    *st = SLR_OK;
    while (!slr_file_source_done(src)) {
        const char *buf;
        size_t len, used = 0;
        bool at_end;
        slr_file_source_window(src, &buf, &len, &at_end);
        if (len == 0 && at_end) {
            if (!slr_file_source_next_file(src, &it->reason, st) && *st != SLR_OK)
                return SLR_JOB_FILE_END;
            continue;
        }
        slr_file_position pos;
        slr_file_source_position(src, &pos);
        slr_where where = {slr_file_source_path(src), text ? pos.line : 0, pos.offset, false};
        if (len == 0 || !slr_job_read(r, buf, len, at_end, &where, &used, it)) {
            if (!slr_file_source_wait(src, 0))
                return SLR_JOB_FILE_NEED_INPUT;
            if ((*st = slr_file_source_fill(src, &it->reason)) != SLR_OK)
                return SLR_JOB_FILE_END;
            continue;
        }
        slr_file_source_consume(src, used);
        return SLR_JOB_FILE_ITEM;
    }
    return SLR_JOB_FILE_END;
}

/* --audit, as VW prints it: the prediction (and tag), then a tab before each
 * feature as name:index:value:weight, the weights before this update. */
static void audit(slr_job *job, const slr_job_item *it)
{
    const slr_example *ex = &it->ex;
    FILE *out = job->opt->audit;
    fprintf(out, "%.6f", slr_learner_predict(job->learner, ex));
    if (it->tag.len)
        fprintf(out, " %.*s", (int)it->tag.len, it->tag.data);
    fputc('\n', out);
    for (uint32_t i = 0; i < ex->n_features; i++) {
        const slr_feature *f = &ex->features[i];
        slr_name_ref name;
        if (f->value == 0.0f)
            continue; /* --ignore_linear: not in the linear part */
        if (job->state.names && slr_names_lookup(job->state.names, ex->hashes[i], &name))
            fprintf(out, "\t%.*s", (int)name.len, name.name);
        else
            fprintf(out, "\t?");
        fprintf(out, ":%u:%.9g:%.9g", f->index, (double)f->value,
                slr_learner_weight(job->learner, f->index));
    }
    if (!slr_learner_config_of(job->learner)->noconstant) {
        uint64_t b = slr_learner_bias_index(job->learner);
        fprintf(out, "\t%s:%llu:1:%.9g", SLR_BIAS_NAME, (unsigned long long)b,
                slr_learner_weight(job->learner, b));
    }
    fputc('\n', out);
}

/* A held-out example (--passes): scored and counted apart, never learned,
 * so the last pass's holdout loss is an honest estimate even after the
 * learned examples have been seen many times. */
static slr_status holdout(slr_job *job, const slr_job_item *it, slr_apply_result *result)
{
    const slr_example *ex = &it->ex;
    double z = slr_learner_margin(job->learner, ex);
    if (it->pass != job->holdout_pass) {
        job->holdout_pass = it->pass;
        job->holdout_examples = 0;
        job->holdout_weight = job->holdout_loss = 0;
    }
    job->holdout_examples++;
    job->holdout_weight += ex->weight;
    job->holdout_loss += ex->weight * slr_logloss_margin(z, ex->label);
    if (job->opt->predictions)
        write_prediction(job, slr_sigmoid(z), it);
    *result = SLR_APPLY_SKIPPED;
    return SLR_OK;
}

slr_status slr_job_learn(slr_job *job, const slr_job_item *it, slr_apply_result *result,
                         slr_error *err)
{
    job->records_this_run++;
    job->state.file.records++;
    if ((job->records_this_run & 1023) == 0) /* reading the clock is cheap, not free */
        slr_job_tick(job);
    slr_status st;
    if (!job->format_settled && it->kind != SLR_ITEM_SKIP &&
        (st = slr_job_probe_format(job, it, err)) != SLR_OK) {
        *result = SLR_APPLY_BAD;
        return st;
    }
    if (it->kind == SLR_ITEM_BAD) {
        *result = SLR_APPLY_BAD;
        if (it->reason.code == SLR_ERR_NOMEM)
            return slr_error_set(err, SLR_ERR_NOMEM, "%s", it->reason.msg);
        if (job->opt->predictions)
            write_prediction(job, NAN, it);
        if (it->resync)
            return slr_job_add_junk(job, &it->where, it->why, it->reason.msg, it->bytes.data,
                            it->bytes.len, err);
        if ((st = slr_job_flush_junk(job, err)) != SLR_OK)
            return st;
        return slr_job_reject_record(job, &it->where, it->why, it->reason.msg, it->bytes.data,
                             it->bytes.len, it->truncated, err);
    }
    if ((st = slr_job_flush_junk(job, err)) != SLR_OK) /* it came before this record */
        return st;
    if (it->kind == SLR_ITEM_SKIP) {
        *result = SLR_APPLY_SKIPPED;
        return SLR_OK;
    }
    const slr_example *ex = &it->ex;
    if (!ex->has_label) {
        if (job->opt->predictions)
            write_prediction(job, slr_learner_predict(job->learner, ex), it);
        *result = SLR_APPLY_SKIPPED;
        return slr_job_reject_record(job, &it->where, SLR_BAD_UNLABELLED, "example has no label",
                             it->bytes.data, it->bytes.len, false, err);
    }
    if (it->holdout)
        return holdout(job, it, result);
    if (job->opt->keep_names)
        slr_names_record(job->state.names, &it->raw, ex);
    if (job->opt->audit)
        audit(job, it);
    double loss, p;
    if (job->opt->test_only) {
        double z = slr_learner_margin(job->learner, ex);
        p = slr_sigmoid(z);
        loss = slr_logloss_margin(z, ex->label);
    } else {
        p = job->sync ? slr_sync_member_learn(job->sync, ex, &loss)
                      : slr_learner_learn(job->learner, ex, &loss);
    }
    slr_job_observe(job, ex, p, loss);
    if (job->opt->predictions)
        write_prediction(job, p, it);
    job->examples_this_run++;
    if (job->opt->progress && job->opt->progress_style == SLR_PROGRESS_TABLE &&
        job->state.metrics.examples >= job->next_progress) {
        slr_job_progress_row(job, ex, p);
        while (job->next_progress <= job->state.metrics.examples)
            slr_job_advance_progress(job);
    }
    *result = SLR_APPLY_LEARNED;
    return SLR_OK;
}

slr_status slr_job_apply(slr_job *job, const char *buf, size_t len, bool at_end,
                         const slr_where *where, size_t *consumed, slr_apply_result *result,
                         slr_error *err)
{
    if (!slr_job_read(&job->reader, buf, len, at_end, where, consumed, &job->item)) {
        *result = SLR_APPLY_NEED_MORE;
        return SLR_OK;
    }
    return slr_job_learn(job, &job->item, result, err);
}
