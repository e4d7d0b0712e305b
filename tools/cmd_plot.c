/* cmd_plot.c - `streamlr plot METRICS.jsonl -o curve.png|svg`: the learning
 * curves of a job from the JSON lines `train --metrics` wrote: log loss and
 * AUC against examples, progressive (all examples so far) and over the last
 * N examples (--auc-window), one panel each.
 *
 * Each line is parsed as JSON (jansson), so whatever else a line holds
 * (the "rejected" object, keys added later) does not matter.  A line that is
 * not a JSON object with a numeric "examples" is reported and skipped, so a
 * file still being written (or cut by a crash) plots what it has. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "cli_options.h"
#include "commands.h"
#include "plot.h"

enum { X_EXAMPLES, LOGLOSS, WINDOW_LOGLOSS, AUC, WINDOW_AUC, WINDOW_CAPACITY, N_COLUMNS };
static const char *const COLUMN[N_COLUMNS] = {"examples", "logloss", "window_logloss",
                                              "auc",      "window_auc", "window_capacity"};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: streamlr plot METRICS.jsonl -o FILE.png|FILE.svg [--title TEXT]\n\n"
            "Draw the learning curves from the JSON lines written by train --metrics:\n"
            "log loss and AUC against examples seen, progressive (over all examples so\n"
            "far) and over the last N examples (--auc-window), in two panels.\n\n"
            "  -o, --output FILE  the picture; PNG or SVG by its extension\n"
            "      --format F     png | svg, when the extension does not say\n"
            "      --title TEXT   title (default: \"streamlr learning curves: METRICS\")\n"
            "  -h, --help         this text\n");
#if !HAVE_CAIRO
    fprintf(out, "\nThis streamlr was built without plot support (cairo): plot only says so.\n");
#endif
}

/* Read one metrics line; cols[i] gets the number under COLUMN[i] (NaN if
 * absent, null or not a number).  Returns false if the line is not a JSON
 * object.  Any JSON goes (nested objects such as "rejected", keys we do not
 * plot); only the columns above are looked at. */
static bool parse_line(const char *line, size_t len, double cols[N_COLUMNS])
{
    json_t *o = json_loadb(line, len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return false;
    }
    for (int i = 0; i < N_COLUMNS; i++) {
        json_t *v = json_object_get(o, COLUMN[i]);
        cols[i] = json_is_number(v) ? json_number_value(v) : NAN;
    }
    json_decref(o);
    return true;
}

static bool blank(const char *s)
{
    return s[strspn(s, " \t\r\n")] == '\0';
}

typedef struct table {
    double *col[N_COLUMNS];
    size_t n, cap;
} table;

static bool table_push(table *t, const double cols[N_COLUMNS])
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 1024;
        for (int i = 0; i < N_COLUMNS; i++) {
            double *c = realloc(t->col[i], cap * sizeof *c);
            if (!c)
                return false;
            t->col[i] = c;
        }
        t->cap = cap;
    }
    for (int i = 0; i < N_COLUMNS; i++)
        t->col[i][t->n] = cols[i];
    t->n++;
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcasecmp(s + n - k, suffix);
}

static int read_metrics(const char *path, table *t)
{
    FILE *in = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!in) {
        fprintf(stderr, "streamlr plot: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    unsigned long lineno = 0, skipped = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        double cols[N_COLUMNS];
        if (blank(line))
            continue;
        if (!parse_line(line, (size_t)len, cols) || !isfinite(cols[X_EXAMPLES])) {
            if (skipped++ < 5)
                fprintf(stderr, "streamlr plot: %s:%lu: not a metrics line; skipped\n", path,
                        lineno);
            continue;
        }
        if (!table_push(t, cols)) {
            fprintf(stderr, "streamlr plot: out of memory\n");
            rc = -1;
            break;
        }
    }
    if (ferror(in)) {
        fprintf(stderr, "streamlr plot: reading %s failed\n", path);
        rc = -1;
    }
    free(line);
    if (in != stdin)
        fclose(in);
    return rc;
}

