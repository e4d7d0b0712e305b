/* check_metrics.c - the online metrics against brute force: the sliding
 * window's AUC, loss and calibration over exactly the last N examples; the
 * histogram AUC within its stated bound of the exact one; the reports'
 * JSON and Prometheus text; the Prometheus endpoint over loopback. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "streamlr/metrics.h"
#include "streamlr/metrics_server.h"
#include "testutil.h"

/* AUC by its definition: every (positive, negative) pair, O(n^2). */
static double brute_auc(const slr_scored *s, size_t n)
{
    double area = 0, pos = 0, neg = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i].y > 0.5)
            pos += s[i].weight;
        else
            neg += s[i].weight;
        for (size_t j = 0; j < n; j++)
            if (s[i].y > 0.5 && s[j].y < 0.5)
                area += s[i].weight * s[j].weight *
                        (s[i].p > s[j].p ? 1.0 : s[i].p == s[j].p ? 0.5 : 0.0);
    }
    return pos > 0 && neg > 0 ? area / (pos * neg) : NAN;
}

/* scores with many exact ties (rounded to 1/64) or continuous, weights 1 or random */
static slr_scored random_scored(test_rng *r, int ties, int weighted)
{
    double z = test_rng_normal(r);
    double p = 1 / (1 + exp(-z));
    if (ties)
        p = round(p * 64) / 64;
    double y = test_rng_unif(r) < 1 / (1 + exp(-1.5 * z)) ? 1 : 0;
    double w = weighted ? 0.25 + 2 * test_rng_unif(r) : 1.0;
    double loss = y ? -log(fmax(p, 1e-12)) : -log(fmax(1 - p, 1e-12));
    return (slr_scored){p, w, loss, y};
}

START_TEST(window_is_exact_over_the_last_n)
{
    const uint32_t caps[] = {1, 2, 7, 100, 333};
    test_rng r = {.s = 42 + (uint64_t)_i};
    uint32_t cap = caps[_i % 5];
    int ties = _i % 2, weighted = (_i / 2) % 2;
    slr_auc_window *w;
    ck_assert_int_eq(slr_auc_window_create(&w, cap, NULL), SLR_OK);
    slr_scored all[2000];
    for (size_t n = 0; n < 1000; n++) {
        all[n] = random_scored(&r, ties, weighted);
        slr_auc_window_add(w, all[n].p, all[n].y, all[n].weight, all[n].loss);
        if (n % 37 != 0 && n != 999)
            continue;
        size_t first = n + 1 > cap ? n + 1 - cap : 0, k = n + 1 - first;
        slr_window_stats ws;
        slr_auc_window_stats(w, &ws);
        ck_assert_uint_eq(ws.examples, k);
        double want = brute_auc(all + first, k), wt = 0, loss = 0, pos = 0, pred = 0;
        for (size_t i = first; i <= n; i++) {
            wt += all[i].weight;
            loss += all[i].weight * all[i].loss;
            pos += all[i].weight * all[i].y;
            pred += all[i].weight * all[i].p;
        }
        if (isnan(want))
            ck_assert_msg(isnan(ws.auc), "n=%zu cap=%u: want NaN, got %g", n, cap, ws.auc);
        else
            ck_assert_msg(fabs(ws.auc - want) < 1e-12, "n=%zu cap=%u: AUC %.15g vs brute %.15g",
                          n, cap, ws.auc, want);
        ck_assert(test_close(ws.weight, wt, 1e-12, 0));
        ck_assert(test_close(ws.loss, loss, 1e-12, 0));
        ck_assert(test_close(ws.positives, pos, 1e-12, 1e-12));
        ck_assert(test_close(ws.predicted, pred, 1e-12, 0));
        /* oldest-first access sees exactly the same examples */
        for (size_t i = 0; i < k; i++)
            ck_assert(slr_auc_window_at(w, (uint32_t)i)->p == all[first + i].p);
    }
    slr_auc_window_destroy(w);
}
END_TEST

