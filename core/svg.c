#include "svg.h"

#include "error.h"
#include "fileio.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== string builder ================================================================== */

static int sb_reserve(qh_strbuf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return QH_OK;
    if (extra > SIZE_MAX / 2 - b->len - 1) {
        b->failed = 1;
        return qh_fail(QH_ESYS, "string buffer: %zu bytes is too large", extra);
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return qh_fail(QH_ESYS, "string buffer: out of memory growing to %zu bytes", cap);
    }
    b->data = p;
    b->cap = cap;
    return QH_OK;
}

int qh_strbuf_appendn(qh_strbuf *b, const char *s, size_t n)
{
    if (sb_reserve(b, n)) return QH_ESYS;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return QH_OK;
}

int qh_strbuf_append(qh_strbuf *b, const char *s) { return qh_strbuf_appendn(b, s, strlen(s)); }

int qh_strbuf_appendf(qh_strbuf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return qh_fail(QH_ESYS, "string buffer: bad format \"%s\"", fmt);
    }
    if (sb_reserve(b, (size_t)n)) {
        va_end(ap2);
        return QH_ESYS;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
    return QH_OK;
}

void qh_strbuf_free(qh_strbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

int qh_strbuf_save(const qh_strbuf *b, const char *path)
{
    qh_atomic_file af;
    int rc = qh_atomic_begin(&af, path);
    if (rc) return rc;
    if (b->len && fwrite(b->data, 1, b->len, af.fp) != b->len) {
        rc = qh_fail_errno(QH_ESYS, "%s: write failed", path);
        qh_atomic_abort(&af);
        return rc;
    }
    return qh_atomic_commit(&af);
}

/* Length of the valid UTF-8 sequence XML allows at s (1-4), or 0 for a byte to replace:
 * invalid or overlong UTF-8, surrogates, control characters, U+FFFE and U+FFFF. */
static int utf8_seq(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x20 || c == 0x7f) return 0;
    if (c < 0x80) return 1;
    int n;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else
        return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    if (c == 0xef && s[1] == 0xbf && (s[2] == 0xbe || s[2] == 0xbf)) return 0;
    return n;
}

/* Characters (code points, a replaced byte counting as one) in s. */
static int text_chars(const char *s)
{
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; n++) {
        int k = utf8_seq(p);
        p += k ? k : 1;
    }
    return n;
}

/* Escape s; when max_chars > 3 and s is longer, keep max_chars - 3 characters and add "...". */
static int append_xml_max(qh_strbuf *b, const char *s, int max_chars)
{
    if (!s) return QH_OK;
    int total = text_chars(s), keep = total;
    const unsigned char *p = (const unsigned char *)s;
    if (max_chars > 3 && total > max_chars) {
        /* keep max_chars - 3 characters, less any spaces that would precede the "..." */
        keep = 0;
        for (int i = 0; i < max_chars - 3; i++) {
            int k = utf8_seq(p);
            if (*p != ' ') keep = i + 1;
            p += k ? k : 1;
        }
        p = (const unsigned char *)s;
    }
    for (int i = 0; i < keep && *p; i++) {
        int k = utf8_seq(p);
        const char *rep = NULL;
        switch (k ? *p : 0) {
        case 0: rep = "?"; break;
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        }
        if (rep ? qh_strbuf_append(b, rep) : qh_strbuf_appendn(b, (const char *)p, (size_t)k)) return QH_ESYS;
        p += k ? k : 1;
    }
    if (keep < total) return qh_strbuf_append(b, "...");
    return QH_OK;
}

int qh_strbuf_append_xml(qh_strbuf *b, const char *s) { return append_xml_max(b, s, 0); }

/* ==== chart helpers =================================================================== */

#define MAX_LABEL_CHARS 28
#define PI 3.14159265358979323846
#define CHAR_W 0.6 /* average glyph advance of a sans-serif font, in ems (generous) */
#define GRID_COLOUR "#e3e3e3"
#define AXIS_COLOUR "#555"
#define TEXT_COLOUR "#222"

static const char *const PALETTE[10] = {
    "#1f5fbf", "#d9481c", "#2a9d3a", "#8e44ad", "#c99700",
    "#0f9ba8", "#d6336c", "#5c5c5c", "#7a5230", "#6b8e23",
};
static const char *const DASHES[3] = {NULL, "8 4", "2 3"};

