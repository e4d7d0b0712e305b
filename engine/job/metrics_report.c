/* metrics_report.c - a metrics snapshot as a JSON line and as Prometheus text.
 *
 * Both formatters work on a copied slr_metrics_report and nothing else, so
 * the Prometheus thread can format while the training loop runs on.  The
 * JSON keys and the Prometheus names are documented in README.md ("A
 * long-running job with metrics"); `streamlr plot` reads the JSON keys. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "streamlr/metrics.h"

static double ratio(double a, double b) { return b > 0 ? a / b : NAN; }

double slr_report_logloss(const slr_metrics_report *r)
{
    return ratio(r->totals.loss, r->totals.weight);
}
double slr_report_mean_prediction(const slr_metrics_report *r)
{
    return ratio(r->totals.predicted, r->totals.weight);
}
double slr_report_positive_rate(const slr_metrics_report *r)
{
    return ratio(r->totals.positives, r->totals.weight);
}
double slr_report_window_logloss(const slr_metrics_report *r)
{
    return ratio(r->window.loss, r->window.weight);
}
double slr_report_window_mean_prediction(const slr_metrics_report *r)
{
    return ratio(r->window.predicted, r->window.weight);
}
double slr_report_window_positive_rate(const slr_metrics_report *r)
{
    return ratio(r->window.positives, r->window.weight);
}

/* An output buffer with snprintf accounting: `need` counts what the full
 * text takes even when `size` is too small. */
typedef struct out {
    char *buf;
    size_t size, need;
} out;