START_TEST(window_copy_tail_keeps_the_newest)
{
    test_rng r = {.s = 7};
    slr_auc_window *big, *small, *bigger;
    ck_assert_int_eq(slr_auc_window_create(&big, 50, NULL), SLR_OK);
    ck_assert_int_eq(slr_auc_window_create(&small, 20, NULL), SLR_OK);
    ck_assert_int_eq(slr_auc_window_create(&bigger, 80, NULL), SLR_OK);
    slr_scored all[130];
    for (int i = 0; i < 130; i++) {
        all[i] = random_scored(&r, 0, 1);
        slr_auc_window_add(big, all[i].p, all[i].y, all[i].weight, all[i].loss);
    }
    slr_auc_window_copy_tail(small, big);
    ck_assert_uint_eq(small->size, 20);
    for (uint32_t i = 0; i < 20; i++)
        ck_assert(slr_auc_window_at(small, i)->p == all[110 + i].p);
    slr_auc_window_copy_tail(bigger, big);
    ck_assert_uint_eq(bigger->size, 50);
    for (uint32_t i = 0; i < 50; i++)
        ck_assert(slr_auc_window_at(bigger, i)->weight == all[80 + i].weight);
    slr_auc_window *none;
    ck_assert_int_eq(slr_auc_window_create(&none, 0, NULL), SLR_ERR_ARG);
    ck_assert_ptr_null(none);
    slr_auc_window_destroy(small);
    slr_auc_window_destroy(bigger);
    slr_auc_window_destroy(big);
}
END_TEST

START_TEST(histogram_bins_are_monotone)
{
    test_rng r = {.s = 99};
    /* edges and random pairs, including both halves and the far tails */
    const double edge[] = {0, 0x1p-40, 0x1p-32, 1e-9, 0.25, 0.5 - 1e-16, 0.5, 0.5 + 1e-16,
                           0.75, 1 - 1e-9, 1 - 0x1p-32, 1 - 0x1p-40, 1};
    for (size_t i = 0; i + 1 < sizeof edge / sizeof edge[0]; i++)
        ck_assert_msg(slr_auc_histogram_bin(edge[i]) <= slr_auc_histogram_bin(edge[i + 1]),
                      "bin(%g) > bin(%g)", edge[i], edge[i + 1]);
    ck_assert_uint_lt(slr_auc_histogram_bin(0.5), slr_auc_histogram_bin(0.5 + 1e-6));
    ck_assert_uint_eq(slr_auc_histogram_bin(0), 0);
    ck_assert_uint_eq(slr_auc_histogram_bin(1), SLR_AUC_HISTOGRAM_BINS - 1);
    for (int i = 0; i < 100000; i++) {
        double a = 1 / (1 + exp(-8 * test_rng_normal(&r))), b = 1 / (1 + exp(-8 * test_rng_normal(&r)));
        if (a > b) {
            double t = a;
            a = b;
            b = t;
        }
        ck_assert(slr_auc_histogram_bin(a) <= slr_auc_histogram_bin(b));
        ck_assert_uint_lt(slr_auc_histogram_bin(b), SLR_AUC_HISTOGRAM_BINS);
        /* fine: scores 0.5% apart (relative to the nearer end) land in different bins */
        double q = fmin(a, 1 - a);
        if (q > 0x1p-31 && a < 0.49) /* 0.5% > one bin (2^-8 of the binade) */
            ck_assert_uint_lt(slr_auc_histogram_bin(a), slr_auc_histogram_bin(a * 1.005));
    }
}
END_TEST

START_TEST(histogram_auc_within_its_bound)
{
    test_rng r = {.s = 1234 + (uint64_t)_i};
    enum { N = 3000 };
    static slr_scored s[N];
    slr_auc_histogram *h;
    ck_assert_int_eq(slr_auc_histogram_create(&h, NULL), SLR_OK);
    double auc, bound;
    slr_auc_histogram_auc(h, &auc, &bound);
    ck_assert(isnan(auc));
    for (int i = 0; i < N; i++) {
        s[i] = random_scored(&r, _i == 1, _i == 2);
        if (_i == 3) /* coarse scores: many share a bin, the bound must widen */
            s[i].p = 0.3 + 1e-4 * floor(s[i].p * 10);
        slr_auc_histogram_add(h, s[i].p, s[i].y, s[i].weight);
    }
    double exact = brute_auc(s, N);
    slr_auc_histogram_auc(h, &auc, &bound);
    ck_assert_msg(fabs(auc - exact) <= bound + 1e-12, "case %d: hist %.9f exact %.9f bound %.3g",
                  _i, auc, exact, bound);
    if (_i == 1) /* exact ties of equal scores count half in both */
        ck_assert_msg(fabs(auc - exact) < 1e-12, "ties: %.15g vs %.15g", auc, exact);
    if (_i == 0 || _i == 2)
        ck_assert_msg(bound < 0.01, "case %d: bound %g is too loose to be useful", _i, bound);
    if (_i == 3)
        ck_assert_msg(bound > 0.01, "coarse scores: bound %g should admit the ties", bound);
    slr_auc_histogram_destroy(h);
}
END_TEST