static int is_blank(const char *s) { return !s || !*s; }

/* Estimated rendered width in pixels of s at font size px. */
static double text_width(const char *s, double px, int max_chars)
{
    if (!s) return 0;
    int n = text_chars(s);
    if (max_chars > 3 && n > max_chars) n = max_chars;
    return n * px * CHAR_W;
}

/* <text x y [attrs]>escaped s</text> */
static void put_text(qh_strbuf *b, double x, double y, const char *attrs, const char *s, int max_chars)
{
    qh_strbuf_appendf(b, "<text x=\"%.1f\" y=\"%.1f\"%s%s>", x, y, attrs ? " " : "", attrs ? attrs : "");
    append_xml_max(b, s, max_chars);
    qh_strbuf_append(b, "</text>\n");
}

static void open_svg(qh_strbuf *b, int w, int h, const char *title)
{
    qh_strbuf_appendf(b,
                      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                      "font-family=\"sans-serif\" font-size=\"12\" fill=\"" TEXT_COLOUR "\" role=\"img\"",
                      w, h, w, h);
    if (!is_blank(title)) {
        qh_strbuf_append(b, " aria-label=\"");
        qh_strbuf_append_xml(b, title);
        qh_strbuf_append(b, "\">\n<title>");
        qh_strbuf_append_xml(b, title);
        qh_strbuf_append(b, "</title>\n");
    } else
        qh_strbuf_append(b, ">\n");
    qh_strbuf_appendf(b, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", w, h);
    if (!is_blank(title))
        put_text(b, w / 2.0, 24, "text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\"", title, 0);
}

/* Round tick positions: lo..hi covered by multiples of step, step being 1, 2 or 5 x 10^k
 * chosen to give about `target` intervals. An empty range is widened around its value. */
typedef struct {
    double lo, hi, step;
    int count; /* ticks from lo to hi inclusive */
    int decimals;
} ticks;

static ticks make_ticks(double lo, double hi, int target)
{
    ticks t;
    if (!(hi > lo)) {
        double pad = lo == 0 ? 1 : fabs(lo) * 0.1;
        lo -= pad, hi += pad;
    }
    if (target < 1) target = 1;
    double raw = (hi - lo) / target;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    t.step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
    /* the small slack stops 0.30000000000000004 from adding a tick */
    t.lo = floor(lo / t.step + 1e-9) * t.step;
    t.hi = ceil(hi / t.step - 1e-9) * t.step;
    t.count = (int)floor((t.hi - t.lo) / t.step + 0.5) + 1;
    int d = -(int)floor(log10(t.step) + 1e-9);
    t.decimals = d > 0 ? d : 0;
    return t;
}

static double tick_value(const ticks *t, int i)
{
    double v = t->lo + i * t->step;
    return fabs(v) < t->step * 1e-6 ? 0.0 : v; /* never print -0 or 1e-17 */
}

static void format_tick(char *buf, size_t size, const ticks *t, double v)
{
    double big = fmax(fabs(t->lo), fabs(t->hi));
    if (big >= 1e7 || t->decimals > 6) snprintf(buf, size, "%g", v);
    else snprintf(buf, size, "%.*f", t->decimals, v);
}

static double max_tick_width(const ticks *t, double px)
{
    double w = 0;
    char buf[64];
    for (int i = 0; i < t->count; i++) {
        format_tick(buf, sizeof buf, t, tick_value(t, i));
        w = fmax(w, text_width(buf, px, 0));
    }
    return w;
}

typedef struct {
    double x0, x1, y0, y1; /* plot area in pixels: left, right, top, bottom */
} area;

/* Horizontal grid lines, y tick labels and the y axis title. */
static void draw_y_axis(qh_strbuf *b, const area *a, const ticks *ty, const char *label, double label_x)
{
    char buf[64];
    for (int i = 0; i < ty->count; i++) {
        double v = tick_value(ty, i);
        double py = a->y1 - (v - ty->lo) / (ty->hi - ty->lo) * (a->y1 - a->y0);
        qh_strbuf_appendf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"" GRID_COLOUR "\"/>\n",
                          a->x0, py, a->x1, py);
        qh_strbuf_appendf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"" AXIS_COLOUR "\"/>\n",
                          a->x0 - 5, py, a->x0, py);
        format_tick(buf, sizeof buf, ty, v);
        put_text(b, a->x0 - 8, py + 4, "text-anchor=\"end\"", buf, 0);
    }
    if (!is_blank(label)) {
        double cy = (a->y0 + a->y1) / 2;
        char attrs[128];
        snprintf(attrs, sizeof attrs, "text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 %.1f %.1f)\"",
                 label_x, cy);
        put_text(b, label_x, cy, attrs, label, 0);
    }
}

