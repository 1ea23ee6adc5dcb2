/* SVG charts: well-formed XML (checked by a small parser here; also by xmllint when it is
 * installed), hostile text escaped, round tick labels, and no crash on NaN, a single point
 * or no data at all. */
#include "testutil.h"

#include "error.h"
#include "svg.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a minimal XML well-formedness checker ----------------------------------------- */

static int name_char(char c) { return isalnum((unsigned char)c) || c == '-' || c == '_' || c == ':' || c == '.'; }

/* An '&' must start one of the five predefined entities or a numeric reference. */
static int entity_ok(const char *p)
{
    static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (size_t i = 0; i < sizeof ents / sizeof *ents; i++)
        if (!strncmp(p, ents[i], strlen(ents[i]))) return 1;
    if (p[1] != '#') return 0;
    const char *q = p + 2;
    if (*q == 'x') q++;
    if (!isxdigit((unsigned char)*q)) return 0;
    while (isxdigit((unsigned char)*q)) q++;
    return *q == ';';
}

/* 1 when s is one well-formed element (after optional whitespace), tags balanced, attributes
 * quoted, no raw '<' in text or attributes, and every '&' an entity. */
static int xml_well_formed(const char *s, char *why, size_t why_size)
{
    char stack[64][64];
    int depth = 0, roots = 0;
    const char *p = s;
#define BAD(...) return snprintf(why, why_size, __VA_ARGS__), 0
    while (*p) {
        if (*p != '<') {
            if (depth == 0 && !isspace((unsigned char)*p)) BAD("text outside the root at offset %ld", (long)(p - s));
            if (*p == '>' && depth == 0) BAD("stray '>'");
            if (*p == '&' && !entity_ok(p)) BAD("bad entity at offset %ld: %.12s", (long)(p - s), p);
            p++;
            continue;
        }
        if (!strncmp(p, "<!--", 4)) {
            const char *e = strstr(p, "-->");
            if (!e) BAD("unterminated comment");
            p = e + 3;
            continue;
        }
        int closing = p[1] == '/';
        const char *n = p + 1 + closing;
        size_t len = 0;
        while (name_char(n[len])) len++;
        if (!len || len >= 64) BAD("bad tag name at offset %ld", (long)(p - s));
        const char *q = n + len;
        if (closing) {
            while (isspace((unsigned char)*q)) q++;
            if (*q != '>') BAD("junk in closing tag at offset %ld", (long)(p - s));
            if (!depth || strlen(stack[depth - 1]) != len || strncmp(stack[depth - 1], n, len))
                BAD("</%.*s> does not close <%s>", (int)len, n, depth ? stack[depth - 1] : "(nothing)");
            depth--;
            p = q + 1;
            continue;
        }
        /* attributes: name="value" or name='value' */
        for (;;) {
            while (isspace((unsigned char)*q)) q++;
            if (*q == '>' || (q[0] == '/' && q[1] == '>')) break;
            size_t an = 0;
            while (name_char(q[an])) an++;
            if (!an) BAD("bad attribute at offset %ld: %.20s", (long)(q - s), q);
            q += an;
            if (*q++ != '=') BAD("attribute without '=' at offset %ld", (long)(q - s));
            char quote = *q++;
            if (quote != '"' && quote != '\'') BAD("unquoted attribute at offset %ld", (long)(q - s));
            while (*q && *q != quote) {
                if (*q == '<') BAD("'<' in an attribute at offset %ld", (long)(q - s));
                if (*q == '&' && !entity_ok(q)) BAD("bad entity in an attribute at offset %ld", (long)(q - s));
                q++;
            }
            if (!*q) BAD("unterminated attribute");
            q++;
        }
        if (depth == 0 && ++roots > 1) BAD("more than one root element");
        if (*q == '/') {
            p = q + 2;
            continue;
        }
        if (depth == 64) BAD("too deep");
        snprintf(stack[depth++], 64, "%.*s", (int)len, n);
        p = q + 1;
    }
    if (depth) BAD("<%s> never closed", stack[depth - 1]);
    if (roots != 1) BAD("no root element");
#undef BAD
    return 1;
}

static void assert_well_formed(const char *s)
{
    char why[256] = "";
    if (!xml_well_formed(s, why, sizeof why)) fail_msg("not well-formed: %s", why);
}