static slr_metrics_report sample_report(void)
{
    slr_metrics_report r;
    memset(&r, 0, sizeof r);
    r.unix_time = 1700000000.5;
    r.totals.examples = 1000;
    r.totals.weight = 1000;
    r.totals.loss = 450.25;
    r.totals.positives = 250;
    r.totals.predicted = 260;
    r.totals.bad = 3;
    r.totals.rejected[SLR_BAD_LABEL] = 2;
    r.totals.rejected[SLR_BAD_JUNK] = 1;
    r.window.examples = 100;
    r.window.weight = 100;
    r.window.loss = 40;
    r.window.auc = 0.75;
    r.window_capacity = 100;
    r.auc = NAN;
    r.auc_error_bound = NAN;
    slr_source_stats_init(&r.source);
    return r;
}

START_TEST(report_text_formats)
{
    slr_metrics_report r = sample_report();
    char buf[8192];
    size_t n = slr_report_json(&r, buf, sizeof buf);
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert(strchr(buf, '\n') == buf + n - 1); /* one line */
    ck_assert_ptr_nonnull(strstr(buf, "\"examples\":1000,"));
    const char *ll = strstr(buf, "\"logloss\":");
    ck_assert_ptr_nonnull(ll);
    ck_assert(strtod(ll + 10, NULL) == 450.25 / 1000); /* %.17g round-trips */
    ck_assert_ptr_nonnull(strstr(buf, "\"auc\":null"));
    ck_assert_ptr_nonnull(strstr(buf, "\"window_auc\":0.75"));
    ck_assert_ptr_nonnull(strstr(buf, "\"consumer_lag\":null"));
    ck_assert_ptr_nonnull(strstr(buf, ",\"rejected\":{\"decode\":0,\"junk\":1,\"too_large\":0,"
                                      "\"label\":2,\"weight\":0,\"value\":0,\"too_many_features\":0,"
                                      "\"unlabelled\":0},"));
    ck_assert_ptr_null(strstr(buf, "nan"));
    /* too small a buffer: truncated, NUL-terminated, length still reported */
    char small[16];
    ck_assert_uint_eq(slr_report_json(&r, small, sizeof small), n);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);

    r.source.consumer_lag = 42;
    r.source.retention_lost = 7;
    n = slr_report_prometheus(&r, buf, sizeof buf);
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_ptr_nonnull(strstr(buf, "# TYPE streamlr_examples_total counter\nstreamlr_examples_total 1000\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nstreamlr_consumer_lag 42\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nstreamlr_retention_lost_total 7\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nstreamlr_bad_records_total 3\n"));
    ck_assert_ptr_nonnull(strstr(buf, "# TYPE streamlr_rejected_total counter\n"
                                      "streamlr_rejected_total{reason=\"decode\"} 0\n"
                                      "streamlr_rejected_total{reason=\"junk\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nstreamlr_rejected_total{reason=\"label\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nstreamlr_auc NaN\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nstreamlr_window_logloss 0.40000000000000002\n"));
    /* every sample line is "name value" with a known name, HELP and TYPE before it */
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#')
            continue;
        ck_assert_msg(!strncmp(line, "streamlr_", 9) && strchr(line, ' '), "bad line: %s", line);
    }
    r.source.consumer_lag = -1;
    n = slr_report_prometheus(&r, buf, sizeof buf);
    ck_assert_ptr_null(strstr(buf, "consumer_lag"));
}
END_TEST

