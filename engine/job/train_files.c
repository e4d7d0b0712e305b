/* train_files.c - replaying an event log from files.
 *
 * The loop reads top to bottom: take the window of unread bytes, let the job
 * decode and learn the record at its front, drop the bytes it used, and
 * checkpoint when due -- the position stored is the start of the next
 * record, so a resumed replay applies every record exactly once. */
#include <string.h>

#include "job.h"

#define IDLE_POLL_MS 200
#include "streamlr/source.h"
#include "streamlr/train.h"

/* The source's position (and records consumed) into the job state. */
static void note_position(slr_job *job, const slr_file_source *src)
{
    uint64_t records = job->state.file.records;
    slr_file_source_position(src, &job->state.file);
    job->state.file.records = records;
}

/* Read more input.  A pipe or FIFO may have none yet: wait in short polls,
 * keeping the metrics fresh and noticing a stop request, rather than
 * sleeping in read().  Returns false when stopped while waiting. */
static bool fill(slr_job *job, slr_file_source *src, slr_status *st, slr_error *err)
{
    while (!slr_file_source_wait(src, IDLE_POLL_MS)) {
        slr_job_idle(job);
        if (job->opt->stop && *job->opt->stop)
            return false;
    }
    *st = slr_file_source_fill(src, err);
    return true;
}

slr_status slr_train_files(const slr_train_options *opt, slr_train_result *res, slr_error *err)
{
    slr_job job;
    slr_file_source *src = NULL;
    bool stopped = false;
    slr_status st = slr_job_open(&job, opt, err);
    if (st != SLR_OK)
        goto out;
    if (job.state.source == SLR_SOURCE_NONE)
        st = slr_job_state_set_files(&job.state, opt->files, opt->n_files, err);
    if (st != SLR_OK)
        goto out;
    st = slr_file_source_open(&src, opt->files, opt->n_files, slr_format_is_text(opt->format), err);
    if (st != SLR_OK)
        goto out;
    if (job.state.file.file_index > 0 || job.state.file.offset > 0) {
        if ((st = slr_file_source_seek(src, &job.state.file, err)) != SLR_OK)
            goto out;
        slr_job_log(&job, "continuing %s at byte %llu (line %llu)", slr_file_source_path(src),
                    (unsigned long long)job.state.file.offset,
                    (unsigned long long)job.state.file.line);
    }
    note_position(&job, src);
    if ((st = slr_job_start(&job, err)) != SLR_OK)
        goto out;

    while (!slr_file_source_done(src)) {
        if (slr_job_should_stop(&job)) {
            stopped = opt->stop && *opt->stop; /* not when --examples was reached */
            break;
        }
        const char *buf;
        size_t len;
        bool at_end;
        slr_file_source_window(src, &buf, &len, &at_end);
        if (len == 0) {
            if (!at_end) {
                if (!fill(&job, src, &st, err)) {
                    stopped = true;
                    break;
                }
                if (st != SLR_OK)
                    goto out;
                continue;
            }
            if (!slr_file_source_next_file(src, err, &st) && st != SLR_OK)
                goto out;
            note_position(&job, src);
            continue;
        }
        slr_file_position pos;
        slr_file_source_position(src, &pos);
        slr_where where = {slr_file_source_path(src), slr_format_is_text(opt->format) ? pos.line : 0,
                           pos.offset, false};
        size_t used = 0;
        slr_apply_result r;
        st = slr_job_apply(&job, buf, len, at_end, &where, &used, &r, err);
        if (st != SLR_OK)
            goto out;
        if (r == SLR_APPLY_NEED_MORE) {
            if (!fill(&job, src, &st, err)) {
                stopped = true;
                break;
            }
            if (st != SLR_OK)
                goto out;
            continue;
        }
        slr_file_source_consume(src, used);
        if (slr_job_checkpoint_due(&job)) {
            note_position(&job, src);
            /* a failed write is logged and retried next period; an error
             * here means the dead letters could not be made durable */
            if ((st = slr_job_checkpoint(&job, err)) != SLR_OK)
                goto out;
        }
    }
    note_position(&job, src);
    st = slr_job_finish(&job, stopped, res, err);
out:
    slr_file_source_close(src);
    slr_job_close(&job);
    return st;
}
