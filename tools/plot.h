/* plot.h - learning curves as a picture: stacked panels sharing an x axis,
 * each with labelled axes, nice ticks and a legend, drawn with cairo to PNG
 * or SVG.  Knows nothing about where the numbers come from (cmd_plot.c). */
#ifndef STREAMLR_TOOLS_PLOT_H
#define STREAMLR_TOOLS_PLOT_H

#include <stddef.h>

#define PLOT_MAX_SERIES 4
#define PLOT_MAX_PANELS 3

typedef struct plot_series {
    const char *label;
    const double *y; /* NaN = no value (the line breaks there) */
    double rgb[3];
    int dashed;
} plot_series;

typedef struct plot_panel {
    const char *ylabel;
    plot_series series[PLOT_MAX_SERIES];
    int n_series;
    double ymin_floor, ymax_ceiling; /* clamp the y range (e.g. AUC to [0, 1]); NaN = none */
} plot_panel;

typedef struct plot_figure {
    const char *title;
    const char *xlabel;
    const double *x;
    size_t n; /* points per series */
    plot_panel panels[PLOT_MAX_PANELS];
    int n_panels;
} plot_figure;

typedef enum plot_format { PLOT_PNG, PLOT_SVG } plot_format;

/* Draw fig into path; returns 0, or -1 with a message in errbuf. */
int plot_write(const plot_figure *fig, plot_format format, const char *path, char *errbuf,
               size_t errsize);

#endif