/* One HTTP/1.0 GET over loopback with bounded waits; returns the response. */
static char *http_get(uint16_t port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    ck_assert_int_eq(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *resp = calloc(cap, 1);
    ssize_t k;
    while (len + 1 < cap && (k = read(fd, resp + len, cap - 1 - len)) > 0)
        len += (size_t)k;
    close(fd);
    return resp;
}

START_TEST(prometheus_scrape_over_loopback)
{
    slr_metrics_server *s;
    slr_error err;
    ck_assert_int_eq(slr_metrics_server_start(&s, "not-an-address", 0, &err), SLR_ERR_ARG);
    ck_assert_msg(slr_metrics_server_start(&s, NULL, 0, &err) == SLR_OK, "%s", err.msg);
    uint16_t port = slr_metrics_server_port(s);
    ck_assert_uint_gt(port, 0);

    char *resp = http_get(port, "/metrics");
    ck_assert_msg(!strncmp(resp, "HTTP/1.0 503", 12) || !strncmp(resp, "HTTP/1.1 503", 12),
                  "before publish: %.60s", resp);
    free(resp);

    slr_metrics_report r = sample_report();
    slr_metrics_server_publish(s, &r);
    resp = http_get(port, "/metrics");
    ck_assert_msg(strstr(resp, " 200 OK\r\n"), "%.80s", resp);
    ck_assert_ptr_nonnull(strstr(resp, "text/plain; version=0.0.4"));
    ck_assert_ptr_nonnull(strstr(resp, "\r\n\r\n# HELP streamlr_examples_total"));
    ck_assert_ptr_nonnull(strstr(resp, "\nstreamlr_examples_total 1000\n"));
    free(resp);

    /* a newer snapshot replaces the old one whole */
    r.totals.examples = 2000;
    r.totals.bad = 9;
    slr_metrics_server_publish(s, &r);
    resp = http_get(port, "/metrics");
    ck_assert_ptr_nonnull(strstr(resp, "\nstreamlr_examples_total 2000\n"));
    ck_assert_ptr_nonnull(strstr(resp, "\nstreamlr_bad_records_total 9\n"));
    free(resp);
    ck_assert_uint_eq(slr_metrics_server_scrapes(s), 2);

    resp = http_get(port, "/nope");
    ck_assert_ptr_nonnull(strstr(resp, " 404 "));
    free(resp);

    /* the port is taken while we serve */
    slr_metrics_server *other;
    ck_assert_int_eq(slr_metrics_server_start(&other, "127.0.0.1", port, &err), SLR_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "--metrics-port"));
    slr_metrics_server_stop(s);
}
END_TEST

/* SigBlk of thread tid, from /proc (the mask as the kernel sees it). */
static unsigned long long blocked_signals(const char *tid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%s/status", tid);
    FILE *f = fopen(path, "r");
    unsigned long long mask = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "SigBlk: %llx", &mask) == 1)
            break;
    if (f)
        fclose(f);
    return mask;
}

/* The server's polling thread must not take SIGTERM or SIGINT from the
 * embedder's threads (a job's own threads start with all signals blocked;
 * on 1d4fe0e the libmicrohttpd thread did not). */
START_TEST(server_thread_blocks_signals)
{
    slr_metrics_server *s;
    slr_error err;
    ck_assert_msg(slr_metrics_server_start(&s, NULL, 0, &err) == SLR_OK, "%s", err.msg);
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    char self[32];
    snprintf(self, sizeof self, "%d", (int)getpid());
    int others = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, self))
            continue;
        unsigned long long m = blocked_signals(e->d_name);
        ck_assert_msg(m & (1ull << (SIGTERM - 1)) && m & (1ull << (SIGINT - 1)),
                      "thread %s: SigBlk %llx", e->d_name, m);
        others++;
    }
    closedir(d);
    ck_assert_int_ge(others, 1); /* the polling thread was looked at */
    /* the caller's own mask is as it was */
    sigset_t now;
    pthread_sigmask(SIG_SETMASK, NULL, &now);
    ck_assert(!sigismember(&now, SIGTERM));
    slr_metrics_server_stop(s);
}
END_TEST

/* Built without libmicrohttpd: starting says so, in words a user can act on. */
START_TEST(server_missing_says_so)
{
    slr_metrics_server *s;
    slr_error err;
    ck_assert_int_ne(slr_metrics_server_start(&s, NULL, 0, &err), SLR_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "built without metrics-port support"));
    ck_assert_ptr_null(s);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("auc");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, window_is_exact_over_the_last_n, 0, 10);
    tcase_add_test(tc, window_copy_tail_keeps_the_newest);
    tcase_add_test(tc, histogram_bins_are_monotone);
    tcase_add_loop_test(tc, histogram_auc_within_its_bound, 0, 4);
    suite_add_tcase(s, tc);
    TCase *rep = tcase_create("report");
    tcase_set_timeout(rep, 30);
    tcase_add_test(rep, report_text_formats);
#if HAVE_MICROHTTPD
    tcase_add_test(rep, prometheus_scrape_over_loopback);
    tcase_add_test(rep, server_thread_blocks_signals);
#else
    tcase_add_test(rep, server_missing_says_so);
#endif
    suite_add_tcase(s, rep);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
