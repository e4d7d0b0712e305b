/* job_reject.c - records that cannot be learned from: counted by reason,
 * reported (a few), handed to the dead-letter sink, skipped bytes joined
 * into junk spans; and the watch over a run's first records for input in
 * the wrong format, which stops the run before any checkpoint, commit or
 * model rather than learn nothing from it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job.h"

/* Bad records beyond this many are counted but not printed one by one. */
#define BAD_REPORT_LIMIT 100

/* ------------------------------------------------------------ records */

static void format_where(char *buf, size_t size, const slr_where *w)
{
    if (w->is_message)
        snprintf(buf, size, "%s@%llu", w->name, (unsigned long long)w->offset);
    else if (w->line)
        snprintf(buf, size, "%s:%llu", w->name, (unsigned long long)w->line);
    else
        snprintf(buf, size, "%s@%llu", w->name, (unsigned long long)w->offset);
}

/* A record that cannot be learned from: count it by reason, report it, and
 * hand its exact bytes to the dead-letter sink.  Unlabelled examples are not
 * bad input, but training cannot use them either, so they are kept too. */
slr_status slr_job_reject_record(slr_job *job, const slr_where *where, slr_bad_reason why,
                                const char *msg, const char *data, size_t len, bool truncated,
                                slr_error *err)
{
    char at[1024];
    format_where(at, sizeof at, where);
    job->state.metrics.rejected[why]++;
    if (why == SLR_BAD_UNLABELLED) {
        if (job->state.metrics.unlabelled++ == 0)
            slr_job_log(job, "%s: example has no label; training skips unlabelled examples "
                             "(counted as unlabelled)", at);
    } else {
        job->state.metrics.bad++;
        if (job->opt->strict)
            return slr_error_set(err, SLR_ERR_BAD_INPUT, "%s: %s (stopping: --strict)", at, msg);
        if (job->bad_reported < BAD_REPORT_LIMIT)
            slr_job_log(job, "%s: %s; skipped", at, msg);
        else if (job->bad_reported == BAD_REPORT_LIMIT)
            slr_job_log(job, "more than %d bad records; counting the rest without printing them",
                        BAD_REPORT_LIMIT);
        job->bad_reported++;
    }
    slr_dead_letter_sink *sink = job->opt->dead_letter;
    if (!sink)
        return SLR_OK;
    slr_dead_letter dl = {.reason = why, .error = msg, .source = where->name,
                          .offset = where->offset, .line = where->line,
                          .is_message = where->is_message,
                          .format = slr_format_name(job->opt->format), .data = data, .len = len,
                          .truncated = truncated};
    slr_error e;
    slr_status st = sink->put(sink, &dl, &e);
    if (st != SLR_OK)
        return slr_error_set(err, st, "%s: cannot keep this record as a dead letter (%s); stopping, "
                             "since it could be neither learned nor kept", at, e.msg);
    job->dead_letters++;
    job->source.dead_lettered++;
    return SLR_OK;
}

slr_status slr_job_flush_junk(slr_job *job, slr_error *err)
{
    slr_junk_span *j = &job->junk;
    if (!j->active)
        return SLR_OK;
    j->active = false;
    char msg[SLR_ERROR_MSG_MAX + 64];
    if (j->data.len > 1)
        snprintf(msg, sizeof msg, "%s (%zu bytes skipped in all)", j->error, j->data.len);
    else
        snprintf(msg, sizeof msg, "%s", j->error);
    slr_where w = {j->source, 0, j->offset, j->is_message};
    slr_status st = slr_job_reject_record(job, &w, j->reason, msg, j->data.data, j->data.len, false, err);
    free(j->source);
    j->source = NULL;
    slr_buf_reset(&j->data);
    return st;
}

/* Bytes the decoder skipped to resynchronise: extend the current span if
 * they follow it, else start a new one (after reporting the old). */
slr_status slr_job_add_junk(slr_job *job, const slr_where *where, slr_bad_reason why,
                           const char *msg, const char *buf, size_t n, slr_error *err)
{
    slr_junk_span *j = &job->junk;
    if (job->opt->strict)
        return slr_job_reject_record(job, where, why, msg, buf, n, false, err);
    size_t limit = job->opt->max_record ? job->opt->max_record : SLR_DEFAULT_MAX_RECORD;
    /* in a file the next junk byte is at the next offset; in a Kafka message
     * every byte has the message's offset, and the message is the unit */
    bool adjacent = where->is_message ? j->offset == where->offset
                                      : j->offset + j->data.len == where->offset;
    bool continues = j->active && adjacent && j->is_message == where->is_message &&
                     !strcmp(j->source, where->name) && j->data.len + n <= limit;
    slr_status st;
    if (!continues) {
        if ((st = slr_job_flush_junk(job, err)) != SLR_OK)
            return st;
        if (!(j->source = strdup(where->name)))
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
        j->active = true;
        j->offset = where->offset;
        j->is_message = where->is_message;
        j->reason = why;
        snprintf(j->error, sizeof j->error, "%s", msg);
    }
    return slr_buf_append(&j->data, buf, n, err);
}