static void draw_frame(qh_strbuf *b, const area *a)
{
    qh_strbuf_appendf(b,
                      "<path d=\"M%.1f %.1fV%.1fH%.1f\" fill=\"none\" stroke=\"" AXIS_COLOUR "\" stroke-width=\"1\"/>\n",
                      a->x0, a->y0, a->y1, a->x1);
}

static void no_data(qh_strbuf *b, const area *a)
{
    put_text(b, (a->x0 + a->x1) / 2, (a->y0 + a->y1) / 2, "text-anchor=\"middle\" fill=\"#888\" font-size=\"14\"",
             "no data", 0);
}

static int check_size(const qh_svg_opts *o, int dw, int dh, int *w, int *h)
{
    *w = o && o->width ? o->width : dw;
    *h = o && o->height ? o->height : dh;
    if (*w < 200 || *h < 150 || *w > 100000 || *h > 100000)
        return qh_fail(QH_EINPUT, "chart size %dx%d: need at least 200x150 pixels (and at most 100000)", *w, *h);
    return QH_OK;
}

/* Finish a chart: on out of memory drop what this chart appended. */
static int finish(qh_strbuf *b, size_t start)
{
    qh_strbuf_append(b, "</svg>\n");
    if (!b->failed) return QH_OK;
    if (b->data) {
        b->len = start;
        b->data[start] = '\0';
    }
    return qh_fail(QH_ESYS, "chart: out of memory");
}

static int finite2(double x, double y) { return isfinite(x) && isfinite(y); }

/* ==== line chart ====================================================================== */

/* Layout of the legend: items flow left to right and wrap. */
#define LEGEND_ROW 18
#define LEGEND_SWATCH 24

static int legend_rows(const qh_svg_series *s, int n, double x0, double x1)
{
    int rows = n ? 1 : 0;
    double x = x0;
    for (int i = 0; i < n; i++) {
        double w = LEGEND_SWATCH + 6 + text_width(s[i].name ? s[i].name : "", 12, MAX_LABEL_CHARS * 2) + 18;
        if (x > x0 && x + w > x1) rows++, x = x0;
        x += w;
    }
    return rows;
}

static void series_style(qh_strbuf *b, int i)
{
    const char *dash = DASHES[(i / 10) % 3];
    qh_strbuf_appendf(b, " stroke=\"%s\"", PALETTE[i % 10]);
    if (dash) qh_strbuf_appendf(b, " stroke-dasharray=\"%s\"", dash);
}

static size_t finite_points(const qh_svg_series *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) n += finite2(s->x[i], s->y[i]);
    return n;
}

#define MARKER_MAX 40 /* series with at most this many points get a dot on each */

