/* metrics_report.c - a metrics snapshot as a JSON line and as Prometheus text.
 *
 * Both formatters work on a copied slr_metrics_report and nothing else, so
 * the Prometheus thread can format while the training loop runs on.  The
 * JSON keys and the Prometheus names are documented in README.md ("A
 * long-running job with metrics"); `streamlr plot` reads the JSON keys.
 * The JSON goes through jansson (util/json.h); the Prometheus text is not
 * JSON and stays printf. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "streamlr/metrics.h"
#include "util/json.h"

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

/* One object per line, keys in the order README.md lists them.  Unknown
 * (NaN) is null: JSON has no NaN. */
static json_t *report_object(const slr_metrics_report *r)
{
    json_t *o = json_object(), *rejected = json_object();
    if (!o || !rejected) {
        json_decref(o);
        json_decref(rejected);
        return NULL;
    }
    int bad = 0;
#define NUM(k, v) (bad |= json_object_set_new(o, k, slr_json_number(v)))
#define INT(k, v) (bad |= json_object_set_new(o, k, json_integer((json_int_t)(v))))
    /* 17 digits like every number (microseconds here); rounding to the
     * millisecond would print as 1796596882.0810001 */
    NUM("time", r->unix_time);
    NUM("run_seconds", r->run_seconds);
    INT("examples", r->totals.examples);
    INT("examples_this_run", r->examples_this_run);
    INT("records_this_run", r->records_this_run);
    NUM("weight", r->totals.weight);
    NUM("logloss", slr_report_logloss(r));
    NUM("auc", r->auc);
    NUM("auc_error_bound", r->auc_error_bound);
    NUM("mean_prediction", slr_report_mean_prediction(r));
    NUM("positive_rate", slr_report_positive_rate(r));
    INT("window_capacity", r->window_capacity);
    INT("window_examples", r->window.examples);
    NUM("window_logloss", slr_report_window_logloss(r));
    NUM("window_auc", r->window.auc);
    NUM("window_mean_prediction", slr_report_window_mean_prediction(r));
    NUM("window_positive_rate", slr_report_window_positive_rate(r));
    NUM("examples_per_second", r->examples_per_second);
    INT("bad", r->totals.bad);
    INT("unlabelled", r->totals.unlabelled);
    INT("dead_lettered", r->source.dead_lettered);
    for (int k = 0; k < SLR_BAD_REASON_COUNT; k++)
        bad |= json_object_set_new(rejected, slr_bad_reason_name((slr_bad_reason)k),
                                   json_integer((json_int_t)r->totals.rejected[k]));
    bad |= json_object_set_new(o, "rejected", rejected);
    bad |= json_object_set_new(o, "consumer_lag", r->source.consumer_lag >= 0
                                                      ? json_integer(r->source.consumer_lag)
                                                      : json_null());
    INT("retention_lost", r->source.retention_lost);
    INT("features", r->totals.features);
    INT("checkpoints_this_run", r->checkpoints_this_run);
    bad |= json_object_set_new(o, "final", json_boolean(r->final));
#undef NUM
#undef INT
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

size_t slr_report_json(const slr_metrics_report *r, char *buf, size_t size)
{
    if (size)
        buf[0] = '\0';
    json_t *o = report_object(r);
    char *text = o ? json_dumps(o, SLR_JSON_FLAGS) : NULL;
    json_decref(o);
    if (!text)
        return 0; /* out of memory */
    /* snprintf's contract: as much as fits, NUL-terminated, the full length returned */
    int n = snprintf(buf, size, "%s\n", text);
    free(text);
    return n > 0 ? (size_t)n : 0;
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