/* ------------------------------------------------------------ a wrong format */

/* The first records of a run in the wrong format are all bad (or nearly):
 * stop after this many all bad, or when more than 90% of this many are. */
#define PROBE_ALL_BAD 1000
#define PROBE_MOSTLY_BAD 10000

slr_status slr_job_set_format(slr_job *job, slr_error *err)
{
    slr_job_reader_free(&job->reader);
    slr_status st = slr_job_reader_init(&job->reader, job->opt, err);
    if (st != SLR_OK)
        return st;
    free(job->state.format);
    if (!(job->state.format = strdup(slr_format_name(job->opt->format))))
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    return SLR_OK;
}

bool slr_job_checkpoint_held(const slr_job *job)
{
    return !job->format_settled && 2 * job->probe_bad > job->probe_records;
}

/* Keep the first bad records' bytes (a few KiB, messages one per line) to
 * tell what the input is. */
static void sample_bad(slr_job *job, const slr_job_item *it)
{
    slr_buf *b = &job->bad_sample;
    if (b->len >= 4096)
        return;
    if (b->len && it->where.is_message && job->sample_offset != it->where.offset)
        slr_buf_append(b, "\n", 1, NULL);
    job->sample_offset = it->where.offset;
    size_t n = it->bytes.len < 4096 ? it->bytes.len : 4096;
    slr_buf_append(b, it->bytes.data, n, NULL);
}

/* The run's only checkpoint is slr_job_start's, of a run now refused for its
 * input: it would make a rerun with the right format look like a resume. */
static void drop_start_checkpoint(slr_job *job)
{
    slr_job_checkpoint_poll(job, true, NULL);
    if (job->wrote_start_checkpoint && job->checkpoints_written == 1 && job->last_checkpoint[0])
        unlink(job->last_checkpoint);
}

static slr_status wrong_format(slr_job *job, const slr_where *where, slr_error *err)
{
    const char *reading = slr_format_name(job->opt->format);
    char counted[128];
    if (job->probe_bad == job->probe_records)
        snprintf(counted, sizeof counted, "the first %llu records", (unsigned long long)job->probe_records);
    else
        snprintf(counted, sizeof counted, "%llu of the first %llu records",
                 (unsigned long long)job->probe_bad, (unsigned long long)job->probe_records);
    slr_format likely;
    char hint[160];
    if (slr_format_detect(job->bad_sample.data, job->bad_sample.len, &likely) &&
        likely != job->opt->format)
        snprintf(hint, sizeof hint, "the input looks like %s: give --format %s",
                 slr_format_name(likely), slr_format_name(likely));
    else
        snprintf(hint, sizeof hint, "is it %s? give the right --format",
                 reading);
    drop_start_checkpoint(job);
    return slr_error_set(err, SLR_ERR_BAD_INPUT,
                         "%s of %s are bad reading --format %s; %s (stopped before any "
                         "checkpoint, commit or model)",
                         counted, where->name, reading, hint);
}

/* Watch the run's first records for a wrong format (skips are not records
 * of any format). */
slr_status slr_job_probe_format(slr_job *job, const slr_job_item *it, slr_error *err)
{
    job->probe_records++;
    if (it->kind == SLR_ITEM_BAD) {
        job->probe_bad++;
        sample_bad(job, it);
    }
    uint64_t good = job->probe_records - job->probe_bad;
    if ((job->probe_records == PROBE_ALL_BAD && good == 0) ||
        (job->probe_records == PROBE_MOSTLY_BAD && 10 * job->probe_bad > 9 * PROBE_MOSTLY_BAD))
        return wrong_format(job, &it->where, err);
    if (10 * good >= PROBE_MOSTLY_BAD || job->probe_records >= PROBE_MOSTLY_BAD) {
        job->format_settled = true; /* no verdict is possible any more */
        slr_buf_free(&job->bad_sample);
    }
    return SLR_OK;
}
