/* progress.c - drawing a job's progress for the CLI (see progress.h).  The
 * formats are those the library printed itself before it reported numbers:
 * VW's table (a row at examples 1, 2, 4, ...), the status line redrawn in
 * place with "\r" and erase-to-end-of-line, and the summary. */
#include <math.h>
#include <time.h>

#include "cli.h"
#include "progress.h"

static double monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_init(progress_drawer *d, FILE *out)
{
    *d = (progress_drawer){.out = out, .line_time = monotonic_seconds()};
}

/* 1234 -> "1234", 12345 -> "12.3k", 1234567 -> "1.23M" */
static const char *human(char *buf, size_t size, double v)
{
    if (v >= 1e9)
        snprintf(buf, size, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, size, "%.2fM", v / 1e6);
    else if (v >= 1e4)
        snprintf(buf, size, "%.1fk", v / 1e3);
    else
        snprintf(buf, size, "%.0f", v);
    return buf;
}

static void format_value(char *buf, size_t size, double v, int digits)
{
    if (isfinite(v))
        snprintf(buf, size, "%.*f", digits, v);
    else
        snprintf(buf, size, "-");
}

/* One line, drawn over the previous one: "\r", text, erase to end of line;
 * the final one ends the line. */
static void status_line(progress_drawer *d, const slr_metrics_report *r)
{
    FILE *out = d->out;
    double now = monotonic_seconds();
    char ex[32], rate[32], loss[16], wloss[16], auc[16], wauc[16], pred[16], pos[16];
    /* "last" is the --auc-window; pred/pos is calibration over it */
    double dt = now - d->line_time;
    double recent = dt > 0 ? (double)(r->examples_this_run - d->line_examples) / dt : 0.0;
    if (r->final)
        recent = r->examples_per_second;
    format_value(loss, sizeof loss, slr_report_logloss(r), 4);
    format_value(wloss, sizeof wloss, slr_report_window_logloss(r), 4);
    format_value(auc, sizeof auc, r->auc, 4);
    format_value(wauc, sizeof wauc, r->window.auc, 4);
    format_value(pred, sizeof pred, slr_report_window_mean_prediction(r), 3);
    format_value(pos, sizeof pos, slr_report_window_positive_rate(r), 3);
    fprintf(out, "\r%s ex  %s ex/s  loss %s (last %s)  AUC %s (last %s)  pred/pos %s/%s",
            human(ex, sizeof ex, (double)r->totals.examples), human(rate, sizeof rate, recent),
            loss, wloss, auc, wauc, pred, pos);
    if (r->totals.bad)
        fprintf(out, "  bad %llu", (unsigned long long)r->totals.bad);
    if (r->source.dead_lettered)
        fprintf(out, "  dead %llu", (unsigned long long)r->source.dead_lettered);
    if (r->source.consumer_lag >= 0)
        fprintf(out, "  lag %s", human(ex, sizeof ex, (double)r->source.consumer_lag));
    if (r->source.retention_lost)
        fprintf(out, "  lost %llu", (unsigned long long)r->source.retention_lost);
    fputs("\033[K", out);
    if (r->final)
        fputc('\n', out);
    fflush(out);
    d->line_shown = !r->final;
    d->line_examples = r->examples_this_run;
    d->line_time = now;
}

static void table_row(progress_drawer *d, const slr_progress *p)
{
    FILE *out = d->out;
    if (p->first_row) {
        fprintf(out, "%-10s %-10s %12s %14s %8s %8s %8s\n", "average", "since", "example",
                "example", "current", "current", "current");
        fprintf(out, "%-10s %-10s %12s %14s %8s %8s %8s\n", "loss", "last", "counter", "weight",
                "label", "predict", "features");
    }
    const slr_metrics *m = p->totals, *l = p->at_last_row;
    double dw = m->weight - l->weight;
    double since = dw > 0 ? (m->loss - l->loss) / dw : 0.0;
    fprintf(out, "%-10.6f %-10.6f %12llu %14.1f %8.4f %8.4f %8u\n", slr_metrics_logloss(m), since,
            (unsigned long long)m->examples, m->weight, p->label, p->prediction, p->features);
    fflush(out);
}

