/* report.c - what a running job tells the outside: log lines (to the log
 * callback), progress (as numbers, to the progress callback: the CLI draws
 * it), JSON lines, the Prometheus endpoint and the report callback.
 *
 * All of them show one slr_metrics_report taken at one instant.  Taking one
 * is cheap except for the sliding-window AUC (a sort of the window), so it
 * happens only when something is due, never per example: the job calls
 * slr_job_tick() every 1024 records, and the tick compares the clock with
 * the due times.  The per-example cost of metrics is slr_job_observe(): a
 * few additions and two stores. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "job.h"

#define PROGRESS_SECONDS_DEFAULT 0.5
#define METRICS_INTERVAL_DEFAULT 10.0
#define WINDOW_BUDGET 0.05 /* share of the time window sorts may take */
#define PUBLISH_SECONDS 1.0 /* how stale a Prometheus scrape may be (or the metrics interval) */

void slr_job_log(slr_job *job, const char *fmt, ...)
{
    if (!job->opt->log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    job->opt->log(job->opt->log_ctx, msg);
}

/* The example count of the next progress row: VW's --progress, additive
 * (every N examples) or multiplicative (1, 2, 4, ... by default). */
void slr_job_advance_progress(slr_job *job)
{
    const slr_train_options *opt = job->opt;
    double f = opt->progress_factor > 1 ? opt->progress_factor : 2;
    uint64_t next = opt->progress_add ? job->next_progress + opt->progress_add
                                      : (uint64_t)ceil((double)job->next_progress * f);
    job->next_progress = next > job->next_progress ? next : job->next_progress + 1;
}

static double unix_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double progress_seconds(const slr_train_options *opt)
{
    return opt->progress_seconds > 0 ? opt->progress_seconds : PROGRESS_SECONDS_DEFAULT;
}

static double metrics_interval(const slr_train_options *opt)
{
    return opt->metrics_interval > 0 ? opt->metrics_interval : METRICS_INTERVAL_DEFAULT;
}

static double publish_seconds(const slr_train_options *opt)
{
    return metrics_interval(opt) < PUBLISH_SECONDS ? metrics_interval(opt) : PUBLISH_SECONDS;
}

slr_status slr_job_report_open(slr_job *job, slr_error *err)
{
    const slr_train_options *opt = job->opt;
    slr_job_state *st = &job->state;
    uint32_t cap = opt->auc_window ? opt->auc_window : SLR_AUC_WINDOW_DEFAULT;
    slr_status rc;
    if (!st->window || st->window->capacity != cap) {
        slr_auc_window *w;
        if ((rc = slr_auc_window_create(&w, cap, err)) != SLR_OK)
            return rc;
        if (st->window) { /* resumed with another --auc-window: keep what fits */
            slr_auc_window_copy_tail(w, st->window);
            slr_auc_window_destroy(st->window);
        }
        st->window = w;
    }
    if (!st->histogram && (rc = slr_auc_histogram_create(&st->histogram, err)) != SLR_OK)
        return rc;
    if (opt->keep_names) {
        uint64_t max = opt->keep_names_max ? opt->keep_names_max : SLR_NAMES_MAX_DEFAULT;
        if (!st->names && (rc = slr_names_create(&st->names, max, err)) != SLR_OK)
            return rc;
        slr_names_set_max(st->names, max);
    }
    slr_source_stats_init(&job->source);
    job->started_unix = unix_seconds();
    double now = slr_monotonic_seconds();
    job->next_line = now + progress_seconds(opt);
    job->next_json = now + metrics_interval(opt);
    job->next_publish = now + publish_seconds(opt);
    if (opt->metrics_port >= 0) {
        if (opt->metrics_port > 65535)
            return slr_error_set(err, SLR_ERR_ARG, "--metrics-port %d is not a TCP port",
                                 opt->metrics_port);
        if ((rc = slr_metrics_server_start(&job->server, opt->metrics_bind,
                                           (uint16_t)opt->metrics_port, err)) != SLR_OK)
            return rc;
        const char *addr = opt->metrics_bind ? opt->metrics_bind : SLR_METRICS_BIND_DEFAULT;
        bool v6 = strchr(addr, ':') != NULL;
        slr_job_log(job, "serving metrics on http://%s%s%s:%u/metrics", v6 ? "[" : "", addr,
                    v6 ? "]" : "", (unsigned)slr_metrics_server_port(job->server));
        slr_metrics_report r;
        slr_job_report(job, false, &r);
        slr_metrics_server_publish(job->server, &r);
    }
    return SLR_OK;
}

void slr_job_report_close(slr_job *job)
{
    slr_metrics_server_stop(job->server);
    job->server = NULL;
}

void slr_job_report(slr_job *job, bool final, slr_metrics_report *r)
{
    memset(r, 0, sizeof *r);
    double now = slr_monotonic_seconds();
    r->unix_time = unix_seconds();
    r->run_seconds = now - job->started;
    r->start_unix_time = job->started_unix;
    r->records_this_run = job->records_this_run;
    r->examples_this_run = job->examples_this_run;
    double learning = r->run_seconds - job->checkpoint_seconds;
    r->examples_per_second = learning > 0 ? (double)job->examples_this_run / learning : 0.0;
    r->totals = job->state.metrics;
    if (job->state.window) {
        /* The one costly part, a sort of the window: O(N log N), about 3 ms
         * for N = 10^4 but 0.3 s for 10^6.  Reuse the last result while no
         * example came in, and (except for the final report) while less than
         * WINDOW_BUDGET^-1 times its cost has passed, so that a large window
         * and a fast progress line cannot take more than ~5% of the time. */
        bool changed = job->window_at != job->state.metrics.examples + 1;
        if (changed && (final || now - job->window_time >= job->window_cost / WINDOW_BUDGET)) {
            slr_auc_window_stats(job->state.window, &job->window_stats);
            job->window_at = job->state.metrics.examples + 1;
            double done = slr_monotonic_seconds();
            job->window_cost = done - now;
            job->window_time = done;
        }
        r->window = job->window_stats;
        r->window_capacity = job->state.window->capacity;
    } else {
        r->window.auc = NAN;
    }
    if (job->state.histogram)
        slr_auc_histogram_auc(job->state.histogram, &r->auc, &r->auc_error_bound);
    else
        r->auc = r->auc_error_bound = NAN;
    r->source = job->source;
    r->checkpoints_this_run = job->checkpoints_written;
    r->last_checkpoint_unix_time = job->last_checkpoint_unix;
    r->final = final;
}

/* ------------------------------------------------------------ progress */

/* The library draws nothing: progress goes out as numbers (train.h). */
static void status(slr_job *job, const slr_metrics_report *r)
{
    slr_progress p = {.event = SLR_PROGRESS_STATUS, .report = r};
    job->opt->progress(job->opt->progress_ctx, &p);
}

void slr_job_progress_row(slr_job *job, const slr_example *ex, double p)
{
    const slr_metrics *m = &job->state.metrics;
    slr_progress row = {.event = SLR_PROGRESS_ROW,
                        .totals = m,
                        .at_last_row = &job->at_last_row,
                        .first_row = job->at_last_row.examples == 0 || job->examples_this_run == 1,
                        .label = ex->label,
                        .prediction = p,
                        .features = ex->n_features + 1};
    job->opt->progress(job->opt->progress_ctx, &row);
    job->at_last_row = *m;
}

/* ------------------------------------------------------------ ticks */

static void write_json(slr_job *job, const slr_metrics_report *r)
{
    char line[4096];
    size_t n = slr_report_json(r, line, sizeof line);
    if (n >= sizeof line)
        return; /* cannot happen: the line is a fixed set of numbers */
    /* one fwrite and one fflush per line: a reader (tail -f, plot) never sees
     * half a line from us, and a crash loses at most the line being written */
    if (fwrite(line, 1, n, job->opt->metrics_out) != n || fflush(job->opt->metrics_out) != 0) {
        if (!job->metrics_failed)
            slr_job_log(job, "writing the metrics file failed; training goes on");
        job->metrics_failed = true;
    }
}

void slr_job_tick(slr_job *job)
{
    const slr_train_options *opt = job->opt;
    double now = slr_monotonic_seconds();
    bool line = opt->progress && opt->progress_style == SLR_PROGRESS_LINE && now >= job->next_line;
    bool json = (opt->metrics_out || opt->report) && now >= job->next_json;
    bool publish = job->server && now >= job->next_publish;
    if (!line && !json && !publish)
        return;
    slr_metrics_report r;
    slr_job_report(job, false, &r);
    if (line) {
        status(job, &r);
        job->next_line = now + progress_seconds(opt);
    }
    if (json) {
        if (opt->metrics_out)
            write_json(job, &r);
        if (opt->report)
            opt->report(opt->report_ctx, &r);
        /* keep a fixed grid (t0 + k * interval) so lines stay evenly spaced */
        while (job->next_json <= now)
            job->next_json += metrics_interval(opt);
    }
    if (publish) {
        slr_metrics_server_publish(job->server, &r);
        job->published_at = r.totals.examples + 1;
        job->next_publish = now + publish_seconds(opt);
    }
}

void slr_job_idle(slr_job *job)
{
    if (job->server && job->published_at != job->state.metrics.examples + 1)
        job->next_publish = 0;
    slr_job_tick(job);
}

void slr_job_report_finish(slr_job *job, slr_metrics_report *r)
{
    const slr_train_options *opt = job->opt;
    slr_job_report(job, true, r);
    if (opt->progress && opt->progress_style == SLR_PROGRESS_LINE)
        status(job, r); /* r->final: the caller ends its line */
    if (opt->metrics_out)
        write_json(job, r);
    if (opt->report)
        opt->report(opt->report_ctx, r);
    if (job->server)
        slr_metrics_server_publish(job->server, r);
}