static void draw_series(qh_strbuf *b, const qh_svg_series *s, int idx, const area *a, const ticks *tx,
                        const ticks *ty)
{
    size_t nf = finite_points(s);
    if (!nf) return;
    double sx = (a->x1 - a->x0) / (tx->hi - tx->lo), sy = (a->y1 - a->y0) / (ty->hi - ty->lo);
    /* x non-decreasing: long series are thinned to the lowest and highest point of each
     * pixel column, which keeps spikes and cuts 45,000 steps to a few hundred points. */
    int sorted = 1;
    double prev = -INFINITY;
    for (size_t i = 0; i < s->n && sorted; i++)
        if (finite2(s->x[i], s->y[i])) {
            if (s->x[i] < prev) sorted = 0;
            prev = s->x[i];
        }
    int thin = sorted && nf > (size_t)(a->x1 - a->x0) * 2;
    if (nf >= 2) {
        qh_strbuf_append(b, "<polyline fill=\"none\" stroke-width=\"2\" stroke-linejoin=\"round\"");
        series_style(b, idx);
        qh_strbuf_append(b, " points=\"");
        long col = -1;
        size_t imin = 0, imax = 0;
        for (size_t i = 0; i <= s->n; i++) {
            int ok = i < s->n && finite2(s->x[i], s->y[i]);
            if (i < s->n && !ok) continue;
            long c = ok ? (long)floor((s->x[i] - tx->lo) * sx) : -2;
            if (thin && ok && c == col) {
                if (s->y[i] < s->y[imin]) imin = i;
                if (s->y[i] > s->y[imax]) imax = i;
                continue;
            }
            if (thin && col != -1) { /* flush the previous column */
                size_t first = imin < imax ? imin : imax, second = imin < imax ? imax : imin;
                qh_strbuf_appendf(b, "%.1f,%.1f ", a->x0 + (s->x[first] - tx->lo) * sx,
                                  a->y1 - (s->y[first] - ty->lo) * sy);
                if (second != first)
                    qh_strbuf_appendf(b, "%.1f,%.1f ", a->x0 + (s->x[second] - tx->lo) * sx,
                                      a->y1 - (s->y[second] - ty->lo) * sy);
            }
            if (!ok) break;
            if (thin) {
                col = c, imin = imax = i;
                continue;
            }
            qh_strbuf_appendf(b, "%.1f,%.1f ", a->x0 + (s->x[i] - tx->lo) * sx, a->y1 - (s->y[i] - ty->lo) * sy);
        }
        if (b->len && b->data[b->len - 1] == ' ') b->data[--b->len] = '\0';
        qh_strbuf_append(b, "\"/>\n");
    }
    if (nf <= MARKER_MAX)
        for (size_t i = 0; i < s->n; i++)
            if (finite2(s->x[i], s->y[i]))
                qh_strbuf_appendf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\"/>\n",
                                  a->x0 + (s->x[i] - tx->lo) * sx, a->y1 - (s->y[i] - ty->lo) * sy, nf == 1 ? 4 : 3,
                                  PALETTE[idx % 10]);
}