static void summary(progress_drawer *d, const slr_metrics_report *r, const slr_train_summary *s)
{
    FILE *out = d->out;
    const slr_metrics *m = &r->totals;
    fprintf(out, "\n%s\n", s->stopped ? "stopped on request" : "finished run");
    fprintf(out, "number of examples = %llu (this run %llu)\n", (unsigned long long)m->examples,
            (unsigned long long)s->examples_this_run);
    fprintf(out, "weighted example sum = %.6g\n", m->weight);
    fprintf(out, "weighted label sum = %.6g\n", m->positives);
    fprintf(out, "average loss = %.6f (progressive validation)\n", slr_metrics_logloss(m));
    if (m->weight > 0)
        fprintf(out, "mean prediction = %.4f, positive rate = %.4f\n", m->predicted / m->weight,
                m->positives / m->weight);
    if (isfinite(r->auc))
        fprintf(out, "AUC = %.6f (all examples, exact within %.2g)\n", r->auc, r->auc_error_bound);
    if (isfinite(r->window.auc))
        fprintf(out, "last %llu examples: AUC = %.6f, loss = %.6f\n",
                (unsigned long long)r->window.examples, r->window.auc,
                slr_report_window_logloss(r));
    fprintf(out, "bad records = %llu, unlabelled = %llu\n", (unsigned long long)m->bad,
            (unsigned long long)m->unlabelled);
    if (m->lost)
        fprintf(out, "LOST to retention = %llu Kafka offsets (deleted by the broker before "
                     "they were consumed)\n", (unsigned long long)m->lost);
    if (m->bad || m->unlabelled) {
        fprintf(out, "rejected by reason:");
        for (int k = 0; k < SLR_BAD_REASON_COUNT; k++)
            if (m->rejected[k])
                fprintf(out, " %s %llu", slr_bad_reason_name((slr_bad_reason)k),
                        (unsigned long long)m->rejected[k]);
        fputc('\n', out);
    }
    if (s->dead_letter_sink)
        fprintf(out, "dead letters = %llu this run, in %s\n", (unsigned long long)s->dead_letters,
                s->dead_letter_sink);
    fprintf(out, "total feature number = %llu\n", (unsigned long long)m->features);
    double learning = s->seconds - s->checkpoint_seconds - s->waiting_seconds;
    char waited[64] = "";
    if (s->waiting_seconds > 0)
        snprintf(waited, sizeof waited, ", %.3f s waiting for the first record", s->waiting_seconds);
    fprintf(out, "this run: %.3f s (%.3f s writing checkpoints and models%s), %.0f examples/s\n",
            s->seconds, s->checkpoint_seconds, waited,
            learning > 0 ? (double)s->examples_this_run / learning : 0.0);
    if (s->pauses)
        fprintf(out, "periodic checkpoints: %llu, %s; learning paused %.1f ms at most, "
                     "%.1f ms on average\n",
                (unsigned long long)s->pauses,
                !s->checkpoint_fork ? "written in place"
                : s->fork_given_up  ? "written in place once children could not keep up"
                                    : "written by a child process",
                s->pause_max * 1e3, s->pause_total / (double)s->pauses * 1e3);
    if (s->checkpoint && s->checkpoint[0])
        fprintf(out, "checkpoint: %s\n", s->checkpoint);
}

void progress_draw(void *ctx, const slr_progress *p)
{
    progress_drawer *d = ctx;
    switch (p->event) {
    case SLR_PROGRESS_STATUS: status_line(d, p->report); break;
    case SLR_PROGRESS_ROW: table_row(d, p); break;
    case SLR_PROGRESS_KAFKA:
        fprintf(d->out, "kafka: %s; %llu examples learned\n", p->kafka_lag,
                (unsigned long long)p->totals->examples);
        fflush(d->out);
        break;
    case SLR_PROGRESS_SUMMARY: summary(d, p->report, p->summary); break;
    }
}

void progress_log(void *ctx, const char *msg)
{
    progress_drawer *d = ctx;
    if (d && d->line_shown) {
        fputs("\r\033[K", d->out);
        d->line_shown = false;
    }
    cli_log(NULL, msg);
}
