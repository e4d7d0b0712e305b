/* plot.c - draw a plot_figure with cairo (see plot.h).
 *
 * Why cairo (Debian's libcairo2-dev): one drawing path gives both PNG and
 * SVG, with antialiased lines and real fonts through fontconfig, so the
 * picture a user opens and the one a test inspects come from the same
 * code.  Writing SVG by hand would have been easy, PNG by hand would mean a
 * rasteriser and a bitmap font; cairo is packaged everywhere streamlr
 * builds, and only the tool links it, not libstreamlr.  It is optional
 * (configure --without-cairo): then plot_write only says it is missing. */
#include "config.h"

#include <stdio.h>

#include "plot.h"

#if !HAVE_CAIRO
int plot_write(const plot_figure *fig, plot_format format, const char *path, char *errbuf,
               size_t errsize)
{
    (void)fig;
    (void)format;
    (void)path;
    snprintf(errbuf, errsize, "built without plot support (cairo)");
    return -1;
}
#else
#include <cairo-svg.h>
#include <cairo.h>
#include <fontconfig/fontconfig.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "plot.h"

#define WIDTH 960.0
#define PANEL_HEIGHT 300.0
#define TITLE_HEIGHT 40.0
#define LEGEND_HEIGHT 30.0
#define HEADER_HEIGHT (TITLE_HEIGHT + LEGEND_HEIGHT)
#define XLABEL_HEIGHT 56.0
#define MARGIN_LEFT 84.0
#define MARGIN_RIGHT 28.0
#define PANEL_GAP 26.0
#define FONT "DejaVu Sans"

typedef struct range {
    double lo, hi;
} range;

/* A tick step of 1, 2 or 5 times a power of ten giving about `want` ticks. */
static double nice_step(double span, int want)
{
    double raw = span / want, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static range data_range(const double *v, size_t n)
{
    range r = {INFINITY, -INFINITY};
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i])) {
            r.lo = fmin(r.lo, v[i]);
            r.hi = fmax(r.hi, v[i]);
        }
    return r;
}

static range panel_range(const plot_panel *p, size_t n)
{
    range r = {INFINITY, -INFINITY};
    for (int s = 0; s < p->n_series; s++) {
        range d = data_range(p->series[s].y, n);
        r.lo = fmin(r.lo, d.lo);
        r.hi = fmax(r.hi, d.hi);
    }
    if (!isfinite(r.lo)) /* nothing to show yet (e.g. AUC before both classes) */
        r = (range){0, 1};
    double pad = (r.hi - r.lo) * 0.06;
    if (pad == 0)
        pad = fabs(r.hi) * 0.05 + 0.01;
    r.lo -= pad;
    r.hi += pad;
    if (isfinite(p->ymin_floor))
        r.lo = fmax(r.lo, p->ymin_floor);
    if (isfinite(p->ymax_ceiling))
        r.hi = fmin(r.hi, p->ymax_ceiling);
    return r;
}

/* 0, 500, 1.5k, 20k, 1.25M: short labels for example counts */
static void count_label(char *buf, size_t size, double v)
{
    double a = fabs(v);
    if (a >= 1e9)
        snprintf(buf, size, "%gG", v / 1e9);
    else if (a >= 1e6)
        snprintf(buf, size, "%gM", v / 1e6);
    else if (a >= 1e3)
        snprintf(buf, size, "%gk", v / 1e3);
    else
        snprintf(buf, size, "%g", v);
}

static void text_at(cairo_t *cr, double x, double y, const char *s, double halign, double valign)
{
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - e.width * halign - e.x_bearing, y - e.height * valign - e.y_bearing);
    cairo_show_text(cr, s);
}

typedef struct frame {
    double left, top, width, height; /* plot area in device units */
    range x, y;
} frame;

static double fx(const frame *f, double x) { return f->left + (x - f->x.lo) / (f->x.hi - f->x.lo) * f->width; }
static double fy(const frame *f, double y) { return f->top + f->height - (y - f->y.lo) / (f->y.hi - f->y.lo) * f->height; }

static void draw_axes(cairo_t *cr, const frame *f, const char *ylabel, bool x_labels)
{
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_rectangle(cr, f->left, f->top, f->width, f->height);
    cairo_fill(cr);
    cairo_set_font_size(cr, 12);
    /* grid and tick labels */
    double ys = nice_step(f->y.hi - f->y.lo, 5), xs = nice_step(f->x.hi - f->x.lo, 8);
    char label[64];
    cairo_set_line_width(cr, 1);
    for (double v = ceil(f->y.lo / ys) * ys; v <= f->y.hi + 1e-12 * ys; v += ys) {
        double y = round(fy(f, v)) + 0.5;
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, f->left, y);
        cairo_line_to(cr, f->left + f->width, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        snprintf(label, sizeof label, "%.4g", fabs(v) < ys * 1e-6 ? 0.0 : v);
        text_at(cr, f->left - 8, y, label, 1.0, 0.5);
    }
    for (double v = ceil(f->x.lo / xs) * xs; v <= f->x.hi + 1e-12 * xs; v += xs) {
        double x = round(fx(f, v)) + 0.5;
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, x, f->top);
        cairo_line_to(cr, x, f->top + f->height);
        cairo_stroke(cr);
        if (x_labels) {
            cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
            count_label(label, sizeof label, v);
            text_at(cr, x, f->top + f->height + 8, label, 0.5, 0.0);
        }
    }
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_rectangle(cr, f->left + 0.5, f->top + 0.5, f->width - 1, f->height - 1);
    cairo_stroke(cr);
    /* y axis label, rotated */
    cairo_save(cr);
    cairo_set_font_size(cr, 14);
    cairo_translate(cr, 22, f->top + f->height / 2);
    cairo_rotate(cr, -M_PI / 2);
    text_at(cr, 0, 0, ylabel, 0.5, 0.5);
    cairo_restore(cr);
}