int qh_svg_line_chart(qh_strbuf *out, const qh_svg_opts *opts, const qh_svg_series *series, int n_series)
{
    int w, h;
    if (check_size(opts, 720, 420, &w, &h)) return QH_EINPUT;
    if (n_series < 0 || (n_series && !series)) return qh_fail(QH_EINPUT, "line chart: %d series", n_series);
    for (int i = 0; i < n_series; i++)
        if (series[i].n && (!series[i].x || !series[i].y))
            return qh_fail(QH_EINPUT, "line chart: series %d has %zu points but no data", i, series[i].n);
    static const qh_svg_opts none = {0};
    const qh_svg_opts *o = opts ? opts : &none;
    size_t start = out->len;

    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int s = 0; s < n_series; s++)
        for (size_t i = 0; i < series[s].n; i++)
            if (finite2(series[s].x[i], series[s].y[i])) {
                xmin = fmin(xmin, series[s].x[i]), xmax = fmax(xmax, series[s].x[i]);
                ymin = fmin(ymin, series[s].y[i]), ymax = fmax(ymax, series[s].y[i]);
            }
    int have = xmin <= xmax;
    if (!have) xmin = 0, xmax = 1, ymin = 0, ymax = 1;

    /* vertical layout: title, legend, plot, x tick labels, x axis title */
    double top = is_blank(o->title) ? 14 : 40;
    double bottom = 8 + 14 + (is_blank(o->x_label) ? 0 : 22) + 8;
    double right = 24;
    double ylab_w = is_blank(o->y_label) ? 0 : 22;
    /* left margin from a first guess at the y ticks, then the legend, then the real ticks */
    ticks ty = make_ticks(ymin, ymax, (int)((h - top - bottom - 20) / 45));
    double left = 12 + ylab_w + max_tick_width(&ty, 12) + 10;
    int rows = legend_rows(series, n_series, left, w - right);
    double legend_top = top;
    top += rows * LEGEND_ROW + (rows ? 8 : 0);
    ty = make_ticks(ymin, ymax, (int)((h - top - bottom) / 45));
    left = fmax(left, 12 + ylab_w + max_tick_width(&ty, 12) + 10);
    area a = {left, w - right, top, h - bottom};
    ticks tx = make_ticks(xmin, xmax, (int)((a.x1 - a.x0) / 90));
    /* wide x labels (large step numbers) get fewer ticks */
    while (tx.count > 2 && max_tick_width(&tx, 12) + 16 > (a.x1 - a.x0) / (tx.count - 1))
        tx = make_ticks(xmin, xmax, tx.count / 2);

    open_svg(out, w, h, o->title);
    char buf[64];
    for (int i = 0; i < tx.count; i++) {
        double v = tick_value(&tx, i);
        double px = a.x0 + (v - tx.lo) / (tx.hi - tx.lo) * (a.x1 - a.x0);
        qh_strbuf_appendf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"" GRID_COLOUR "\"/>\n",
                          px, a.y0, px, a.y1);
        qh_strbuf_appendf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"" AXIS_COLOUR "\"/>\n",
                          px, a.y1, px, a.y1 + 5);
        format_tick(buf, sizeof buf, &tx, v);
        put_text(out, px, a.y1 + 19, "text-anchor=\"middle\"", buf, 0);
    }
    if (!is_blank(o->x_label))
        put_text(out, (a.x0 + a.x1) / 2, a.y1 + 41, "text-anchor=\"middle\" font-size=\"13\"", o->x_label, 0);
    draw_y_axis(out, &a, &ty, o->y_label, 12 + 13);
    draw_frame(out, &a);
    if (have)
        for (int s = 0; s < n_series; s++) draw_series(out, &series[s], s, &a, &tx, &ty);
    else
        no_data(out, &a);

    /* legend */
    double lx = a.x0, ly = legend_top;
    for (int s = 0; s < n_series; s++) {
        const char *name = series[s].name ? series[s].name : "";
        double iw = LEGEND_SWATCH + 6 + text_width(name, 12, MAX_LABEL_CHARS * 2) + 18;
        if (lx > a.x0 && lx + iw > w - right) lx = a.x0, ly += LEGEND_ROW;
        double cy = ly + LEGEND_ROW / 2.0;
        qh_strbuf_appendf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke-width=\"2.5\"", lx, cy,
                          lx + LEGEND_SWATCH, cy);
        series_style(out, s);
        qh_strbuf_append(out, "/>\n");
        if (finite_points(&series[s]) <= MARKER_MAX)
            qh_strbuf_appendf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", lx + LEGEND_SWATCH / 2.0,
                              cy, PALETTE[s % 10]);
        put_text(out, lx + LEGEND_SWATCH + 6, cy + 4, NULL, name, MAX_LABEL_CHARS * 2);
        lx += iw;
    }
    return finish(out, start);
}

/* ==== bar chart ======================================================================= */

static int auto_decimals(double big)
{
    if (!(big > 0) || !isfinite(big)) return 0;
    int d = 3 - (int)floor(log10(big));
    return d < 0 ? 0 : d > 9 ? 9 : d;
}