/* Occurrences of needle in s. */
static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* No NaN or infinity leaked into coordinates. */
static void assert_no_nonfinite(const char *s)
{
    const char *bad[] = {"nan", "NaN", "inf", "INF"};
    for (int i = 0; i < 4; i++)
        if (strstr(s, bad[i])) fail_msg("output contains \"%s\"", bad[i]);
}

/* ---- string builder ------------------------------------------------------------------ */

static void test_strbuf(void **state)
{
    (void)state;
    qh_strbuf b = {0};
    qh_strbuf_free(&b); /* empty is fine */
    assert_int_equal(qh_strbuf_append(&b, "abc"), QH_OK);
    assert_int_equal(qh_strbuf_appendf(&b, "-%d-%s", 42, "x"), QH_OK);
    assert_string_equal(b.data, "abc-42-x");
    assert_int_equal(b.len, 8);
    for (int i = 0; i < 5000; i++) assert_int_equal(qh_strbuf_appendf(&b, "%04d", i), QH_OK);
    assert_int_equal(b.len, 8 + 4 * 5000);
    assert_int_equal(strlen(b.data), b.len);
    assert_memory_equal(b.data + b.len - 4, "4999", 4);
    assert_int_equal(qh_strbuf_appendn(&b, "zz", 1), QH_OK);
    assert_int_equal(b.data[b.len - 1], 'z');
    assert_false(b.failed);
    qh_strbuf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);

    /* escaping; control characters and broken UTF-8 become '?', good UTF-8 passes */
    assert_int_equal(qh_strbuf_append_xml(&b, "<a href=\"x\">&'</a>"), QH_OK);
    assert_string_equal(b.data, "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    qh_strbuf_free(&b);
    qh_strbuf_append_xml(&b, "caf\xc3\xa9 \xf0\x9f\x98\x82 bad\xff\xc3( nul\x01\x1b[0m tab\t");
    assert_string_equal(b.data, "caf\xc3\xa9 \xf0\x9f\x98\x82 bad?\?( nul?\?[0m tab?");
    qh_strbuf_free(&b);
}