__attribute__((format(printf, 2, 3))) static void put(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->need < o->size ? o->size - o->need : 0;
    int n = vsnprintf(room ? o->buf + o->need : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->need += (size_t)n;
}

/* %.17g round-trips a double; JSON has no NaN, so unknown is null. */
static void json_num(out *o, const char *key, double v)
{
    if (isfinite(v))
        put(o, ",\"%s\":%.17g", key, v);
    else
        put(o, ",\"%s\":null", key);
}

static void json_u64(out *o, const char *key, uint64_t v)
{
    put(o, ",\"%s\":%llu", key, (unsigned long long)v);
}

size_t slr_report_json(const slr_metrics_report *r, char *buf, size_t size)
{
    out o = {buf, size, 0};
    if (size)
        buf[0] = '\0';
    put(&o, "{\"time\":%.3f", r->unix_time);
    json_num(&o, "run_seconds", r->run_seconds);
    json_u64(&o, "examples", r->totals.examples);
    json_u64(&o, "examples_this_run", r->examples_this_run);
    json_u64(&o, "records_this_run", r->records_this_run);
    json_num(&o, "weight", r->totals.weight);
    json_num(&o, "logloss", slr_report_logloss(r));
    json_num(&o, "auc", r->auc);
    json_num(&o, "auc_error_bound", r->auc_error_bound);
    json_num(&o, "mean_prediction", slr_report_mean_prediction(r));
    json_num(&o, "positive_rate", slr_report_positive_rate(r));
    json_u64(&o, "window_capacity", r->window_capacity);
    json_u64(&o, "window_examples", r->window.examples);
    json_num(&o, "window_logloss", slr_report_window_logloss(r));
    json_num(&o, "window_auc", r->window.auc);
    json_num(&o, "window_mean_prediction", slr_report_window_mean_prediction(r));
    json_num(&o, "window_positive_rate", slr_report_window_positive_rate(r));
    json_num(&o, "examples_per_second", r->examples_per_second);
    json_u64(&o, "bad", r->totals.bad);
    json_u64(&o, "unlabelled", r->totals.unlabelled);
    json_u64(&o, "dead_lettered", r->source.dead_lettered);
    put(&o, ",\"rejected\":{");
    for (int k = 0; k < SLR_BAD_REASON_COUNT; k++)
        put(&o, "%s\"%s\":%llu", k ? "," : "", slr_bad_reason_name((slr_bad_reason)k),
            (unsigned long long)r->totals.rejected[k]);
    put(&o, "}");
    if (r->source.consumer_lag >= 0)
        put(&o, ",\"consumer_lag\":%lld", (long long)r->source.consumer_lag);
    else
        put(&o, ",\"consumer_lag\":null");
    json_u64(&o, "retention_lost", r->source.retention_lost);
    json_u64(&o, "features", r->totals.features);
    json_u64(&o, "checkpoints_this_run", r->checkpoints_this_run);
    put(&o, ",\"final\":%s}\n", r->final ? "true" : "false");
    return o.need;
}

/* Prometheus floats: Go's ParseFloat syntax, which takes NaN and +Inf. */
static void prom(out *o, const char *name, const char *type, const char *help, double v)
{
    put(o, "# HELP streamlr_%s %s\n# TYPE streamlr_%s %s\n", name, help, name, type);
    if (isnan(v))
        put(o, "streamlr_%s NaN\n", name);
    else
        put(o, "streamlr_%s %.17g\n", name, v);
}

size_t slr_report_prometheus(const slr_metrics_report *r, char *buf, size_t size)
{
    out o = {buf, size, 0};
    if (size)
        buf[0] = '\0';
    const slr_metrics *t = &r->totals;
    prom(&o, "examples_total", "counter",
         "Labelled examples learned, including those before a resume.", (double)t->examples);
    prom(&o, "weight_total", "counter", "Sum of importance weights of learned examples.",
         t->weight);
    prom(&o, "logloss_weighted_total", "counter",
         "Sum of weighted progressive log loss (rate() of it over rate() of weight_total is "
         "the recent log loss).",
         t->loss);
    prom(&o, "positives_weighted_total", "counter", "Sum of weighted labels.", t->positives);
    prom(&o, "predicted_weighted_total", "counter", "Sum of weighted predictions.", t->predicted);
    prom(&o, "logloss", "gauge", "Progressive log loss over all examples.", slr_report_logloss(r));
    prom(&o, "auc", "gauge", "Cumulative AUC over all examples (score histogram).", r->auc);
    prom(&o, "auc_error_bound", "gauge",
         "Upper bound on |auc - exact cumulative AUC| from ties within histogram bins.",
         r->auc_error_bound);
    prom(&o, "mean_prediction", "gauge", "Weighted mean prediction over all examples.",
         slr_report_mean_prediction(r));
    prom(&o, "positive_rate", "gauge", "Weighted positive rate over all examples.",
         slr_report_positive_rate(r));
    prom(&o, "window_capacity", "gauge", "Size N of the sliding window (--auc-window).",
         (double)r->window_capacity);
    prom(&o, "window_examples", "gauge", "Examples now in the sliding window.",
         (double)r->window.examples);
    prom(&o, "window_logloss", "gauge", "Progressive log loss over the last N examples.",
         slr_report_window_logloss(r));
    prom(&o, "window_auc", "gauge", "Exact AUC over the last N examples.", r->window.auc);
    prom(&o, "window_mean_prediction", "gauge", "Weighted mean prediction over the last N.",
         slr_report_window_mean_prediction(r));
    prom(&o, "window_positive_rate", "gauge", "Weighted positive rate over the last N.",
         slr_report_window_positive_rate(r));
    prom(&o, "examples_per_second", "gauge",
         "Examples learned per second this run, excluding checkpoint writing.",
         r->examples_per_second);
    prom(&o, "records_total", "counter", "Records consumed this run (learned, bad or skipped).",
         (double)r->records_this_run);
    prom(&o, "bad_records_total", "counter", "Records rejected as bad input.", (double)t->bad);
    prom(&o, "unlabelled_total", "counter", "Examples without a label.", (double)t->unlabelled);
    prom(&o, "dead_lettered_total", "counter", "Records sent to the dead-letter sink.",
         (double)r->source.dead_lettered);
    put(&o, "# HELP streamlr_rejected_total Records that could not be learned from, by reason "
            "(docs/DEAD_LETTERS.md).\n# TYPE streamlr_rejected_total counter\n");
    for (int k = 0; k < SLR_BAD_REASON_COUNT; k++)
        put(&o, "streamlr_rejected_total{reason=\"%s\"} %llu\n",
            slr_bad_reason_name((slr_bad_reason)k), (unsigned long long)t->rejected[k]);
    prom(&o, "retention_lost_total", "counter",
         "Messages deleted by retention before they were consumed.",
         (double)r->source.retention_lost);
    if (r->source.consumer_lag >= 0)
        prom(&o, "consumer_lag", "gauge",
             "Messages behind the high watermark, summed over assigned partitions.",
             (double)r->source.consumer_lag);
    prom(&o, "checkpoints_total", "counter", "Checkpoints written this run.",
         (double)r->checkpoints_this_run);
    if (r->last_checkpoint_unix_time > 0)
        prom(&o, "last_checkpoint_timestamp_seconds", "gauge",
             "Unix time of the newest checkpoint written this run.",
             r->last_checkpoint_unix_time);
    prom(&o, "start_time_seconds", "gauge", "Unix time this run started.", r->start_unix_time);
    prom(&o, "report_timestamp_seconds", "gauge", "Unix time these values were taken.",
         r->unix_time);
    return o.need;
}