int qh_svg_bar_chart(qh_strbuf *out, const qh_svg_opts *opts, const char *const *labels, const double *values, int n,
                     const char *unit)
{
    int w, h;
    if (check_size(opts, 720, 420, &w, &h)) return QH_EINPUT;
    if (n < 0 || n > 100000 || (n && !values)) return qh_fail(QH_EINPUT, "bar chart: %d bars", n);
    static const qh_svg_opts none = {0};
    const qh_svg_opts *o = opts ? opts : &none;
    size_t start = out->len;

    double lo = 0, hi = 0, big = 0;
    int have = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(values[i])) {
            lo = fmin(lo, values[i]), hi = fmax(hi, values[i]), big = fmax(big, fabs(values[i]));
            have = 1;
        }
    if (!(hi > lo)) hi = lo + 1; /* all zero, or no data */
    int dec = o->decimals > 0 ? (o->decimals > 9 ? 9 : o->decimals) : o->decimals < 0 ? 0 : auto_decimals(big);
    const char *u = unit ? unit : "";
    /* "68.2%" but "812.5 tweets/s" */
    const char *sep = (*u && *u != '%') ? " " : "";

    /* the value labels, all printed at one font size */
    enum { VAL_LEN = 96 };
    char *val = malloc((size_t)(n ? n : 1) * VAL_LEN);
    if (!val) return qh_fail(QH_ESYS, "bar chart: out of memory");
    double val_w = 0; /* widest, at 12 px */
    for (int i = 0; i < n; i++) {
        char *s = val + (size_t)i * VAL_LEN;
        if (isfinite(values[i])) {
            char num[48];
            snprintf(num, sizeof num, "%.*f", dec, fabs(values[i]) < 1e15 ? values[i] : copysign(1e15, values[i]));
            if (num[0] == '-' && strspn(num + 1, "0.") == strlen(num + 1)) memmove(num, num + 1, strlen(num));
            snprintf(s, VAL_LEN, "%s%s%.40s", num, sep, u); /* no "-0.00" */
        } else
            snprintf(s, VAL_LEN, "n/a");
        val_w = fmax(val_w, text_width(s, 12, 0));
    }

    double top0 = is_blank(o->title) ? 14 : 40, top = top0 + 18; /* room for the label over the top bar */
    double right = 16;
    double ylab_w = is_blank(o->y_label) ? 0 : 22;
    double xlab_h = is_blank(o->x_label) ? 0 : 22;
    double label_w = 0;
    for (int i = 0; i < n; i++)
        label_w = fmax(label_w, text_width(labels && labels[i] ? labels[i] : "", 12, MAX_LABEL_CHARS));
    const double ang = 35 * PI / 180;
    double bottom = 8 + 16 + xlab_h + 8, left = 0, slot = 0;
    int slant = 0, vertical = 0;
    double vfs = 12; /* value label font size */
    ticks ty;
    /* two passes: the margins depend on the ticks, the ticks on the plot height */
    for (int pass = 0; pass < 2; pass++) {
        ty = make_ticks(lo, hi, (int)((h - top - bottom) / 45));
        left = 12 + ylab_w + max_tick_width(&ty, 12) + 10;
        slot = n ? (w - right - left) / n : 0;
        slant = n && label_w > slot - 6;
        if (slant) {
            bottom = fmin(8 + label_w * sin(ang) + 16 + xlab_h + 8, h * 0.45);
            /* the first label slants down-left from its bar's centre; keep it on the canvas */
            double need = label_w * cos(ang) + 6 - slot / 2;
            if (need > left) left = need, slot = (w - right - left) / n;
        }
        /* value labels shrink to fit their slot; below 9 px they stand upright instead */
        vfs = 12, vertical = 0;
        if (val_w > slot - 2 && val_w > 0) vfs = 12 * (slot - 2) / val_w;
        if (vfs < 9) {
            vertical = 1, vfs = fmin(11, fmax(6, slot * 0.8));
            top = fmin(top0 + val_w * vfs / 12 + 8, h * 0.35);
        }
    }
    area a = {left, w - right, top, h - bottom};
    double sy = (a.y1 - a.y0) / (ty.hi - ty.lo);
    double zero = a.y1 - (0 - ty.lo) * sy;

    open_svg(out, w, h, o->title);
    draw_y_axis(out, &a, &ty, o->y_label, 12 + 13);
    if (!have) no_data(out, &a);
    double bw = fmin(slot * 0.62, 90);
    char attrs[160];
    for (int i = 0; i < n; i++) {
        double cx = a.x0 + slot * (i + 0.5);
        double v = values[i];
        double end = isfinite(v) ? a.y1 - (v - ty.lo) * sy : zero; /* the bar's far end */
        if (isfinite(v))
            qh_strbuf_appendf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n",
                              cx - bw / 2, fmin(end, zero), bw, fabs(zero - end), PALETTE[i % 10]);
        /* value label: beyond the end of the bar, above a positive one and below a negative one */
        const char *txt = val + (size_t)i * VAL_LEN;
        int down = isfinite(v) && v < 0;
        if (vertical) {
            double ly = down ? end + 4 : end - 4;
            snprintf(attrs, sizeof attrs, "text-anchor=\"%s\" font-size=\"%.1f\" transform=\"rotate(-90 %.1f %.1f)\"",
                     down ? "end" : "start", vfs, cx + vfs * 0.35, ly);
            put_text(out, cx + vfs * 0.35, ly, attrs, txt, 0);
        } else {
            snprintf(attrs, sizeof attrs, "text-anchor=\"middle\" font-size=\"%.1f\"", vfs);
            put_text(out, cx, down ? end + vfs + 3 : end - 5, attrs, txt, 0);
        }
        /* category label */
        char lbl[32];
        const char *name = labels && labels[i] ? labels[i] : (snprintf(lbl, sizeof lbl, "%d", i), lbl);
        if (slant) {
            snprintf(attrs, sizeof attrs, "text-anchor=\"end\" transform=\"rotate(-35 %.1f %.1f)\"", cx + 4,
                     a.y1 + 16);
            put_text(out, cx + 4, a.y1 + 16, attrs, name, MAX_LABEL_CHARS);
        } else
            put_text(out, cx, a.y1 + 20, "text-anchor=\"middle\"", name, MAX_LABEL_CHARS);
    }
    free(val);
    if (ty.lo < 0) /* the zero line across negative and positive bars */
        qh_strbuf_appendf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"" AXIS_COLOUR "\"/>\n",
                          a.x0, zero, a.x1, zero);
    draw_frame(out, &a);
    if (!is_blank(o->x_label))
        put_text(out, (a.x0 + a.x1) / 2, h - 14, "text-anchor=\"middle\" font-size=\"13\"", o->x_label, 0);
    return finish(out, start);
}