static void test_save(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("svg");
    char *path = tu_path(dir, "chart.svg");
    qh_strbuf b = {0};
    qh_strbuf_append(&b, "<svg/>\n");
    assert_int_equal(qh_strbuf_save(&b, path), QH_OK);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char got[32] = "";
    assert_int_equal(fread(got, 1, sizeof got - 1, fp), 7);
    fclose(fp);
    assert_string_equal(got, "<svg/>\n");
    /* nothing left behind but the file itself */
    char *out;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
    assert_int_equal(tu_run(cmd, &out, NULL), 0);
    assert_string_equal(out, "chart.svg\n");
    free(out);
    /* an empty buffer writes an empty file; a missing directory is refused, naming it */
    qh_strbuf empty = {0};
    assert_int_equal(qh_strbuf_save(&empty, path), QH_OK);
    assert_int_not_equal(qh_strbuf_save(&b, "/no/such/dir/chart.svg"), QH_OK);
    assert_non_null(strstr(qh_last_error(), "/no/such/dir"));
    qh_strbuf_free(&b);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* ---- tick labels --------------------------------------------------------------------- */

/* Numeric contents of the <text> elements whose attributes contain `marker`. */
static int numeric_texts(const char *svg, const char *marker, double *vals, char texts[][32], int max)
{
    int n = 0;
    for (const char *p = svg; (p = strstr(p, "<text ")) && n < max; p++) {
        const char *gt = strchr(p, '>');
        const char *end = strstr(gt, "</text>");
        size_t alen = (size_t)(gt - p);
        char attrs[512];
        snprintf(attrs, sizeof attrs, "%.*s", (int)(alen < 511 ? alen : 511), p);
        if (!strstr(attrs, marker)) continue;
        char body[32];
        size_t blen = (size_t)(end - gt - 1);
        if (blen == 0 || blen >= sizeof body) continue;
        memcpy(body, gt + 1, blen);
        body[blen] = '\0';
        char *e;
        double v = strtod(body, &e);
        if (*e) continue; /* not a number */
        vals[n] = v;
        snprintf(texts[n], 32, "%s", body);
        n++;
    }
    return n;
}

/* Tick values evenly spaced by 1, 2 or 5 x 10^k, each a multiple of the step, printed with
 * no more digits than the step needs, and covering [lo, hi]. */
static void assert_round_ticks(const double *v, char texts[][32], int n, double lo, double hi)
{
    assert_true(n >= 2);
    double step = v[1] - v[0];
    assert_true(step > 0);
    double mag = pow(10, floor(log10(step) + 1e-9));
    double m = step / mag;
    assert_true(fabs(m - 1) < 1e-6 || fabs(m - 2) < 1e-6 || fabs(m - 5) < 1e-6);
    step = round(m) * mag; /* the exact step, free of the rounding in v[1] - v[0] */
    for (int i = 0; i < n; i++) {
        if (i) assert_true(fabs(v[i] - v[i - 1] - step) < step * 1e-6);
        double q = v[i] / step;
        if (fabs(q - round(q)) >= 1e-6) fail_msg("tick %s is not a multiple of %g", texts[i], step);
        assert_true(strlen(texts[i]) <= 8); /* "0.30000000000000004" would fail */
        assert_false(!strcmp(texts[i], "-0") || !strcmp(texts[i], "-0.0"));
    }
    assert_true(v[0] <= lo && v[n - 1] >= hi);
}

static void test_line_chart_ticks(void **state)
{
    (void)state;
    /* train loss at every 50th step of 45,000, val loss every 4,500 steps */
    enum { N = 900 };
    static double sx[N], sy[N];
    for (int i = 0; i < N; i++) sx[i] = i * 50.0, sy[i] = 0.513 + 1.357 * exp(-i / 120.0);
    double vx[] = {4500, 9000, 13500, 18000}, vy[] = {0.74, 0.69, 0.675, 0.69};
    qh_svg_series s[] = {{"train loss", sx, sy, N}, {"val loss", vx, vy, 4}};
    qh_svg_opts o = {.title = "Loss", .x_label = "step", .y_label = "cross-entropy"};
    qh_strbuf b = {0};
    assert_int_equal(qh_svg_line_chart(&b, &o, s, 2), QH_OK);
    assert_well_formed(b.data);
    assert_no_nonfinite(b.data);
    assert_non_null(strstr(b.data, "viewBox=\"0 0 720 420\""));
    assert_non_null(strstr(b.data, ">train loss</text>"));
    assert_non_null(strstr(b.data, ">val loss</text>"));
    assert_non_null(strstr(b.data, ">cross-entropy</text>"));
    assert_non_null(strstr(b.data, "sans-serif"));
    assert_null(strstr(b.data, "href")); /* no external resources */
    assert_null(strstr(b.data, " id=")); /* safe to inline several */
    assert_int_equal(count(b.data, "<polyline"), 2);
    /* two distinct colours for the two series */
    const char *p1 = strstr(b.data, "<polyline"), *p2 = strstr(p1 + 1, "<polyline");
    char c1[16], c2[16];
    assert_int_equal(sscanf(strstr(p1, "stroke=\"") + 8, "%15[^\"]", c1), 1);
    assert_int_equal(sscanf(strstr(p2, "stroke=\"") + 8, "%15[^\"]", c2), 1);
    assert_string_not_equal(c1, c2);

    double v[64];
    char t[64][32];
    int ny = numeric_texts(b.data, "text-anchor=\"end\"", v, t, 64);
    assert_round_ticks(v, t, ny, 0.513, 1.87);
    int nx = numeric_texts(b.data, "text-anchor=\"middle\"", v, t, 64);
    assert_round_ticks(v, t, nx, 0, 44950);
    assert_true(nx <= 12 && ny <= 12);
    qh_strbuf_free(&b);

    /* awkward ranges: tiny, negative, huge */
    const double ranges[][2] = {{0.1, 0.3}, {-3.7, -1.2}, {1e-5, 3.3e-5}, {-0.05, 0.05}, {123456, 987654}, {7, 7.0001}};
    for (size_t r = 0; r < sizeof ranges / sizeof *ranges; r++) {
        double x[2] = {ranges[r][0], ranges[r][1]};
        qh_svg_series one = {"s", x, x, 2};
        assert_int_equal(qh_svg_line_chart(&b, NULL, &one, 1), QH_OK);
        assert_well_formed(b.data);
        ny = numeric_texts(b.data, "text-anchor=\"end\"", v, t, 64);
        assert_round_ticks(v, t, ny, x[0], x[1]);
        qh_strbuf_free(&b);
    }
}

static void test_line_chart_degenerate(void **state)
{
    (void)state;
    qh_strbuf b = {0};
    double v[64];
    char t[64][32];
    /* a single point: drawn as a dot, with a sensible range around it */
    double x1 = 100, y1 = 0.6931;
    qh_svg_series one = {"only point", &x1, &y1, 1};
    assert_int_equal(qh_svg_line_chart(&b, NULL, &one, 1), QH_OK);
    assert_well_formed(b.data);
    assert_no_nonfinite(b.data);
    assert_int_equal(count(b.data, "<polyline"), 0);
    assert_true(count(b.data, "<circle") >= 1);
    int ny = numeric_texts(b.data, "text-anchor=\"end\"", v, t, 64);
    assert_true(ny >= 2 && v[0] < y1 && v[ny - 1] > y1);
    qh_strbuf_free(&b);

    /* all-equal y with NaN and infinite points skipped */
    double xs[] = {0, 1, 2, 3, 4, NAN}, ys[] = {2, NAN, 2, INFINITY, 2, 2};
    qh_svg_series flat = {"flat", xs, ys, 6};
    assert_int_equal(qh_svg_line_chart(&b, NULL, &flat, 1), QH_OK);
    assert_well_formed(b.data);
    assert_no_nonfinite(b.data);
    assert_int_equal(count(b.data, "<polyline"), 1);
    const char *pts = strstr(b.data, "points=\"") + 8;
    int commas = 0;
    for (const char *q = pts; *q != '"'; q++) commas += *q == ',';
    assert_int_equal(commas, 3); /* x = 0, 2, 4 */
    ny = numeric_texts(b.data, "text-anchor=\"end\"", v, t, 64);
    assert_true(ny >= 2 && v[0] < 2 && v[ny - 1] > 2);
    qh_strbuf_free(&b);

    /* empty series, all-NaN series, and no series at all */
    double nan3[] = {NAN, NAN, NAN};
    qh_svg_series empty[] = {{"train loss", NULL, NULL, 0}, {"val loss", nan3, nan3, 3}, {NULL, NULL, NULL, 0}};
    assert_int_equal(qh_svg_line_chart(&b, NULL, empty, 3), QH_OK);
    assert_well_formed(b.data);
    assert_no_nonfinite(b.data);
    assert_non_null(strstr(b.data, "no data"));
    assert_non_null(strstr(b.data, ">train loss</text>"));
    qh_strbuf_free(&b);
    assert_int_equal(qh_svg_line_chart(&b, NULL, NULL, 0), QH_OK);
    assert_well_formed(b.data);
    qh_strbuf_free(&b);

    /* series of different lengths and x values: 45,000 steps are thinned, not written out */
    enum { N = 45000 };
    double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    uint64_t rng = 1;
    for (int i = 0; i < N; i++) x[i] = i, y[i] = 1.0 / (1 + i / 3000.0) + 0.1 * tu_rand_uniform(&rng);
    double ex[] = {5000, 15000, 45000}, ey[] = {0.9, 0.4, 0.3};
    qh_svg_series two[] = {{"train", x, y, N}, {"val", ex, ey, 3}};
    assert_int_equal(qh_svg_line_chart(&b, NULL, two, 2), QH_OK);
    assert_well_formed(b.data);
    assert_true(b.len < 60000);
    qh_strbuf_free(&b);
    free(x);
    free(y);

    /* bad arguments append nothing */
    qh_strbuf_append(&b, "keep");
    assert_int_equal(qh_svg_line_chart(&b, NULL, &one, -1), QH_EINPUT);
    qh_svg_series nodata = {"x", NULL, NULL, 5};
    assert_int_equal(qh_svg_line_chart(&b, NULL, &nodata, 1), QH_EINPUT);
    qh_svg_opts tiny = {.width = 50, .height = 50};
    assert_int_equal(qh_svg_line_chart(&b, &tiny, &one, 1), QH_EINPUT);
    assert_string_equal(b.data, "keep");
    qh_strbuf_free(&b);
}

static const char *HOSTILE = "<script>alert('x')</script> & \"quoted\"";
static const char *HOSTILE_ESC = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;";

static void test_hostile_text(void **state)
{
    (void)state;
    qh_strbuf b = {0};
    double x[] = {0, 1}, y[] = {1, 2};
    qh_svg_series s = {HOSTILE, x, y, 2};
    qh_svg_opts o = {.title = HOSTILE, .x_label = HOSTILE, .y_label = HOSTILE};
    assert_int_equal(qh_svg_line_chart(&b, &o, &s, 1), QH_OK);
    const char *labels[] = {HOSTILE, "ok", "a&b"};
    double vals[] = {1, 2, 3};
    assert_int_equal(qh_svg_bar_chart(&b, &o, labels, vals, 3, "<u>"), QH_OK);
    int64_t cm[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    assert_int_equal(qh_svg_heatmap(&b, &o, labels, cm, 3), QH_OK);
    /* three charts in one buffer: wrap them to check the lot */
    qh_strbuf page = {0};
    qh_strbuf_appendf(&page, "<div>%s</div>", b.data);
    assert_well_formed(page.data);
    assert_null(strstr(b.data, "<script"));
    assert_null(strstr(b.data, "<u>"));
    assert_non_null(strstr(b.data, "&lt;u&gt;"));
    assert_non_null(strstr(b.data, "a&amp;b"));
    assert_true(count(b.data, HOSTILE_ESC) >= 3);
    assert_int_equal(count(b.data, "<svg "), 3);
    qh_strbuf_free(&page);
    qh_strbuf_free(&b);
}

static void test_bar_chart(void **state)
{
    (void)state;
    qh_strbuf b = {0};
    const char *labels[] = {"fp32", "bf16", "int8", "int4"};
    double acc[] = {68.41, 68.37, 67.9, NAN};
    qh_svg_opts o = {.title = "Accuracy", .y_label = "accuracy (%)"};
    assert_int_equal(qh_svg_bar_chart(&b, &o, labels, acc, 4, "%"), QH_OK);
    assert_well_formed(b.data);
    assert_no_nonfinite(b.data);
    assert_non_null(strstr(b.data, ">68.41%</text>"));
    assert_non_null(strstr(b.data, ">67.90%</text>")); /* one number of decimals for all */
    assert_non_null(strstr(b.data, ">n/a</text>"));
    for (int i = 0; i < 4; i++) {
        char want[32];
        snprintf(want, sizeof want, ">%s</text>", labels[i]);
        assert_non_null(strstr(b.data, want));
    }
    assert_int_equal(count(b.data, "<rect"), 1 + 3); /* background and three bars */
    double v[64];
    char t[64][32];
    int ny = numeric_texts(b.data, "text-anchor=\"end\"", v, t, 64);
    assert_round_ticks(v, t, ny, 0, 68.41);
    assert_true(v[0] == 0);
    qh_strbuf_free(&b);

    /* fixed decimals, a unit with a space, negative values */
    o.decimals = 1;
    double tput[] = {812.46, -3};
    assert_int_equal(qh_svg_bar_chart(&b, &o, labels, tput, 2, "tweets/s"), QH_OK);
    assert_well_formed(b.data);
    assert_non_null(strstr(b.data, ">812.5 tweets/s</text>"));
    assert_non_null(strstr(b.data, ">-3.0 tweets/s</text>"));
    qh_strbuf_free(&b);
    o.decimals = QH_SVG_NO_DECIMALS;
    assert_int_equal(qh_svg_bar_chart(&b, &o, NULL, tput, 2, NULL), QH_OK);
    assert_non_null(strstr(b.data, ">812</text>"));
    assert_non_null(strstr(b.data, ">0</text>")); /* unnamed categories are numbered */
    qh_strbuf_free(&b);

    /* no bars, all zero, many bars with long labels */
    assert_int_equal(qh_svg_bar_chart(&b, NULL, NULL, NULL, 0, "%"), QH_OK);
    assert_well_formed(b.data);
    assert_non_null(strstr(b.data, "no data"));
    qh_strbuf_free(&b);
    double zeros[3] = {0, 0, 0};
    assert_int_equal(qh_svg_bar_chart(&b, NULL, labels, zeros, 3, NULL), QH_OK);
    assert_well_formed(b.data);
    assert_no_nonfinite(b.data);
    qh_strbuf_free(&b);
    const char *longl[20];
    double many[20];
    for (int i = 0; i < 20; i++) longl[i] = "a very long variant name that goes on and on", many[i] = i * 0.05;
    assert_int_equal(qh_svg_bar_chart(&b, NULL, longl, many, 20, NULL), QH_OK);
    assert_well_formed(b.data);
    assert_non_null(strstr(b.data, "rotate(-35")); /* slanted */
    assert_non_null(strstr(b.data, ">a very long variant name...</text>"));
    qh_strbuf_free(&b);
    assert_int_equal(qh_svg_bar_chart(&b, NULL, labels, NULL, 2, NULL), QH_EINPUT);
    assert_null(b.data);
}

static void test_heatmap(void **state)
{
    (void)state;
    qh_strbuf b = {0};
    const char *labels[] = {"negative", "neutral", "positive"};
    int64_t cm[9] = {2701, 1012, 259, 0, 0, 0, 102, 598, 1679}; /* nobody is truly neutral */
    qh_svg_opts o = {.title = "Confusion matrix"};
    assert_int_equal(qh_svg_heatmap(&b, &o, labels, cm, 3), QH_OK);
    assert_well_formed(b.data);
    assert_no_nonfinite(b.data);
    for (int i = 0; i < 9; i++) {
        char want[32];
        snprintf(want, sizeof want, ">%lld</text>", (long long)cm[i]);
        assert_non_null(strstr(b.data, want));
    }
    for (int i = 0; i < 3; i++) {
        char want[32];
        snprintf(want, sizeof want, ">%s</text>", labels[i]);
        assert_int_equal(count(b.data, want), 2); /* row and column */
    }
    assert_non_null(strstr(b.data, ">predicted</text>"));
    assert_non_null(strstr(b.data, ">true</text>"));
    assert_non_null(strstr(b.data, ">68%</text>")); /* 2701 / 3972 of the first row */
    /* the empty row stays white, the full-ish diagonal cell is dark */
    assert_true(count(b.data, "fill=\"#ffffff\" stroke") >= 3);
    qh_strbuf_free(&b);

    /* NULL labels are numbered; 1x1; 20 classes; nothing */
    int64_t big[400];
    for (int i = 0; i < 400; i++) big[i] = i % 21 ? i % 13 : 500;
    assert_int_equal(qh_svg_heatmap(&b, NULL, NULL, big, 1), QH_OK);
    assert_well_formed(b.data);
    qh_strbuf_free(&b);
    assert_int_equal(qh_svg_heatmap(&b, NULL, NULL, big, 20), QH_OK);
    assert_well_formed(b.data);
    assert_non_null(strstr(b.data, ">19</text>"));
    qh_strbuf_free(&b);
    assert_int_equal(qh_svg_heatmap(&b, NULL, NULL, NULL, 0), QH_OK);
    assert_well_formed(b.data);
    qh_strbuf_free(&b);
    assert_int_equal(qh_svg_heatmap(&b, NULL, NULL, NULL, 2), QH_EINPUT);
    assert_int_equal(qh_svg_heatmap(&b, NULL, NULL, big, -1), QH_EINPUT);
    assert_null(b.data);
}

/* With xmllint installed, it must agree; without it, this test only notes the skip. */
static void test_xmllint_agrees(void **state)
{
    (void)state;
    char *out = NULL;
    if (tu_run("command -v xmllint", &out, NULL) != 0) {
        free(out);
        skip();
    }
    free(out);
    char *dir = tu_mkdtemp("svglint");
    qh_strbuf b = {0};
    double x[] = {0, 1, 2}, y[] = {1, NAN, 0.5};
    qh_svg_series s = {HOSTILE, x, y, 3};
    qh_svg_opts o = {.title = HOSTILE};
    const char *names[] = {HOSTILE, "caf\xc3\xa9", "bad\xff"};
    int64_t cm[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const char *kinds[] = {"line", "bar", "heat"};
    for (int k = 0; k < 3; k++) {
        if (k == 0) assert_int_equal(qh_svg_line_chart(&b, &o, &s, 1), QH_OK);
        if (k == 1) assert_int_equal(qh_svg_bar_chart(&b, &o, names, y, 3, "&"), QH_OK);
        if (k == 2) assert_int_equal(qh_svg_heatmap(&b, &o, names, cm, 3), QH_OK);
        char name[32], cmd[4300], *err;
        snprintf(name, sizeof name, "%s.svg", kinds[k]);
        char *path = tu_path(dir, name);
        assert_int_equal(qh_strbuf_save(&b, path), QH_OK);
        snprintf(cmd, sizeof cmd, "xmllint --noout '%s'", path);
        int rc = tu_run(cmd, NULL, &err);
        if (rc != 0) fail_msg("xmllint rejects the %s chart: %s", kinds[k], err);
        free(err);
        free(path);
        qh_strbuf_free(&b);
    }
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strbuf),          cmocka_unit_test(test_save),
        cmocka_unit_test(test_line_chart_ticks), cmocka_unit_test(test_line_chart_degenerate),
        cmocka_unit_test(test_hostile_text),    cmocka_unit_test(test_bar_chart),
        cmocka_unit_test(test_heatmap),         cmocka_unit_test(test_xmllint_agrees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
