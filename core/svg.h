/* Self-contained SVG charts for the training and evaluation reports.
 *
 * Each chart is appended to a growable string (qh_strbuf) as one <svg> element, so an HTML
 * report can inline several of them, or qh_strbuf_save can write one out as a .svg file.
 * The output uses no external resources (no fonts, images, scripts or stylesheets), only
 * generic font families (sans-serif), and no id attributes, so charts inlined side by side
 * in one HTML page cannot clash. Every piece of caller text (titles, series names, category
 * labels, units) is XML-escaped; control characters and invalid UTF-8 become '?'.
 *
 * Size: width and height are in pixels (0 picks a default), and the root element carries a
 * matching viewBox so the chart scales cleanly when a page resizes it. */
#ifndef QHEAD_SVG_H
#define QHEAD_SVG_H

#include <stddef.h>
#include <stdint.h>

/* ---- growable string ----------------------------------------------------------------
 * A zero-initialised qh_strbuf is an empty string. data stays NUL-terminated once anything
 * was appended (it is NULL before). On out of memory an append returns QH_ESYS, leaves the
 * contents as they were and sets `failed`, which stays set: a writer can append freely and
 * check once at the end. */
typedef struct {
    char *data;
    size_t len, cap;
    int failed;
} qh_strbuf;

int qh_strbuf_append(qh_strbuf *b, const char *s);
int qh_strbuf_appendn(qh_strbuf *b, const char *s, size_t n);
int qh_strbuf_appendf(qh_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s with & < > " ' escaped as XML entities, fit for element text and attributes. */
int qh_strbuf_append_xml(qh_strbuf *b, const char *s);
void qh_strbuf_free(qh_strbuf *b); /* back to the empty state */
/* Write the contents to path atomically (temporary file, fsync, rename). */
int qh_strbuf_save(const qh_strbuf *b, const char *path);

/* ---- charts -------------------------------------------------------------------------
 * All chart functions append to out and return QH_OK, QH_EINPUT for unusable arguments
 * (a negative count, a NULL array with a positive count, a size under 200x150 pixels), or
 * QH_ESYS when out of memory. Nothing is appended on QH_EINPUT. */

/* Common options; fields left 0/NULL take defaults. */
typedef struct {
    int width, height;   /* pixels; defaults 720 x 420 (heatmap: 560 x 520) */
    const char *title;   /* drawn at the top; NULL or "" for none */
    const char *x_label; /* axis titles; the heatmap defaults them to "predicted" and "true" */
    const char *y_label;
    /* Bar chart value labels: 0 = automatic (the same decimals on every bar, about 4
     * significant digits for the largest), 1..9 = that many decimals, QH_SVG_NO_DECIMALS =
     * whole numbers. */
    int decimals;
} qh_svg_opts;
#define QH_SVG_NO_DECIMALS (-1)

/* One line-chart series: n points (x[i], y[i]). Points where x or y is NaN or infinite are
 * skipped and the line joins the finite neighbours. A series with one finite point shows as
 * a dot; series with few points get a marker on every point. */
typedef struct {
    const char *name;
    const double *x, *y;
    size_t n;
} qh_svg_series;

/* Line chart of several series that may have different x values and lengths (train loss
 * every step, validation loss every epoch). Axes get ticks at round numbers (1, 2, 5 x 10^k)
 * covering every finite point; a constant y or a single point gets a small range around the
 * value; no finite point at all gives empty axes 0-1 with "no data". The legend shows every
 * series name with its colour (10 distinct colours, then dashed lines). */
int qh_svg_line_chart(qh_strbuf *out, const qh_svg_opts *opts, const qh_svg_series *series, int n_series);

/* Bar chart: one bar per category (labels[i], values[i]) with the value printed on top,
 * followed by unit (e.g. "%", "tweets/s", "J"; NULL for none). The y axis starts at 0 (it
 * extends below 0 for negative values); NaN values draw no bar and print "n/a". Long
 * labels are slanted and, past 28 characters, shortened with "...". */
int qh_svg_bar_chart(qh_strbuf *out, const qh_svg_opts *opts, const char *const *labels, const double *values,
                     int n, const char *unit);

/* Confusion-matrix heatmap: counts[true * k + pred] for k classes named labels[0..k) (NULL
 * labels print as class numbers). Rows are true classes, columns predictions; each cell
 * shows its count and is coloured by its share of the row (white 0% to dark blue 100%),
 * with the share printed under the count when the cell is large enough. A row with no
 * examples stays white. */
int qh_svg_heatmap(qh_strbuf *out, const qh_svg_opts *opts, const char *const *labels, const int64_t *counts,
                   int k);

#endif