int slr_cmd_plot(int argc, char **argv)
{
    static const struct option longopts[] = {{"output", required_argument, 0, 'o'},
                                             {"format", required_argument, 0, OPT_FORMAT},
                                             {"title", required_argument, 0, 't'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *out = NULL, *format = NULL, *title = NULL;
    optind = 1;
    int c;
    while ((c = cli_getopt(argc, argv, "o:h", longopts)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case OPT_FORMAT: format = optarg; break;
        case 't': title = optarg; break;
        case 'h': usage(stdout); return 0;
        default: return 2; /* cli_getopt said what was wrong */
        }
    }
    if (optind + 1 != argc || !out) {
        fprintf(stderr, "streamlr plot: give -o OUT and one METRICS file\n");
        cli_see_help("plot");
        return 2;
    }
#if !HAVE_CAIRO
    fprintf(stderr, "streamlr plot: this streamlr was built without plot support (cairo); "
                    "rebuild with libcairo2-dev installed, or plot the JSON lines with any "
                    "tool\n");
    return 1;
#endif
    plot_format fmt;
    if (format ? !strcmp(format, "svg") : ends_with(out, ".svg"))
        fmt = PLOT_SVG;
    else if (format ? !strcmp(format, "png") : ends_with(out, ".png"))
        fmt = PLOT_PNG;
    else {
        fprintf(stderr, "streamlr plot: say --format png or svg (or name the output *.png or "
                        "*.svg)\n");
        return 2;
    }
    const char *path = argv[optind];
    table t = {{0}, 0, 0};
    int rc = 1;
    if (read_metrics(path, &t) != 0)
        goto done;
    if (t.n == 0) {
        fprintf(stderr, "streamlr plot: %s has no metrics lines (train --metrics writes them)\n",
                path);
        goto done;
    }
    char default_title[512], window[96];
    snprintf(default_title, sizeof default_title, "streamlr learning curves: %s", path);
    double cap = t.col[WINDOW_CAPACITY][t.n - 1];
    if (isfinite(cap))
        snprintf(window, sizeof window, "last %.0f examples", cap);
    else
        snprintf(window, sizeof window, "last N examples");
    const double blue[3] = {0.12, 0.38, 0.70}, orange[3] = {0.90, 0.45, 0.05};
    plot_figure fig = {
        .title = title ? title : default_title,
        .xlabel = "examples learned",
        .x = t.col[X_EXAMPLES],
        .n = t.n,
        .n_panels = 2,
    };
    fig.panels[0] = (plot_panel){.ylabel = "log loss", .n_series = 2, .ymin_floor = 0,
                                 .ymax_ceiling = NAN};
    fig.panels[0].series[0] = (plot_series){"progressive (all examples)", t.col[LOGLOSS],
                                            {blue[0], blue[1], blue[2]}, 0};
    fig.panels[0].series[1] = (plot_series){window, t.col[WINDOW_LOGLOSS],
                                            {orange[0], orange[1], orange[2]}, 1};
    fig.panels[1] = (plot_panel){.ylabel = "AUC", .n_series = 2, .ymin_floor = 0,
                                 .ymax_ceiling = 1};
    fig.panels[1].series[0] = (plot_series){"progressive (all examples)", t.col[AUC],
                                            {blue[0], blue[1], blue[2]}, 0};
    fig.panels[1].series[1] = (plot_series){window, t.col[WINDOW_AUC],
                                            {orange[0], orange[1], orange[2]}, 1};
    char err[512];
    if (plot_write(&fig, fmt, out, err, sizeof err) != 0) {
        fprintf(stderr, "streamlr plot: %s\n", err);
        goto done;
    }
    rc = 0;
done:
    for (int i = 0; i < N_COLUMNS; i++)
        free(t.col[i]);
    return rc;
}