/* ==== heatmap ========================================================================= */

/* White through mid blue to dark blue, for t in [0, 1]. */
static void heat_colour(double t, char buf[8])
{
    static const double stops[3][3] = {{255, 255, 255}, {118, 166, 218}, {18, 52, 118}};
    if (!(t > 0)) t = 0;
    if (t > 1) t = 1;
    int k = t < 0.5 ? 0 : 1;
    double f = (t - 0.5 * k) * 2;
    int rgb[3];
    for (int c = 0; c < 3; c++) rgb[c] = (int)lround(stops[k][c] + (stops[k + 1][c] - stops[k][c]) * f);
    snprintf(buf, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

int qh_svg_heatmap(qh_strbuf *out, const qh_svg_opts *opts, const char *const *labels, const int64_t *counts, int k)
{
    int w, h;
    if (check_size(opts, 560, 520, &w, &h)) return QH_EINPUT;
    if (k < 0 || k > 1000 || (k && !counts)) return qh_fail(QH_EINPUT, "heatmap: %d classes", k);
    static const qh_svg_opts none = {0};
    const qh_svg_opts *o = opts ? opts : &none;
    const char *xl = o->x_label ? o->x_label : "predicted", *yl = o->y_label ? o->y_label : "true";
    size_t start = out->len;

    char lbl[32];
#define NAME(i) (labels && labels[i] ? labels[i] : (snprintf(lbl, sizeof lbl, "%d", (i)), lbl))
    double label_w = 0;
    for (int i = 0; i < k; i++) label_w = fmax(label_w, text_width(NAME(i), 12, MAX_LABEL_CHARS));

    double top = is_blank(o->title) ? 14 : 40;
    double right = 16 + 14 + 6 + 34; /* colour scale and its labels */
    double left = 12 + (is_blank(yl) ? 0 : 22) + label_w + 8;
    double xl_h = is_blank(xl) ? 0 : 22;
    double bottom = 8 + 16 + xl_h + 8;
    double cell = k ? fmin((w - left - right) / k, (h - top - bottom) / k) : 0;
    const double ang = 35 * PI / 180;
    int slant = k && label_w > cell - 6;
    if (slant) {
        bottom = 8 + label_w * sin(ang) + 16 + xl_h + 8;
        if (bottom > h * 0.4) bottom = h * 0.4;
        cell = fmin((w - left - right) / k, (h - top - bottom) / k);
    }
    if (k && cell < 4)
        return qh_fail(QH_EINPUT, "heatmap: %d classes do not fit in %dx%d pixels", k, w, h);
    area a = {left, left + cell * k, top, top + cell * k};

    open_svg(out, w, h, o->title);
    if (!k) {
        area e = {left, w - right, top, h - bottom};
        no_data(out, &e);
    }
    double fs = fmin(14, cell * 0.42);
    char col[8], attrs[160];
    for (int t = 0; t < k; t++) {
        int64_t row = 0;
        for (int p = 0; p < k; p++) row += counts[(size_t)t * k + p];
        for (int p = 0; p < k; p++) {
            int64_t c = counts[(size_t)t * k + p];
            double share = row > 0 ? (double)c / (double)row : 0;
            double x = a.x0 + p * cell, y = a.y0 + t * cell;
            heat_colour(share, col);
            qh_strbuf_appendf(out,
                              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" "
                              "stroke=\"#ffffff\" stroke-width=\"1\"/>\n",
                              x, y, cell, cell, col);
            char num[32], pct[16];
            snprintf(num, sizeof num, "%lld", (long long)c);
            snprintf(pct, sizeof pct, "%.0f%%", share * 100);
            double f = fmin(fs, (cell - 3) / (strlen(num) * CHAR_W));
            if (f < 6) continue; /* too small to read: the colour has to do */
            const char *fill = share > 0.55 ? "#ffffff" : TEXT_COLOUR;
            int two = cell >= 44 && row > 0;
            snprintf(attrs, sizeof attrs, "text-anchor=\"middle\" font-size=\"%.1f\" fill=\"%s\"%s", f, fill,
                     p == t ? " font-weight=\"bold\"" : "");
            put_text(out, x + cell / 2, y + cell / 2 + (two ? -2 : f * 0.35), attrs, num, 0);
            if (two) {
                snprintf(attrs, sizeof attrs, "text-anchor=\"middle\" font-size=\"%.1f\" fill=\"%s\"", f * 0.75, fill);
                put_text(out, x + cell / 2, y + cell / 2 + f * 0.85, attrs, pct, 0);
            }
        }
    }
    /* row labels (true classes) and column labels (predictions) */
    for (int i = 0; i < k; i++) {
        put_text(out, a.x0 - 8, a.y0 + (i + 0.5) * cell + 4, "text-anchor=\"end\"", NAME(i), MAX_LABEL_CHARS);
        double cx = a.x0 + (i + 0.5) * cell;
        if (slant) {
            snprintf(attrs, sizeof attrs, "text-anchor=\"end\" transform=\"rotate(-35 %.1f %.1f)\"", cx + 4, a.y1 + 16);
            put_text(out, cx + 4, a.y1 + 16, attrs, NAME(i), MAX_LABEL_CHARS);
        } else
            put_text(out, cx, a.y1 + 20, "text-anchor=\"middle\"", NAME(i), MAX_LABEL_CHARS);
    }
#undef NAME
    if (k) {
        if (!is_blank(xl))
            put_text(out, (a.x0 + a.x1) / 2, fmin(h - 10, a.y1 + (slant ? 16 + label_w * sin(ang) + 22 : 42)),
                     "text-anchor=\"middle\" font-size=\"13\"", xl, 0);
        if (!is_blank(yl)) {
            double cy = (a.y0 + a.y1) / 2;
            snprintf(attrs, sizeof attrs, "text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 25 %.1f)\"",
                     cy);
            put_text(out, 25, cy, attrs, yl, 0);
        }
        /* colour scale: share of the row, 0% at the bottom to 100% at the top */
        double sx = a.x1 + 16, sh = fmin(a.y1 - a.y0, 200), sy0 = a.y0;
        for (int i = 0; i < 20; i++) {
            heat_colour((i + 0.5) / 20, col);
            qh_strbuf_appendf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"%.2f\" fill=\"%s\"/>\n", sx,
                              sy0 + sh - (i + 1) * sh / 20, sh / 20 + 0.3, col);
        }
        qh_strbuf_appendf(out,
                          "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"%.1f\" fill=\"none\" stroke=\"#999\"/>\n",
                          sx, sy0, sh);
        put_text(out, sx + 18, sy0 + 9, "font-size=\"10\"", "100%", 0);
        put_text(out, sx + 18, sy0 + sh / 2 + 4, "font-size=\"10\"", "50%", 0);
        put_text(out, sx + 18, sy0 + sh, "font-size=\"10\"", "0%", 0);
        put_text(out, sx + 18, sy0 + sh + 14, "font-size=\"10\" fill=\"#666\"", "of row", 0);
    }
    return finish(out, start);
}