static void draw_series(cairo_t *cr, const frame *f, const double *x, const plot_series *s,
                        size_t n)
{
    cairo_save(cr);
    cairo_rectangle(cr, f->left, f->top, f->width, f->height);
    cairo_clip(cr);
    cairo_set_source_rgb(cr, s->rgb[0], s->rgb[1], s->rgb[2]);
    cairo_set_line_width(cr, 2);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    double dash[2] = {7, 4};
    cairo_set_dash(cr, dash, s->dashed ? 2 : 0, 0);
    bool open = false;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(s->y[i]) || !isfinite(x[i])) {
            open = false;
            continue;
        }
        if (open) {
            cairo_line_to(cr, fx(f, x[i]), fy(f, s->y[i]));
            run++;
        } else {
            cairo_move_to(cr, fx(f, x[i]), fy(f, s->y[i]));
            open = true;
            run = 1;
        }
        /* a lone point (first report, or between gaps) shows as a dot */
        bool next_missing = i + 1 == n || !isfinite(s->y[i + 1]);
        if (run == 1 && next_missing) {
            cairo_stroke(cr);
            cairo_arc(cr, fx(f, x[i]), fy(f, s->y[i]), 3, 0, 2 * M_PI);
            cairo_fill(cr);
            open = false;
        }
    }
    cairo_stroke(cr);
    cairo_restore(cr);
}

/* One legend for the figure, in a row under the title: every panel shows
 * the same kinds of series (panel 0's), and a legend outside the panels
 * never hides a curve. */
static void draw_legend(cairo_t *cr, const plot_panel *p, double y)
{
    cairo_set_font_size(cr, 13);
    double sample = 30, gap = 28, total = 0;
    for (int s = 0; s < p->n_series; s++) {
        cairo_text_extents_t e;
        cairo_text_extents(cr, p->series[s].label, &e);
        total += sample + 6 + e.x_advance + (s ? gap : 0);
    }
    double x = MARGIN_LEFT + (WIDTH - MARGIN_LEFT - MARGIN_RIGHT - total) / 2;
    for (int s = 0; s < p->n_series; s++) {
        const plot_series *ser = &p->series[s];
        double dash[2] = {7, 4};
        cairo_set_dash(cr, dash, ser->dashed ? 2 : 0, 0);
        cairo_set_source_rgb(cr, ser->rgb[0], ser->rgb[1], ser->rgb[2]);
        cairo_set_line_width(cr, 2.5);
        cairo_move_to(cr, x, y);
        cairo_line_to(cr, x + sample, y);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        cairo_text_extents_t e;
        cairo_text_extents(cr, ser->label, &e);
        text_at(cr, x + sample + 6, y, ser->label, 0.0, 0.5);
        x += sample + 6 + e.x_advance + gap;
    }
}

static void draw(cairo_t *cr, const plot_figure *fig, double height)
{
    cairo_set_source_rgb(cr, 0.97, 0.97, 0.97);
    cairo_paint(cr);
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, 17);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text_at(cr, WIDTH / 2, TITLE_HEIGHT / 2, fig->title, 0.5, 0.5);
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);

    if (fig->n_panels > 0)
        draw_legend(cr, &fig->panels[0], TITLE_HEIGHT + LEGEND_HEIGHT / 2);
    range xr = data_range(fig->x, fig->n);
    xr.lo = fmin(xr.lo, 0); /* examples: show the curve from the start */
    if (!(xr.hi > xr.lo))
        xr = (range){xr.lo - 1, xr.lo + 1};
    for (int p = 0; p < fig->n_panels; p++) {
        frame f = {MARGIN_LEFT, HEADER_HEIGHT + p * (PANEL_HEIGHT + PANEL_GAP),
                   WIDTH - MARGIN_LEFT - MARGIN_RIGHT, PANEL_HEIGHT, xr,
                   panel_range(&fig->panels[p], fig->n)};
        bool last = p + 1 == fig->n_panels;
        draw_axes(cr, &f, fig->panels[p].ylabel, last);
        for (int s = 0; s < fig->panels[p].n_series; s++)
            draw_series(cr, &f, fig->x, &fig->panels[p].series[s], fig->n);
    }
    cairo_set_font_size(cr, 14);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text_at(cr, MARGIN_LEFT + (WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / 2, height - 18, fig->xlabel,
            0.5, 0.5);
}

int plot_write(const plot_figure *fig, plot_format format, const char *path, char *errbuf,
               size_t errsize)
{
    double height = HEADER_HEIGHT + fig->n_panels * PANEL_HEIGHT +
                    (fig->n_panels - 1) * PANEL_GAP + XLABEL_HEIGHT;
    cairo_surface_t *surface =
        format == PLOT_SVG ? cairo_svg_surface_create(path, WIDTH, height)
                           : cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)WIDTH, (int)height);
    cairo_t *cr = cairo_create(surface);
    draw(cr, fig, height);
    cairo_destroy(cr);
    cairo_status_t st = format == PLOT_PNG ? cairo_surface_write_to_png(surface, path)
                                           : (cairo_surface_finish(surface), cairo_surface_status(surface));
    if (st == CAIRO_STATUS_SUCCESS)
        st = cairo_surface_status(surface);
    cairo_surface_destroy(surface);
    /* hand back cairo's and fontconfig's caches: a one-shot command does not
     * need them, and leak checkers (the ASan build) then see no leak */
    cairo_debug_reset_static_data();
    FcFini();
    if (st != CAIRO_STATUS_SUCCESS) {
        snprintf(errbuf, errsize, "cannot write %s: %s", path, cairo_status_to_string(st));
        return -1;
    }
    return 0;
}

#endif
