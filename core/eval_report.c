#include "eval_report.h"

#include "error.h"
#include "fileio.h"
#include "svg.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* cJSON writes NaN as null already; keep that explicit for readers of this file. */
static void add_num(cJSON *o, const char *k, double v)
{
    if (isfinite(v)) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

static cJSON *variant_json(const qh_eval_context *ctx, const qh_eval_result *r)
{
    cJSON *v = cJSON_CreateObject();
    const qh_metrics *m = &r->metrics;
    cJSON_AddStringToObject(v, "variant", r->variant);
    cJSON_AddStringToObject(v, "backend", r->backend);
    cJSON_AddStringToObject(v, "device", r->device);
    add_num(v, "tweets", (double)r->n_tweets);
    add_num(v, "tokens", (double)r->n_tokens);
    cJSON *q = cJSON_AddObjectToObject(v, "quality");
    add_num(q, "accuracy", m->accuracy);
    add_num(q, "macro_f1", m->macro_f1);
    add_num(q, "macro_recall", m->macro_recall);
    add_num(q, "macro_precision", m->macro_precision);
    add_num(q, "agreement_with_fp16", r->agreement_with_fp16);
    add_num(q, "mean_abs_delta_logit_vs_fp16", r->mean_abs_dlogit);
    cJSON *pc = cJSON_AddArrayToObject(q, "per_class");
    for (int k = 0; k < m->num_classes; k++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "label", k < ctx->num_labels ? ctx->label_names[k] : "");
        add_num(c, "precision", m->precision[k]);
        add_num(c, "recall", m->recall[k]);
        add_num(c, "f1", m->f1[k]);
        add_num(c, "support", (double)m->support[k]);
        cJSON_AddItemToArray(pc, c);
    }
    cJSON *cm = cJSON_AddArrayToObject(q, "confusion_matrix");
    for (int t = 0; t < m->num_classes; t++) {
        cJSON *row = cJSON_CreateArray();
        for (int p = 0; p < m->num_classes; p++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber((double)m->confusion[t * m->num_classes + p]));
        cJSON_AddItemToArray(cm, row);
    }
    cJSON *s = cJSON_AddObjectToObject(v, "speed");
    add_num(s, "quantize_seconds", r->quantize_seconds);
    if (isfinite(r->quantize_seconds))
        cJSON_AddStringToObject(s, "quantize_seconds_source", r->quantized_now ? "quantized in this run" : "quantized file metadata");
    add_num(s, "load_seconds", r->load_seconds);
    add_num(s, "eval_seconds", r->eval_seconds);
    add_num(s, "tweets_per_second", r->tweets_per_second);
    add_num(s, "tokens_per_second", r->tokens_per_second);
    add_num(s, "latency_p50_ms", r->latency_p50_ms);
    add_num(s, "latency_p95_ms", r->latency_p95_ms);
    add_num(s, "latency_samples", r->latency_samples);
    add_num(s, "latency_graph_replays", r->latency_replayed);
    cJSON *mem = cJSON_AddObjectToObject(v, "memory");
    add_num(mem, "weight_bytes", r->weight_bytes);
    add_num(mem, "peak_bytes", r->peak_memory_bytes);
    cJSON_AddStringToObject(mem, "peak_kind", r->peak_memory_kind);
    cJSON *e = cJSON_AddObjectToObject(v, "energy");
    cJSON_AddBoolToObject(e, "available", r->energy.available);
    cJSON_AddStringToObject(e, "source", r->energy.source);
    add_num(e, "joules", r->energy.joules);
    add_num(e, "joules_from_power_samples", r->energy.joules_sampled);
    add_num(e, "mean_watts", r->energy.mean_watts);
    add_num(e, "peak_watts", r->energy.peak_watts);
    add_num(e, "samples", (double)r->energy.samples);
    add_num(e, "kwh", r->kwh);
    add_num(e, "kg_co2eq", r->kg_co2);
    return v;
}

int qh_eval_write_json(const qh_eval_context *ctx, const qh_eval_result *r, int n, const char *path)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "qhead-eval-1");
    cJSON_AddStringToObject(j, "created", ctx->created ? ctx->created : "");
    cJSON_AddStringToObject(j, "model", ctx->model);
    cJSON_AddStringToObject(j, "data", ctx->data);
    cJSON_AddStringToObject(j, "split", ctx->split);
    cJSON_AddStringToObject(j, "head", ctx->head);
    add_num(j, "carbon_intensity_g_per_kwh", ctx->carbon_intensity);
    cJSON_AddStringToObject(j, "carbon_intensity_source",
                            ctx->carbon_intensity_is_default
                                ? "default: world average used by CodeCarbon when the location is unknown (475 g/kWh)"
                                : "--carbon-intensity");
    cJSON *labels = cJSON_AddArrayToObject(j, "labels");
    for (int k = 0; k < ctx->num_labels; k++) cJSON_AddItemToArray(labels, cJSON_CreateString(ctx->label_names[k]));
    cJSON *vs = cJSON_AddArrayToObject(j, "variants");
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(vs, variant_json(ctx, &r[i]));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return qh_fail(QH_ESYS, "out of memory writing %s", path);
    qh_strbuf b = {0};
    int rc = qh_strbuf_append(&b, text);
    if (!rc) rc = qh_strbuf_append(&b, "\n");
    if (!rc) rc = qh_strbuf_save(&b, path);
    qh_strbuf_free(&b);
    cJSON_free(text);
    return rc;
}

/* "%.6g" or empty for NaN */
static int csv_num(qh_strbuf *b, double v, int last)
{
    return isfinite(v) ? qh_strbuf_appendf(b, "%.9g%s", v, last ? "\n" : ",") : qh_strbuf_append(b, last ? "\n" : ",");
}

static int csv_text(qh_strbuf *b, const char *s)
{
    int rc = qh_strbuf_append(b, "\"");
    for (const char *p = s; *p && !rc; p++) rc = *p == '"' ? qh_strbuf_append(b, "\"\"") : qh_strbuf_appendn(b, p, 1);
    return rc ? rc : qh_strbuf_append(b, "\",");
}

int qh_eval_write_csv(const qh_eval_context *ctx, const qh_eval_result *r, int n, const char *path)
{
    (void)ctx;
    qh_strbuf b = {0};
    int rc = qh_strbuf_append(&b, "variant,backend,device,energy_source,tweets,tokens,accuracy,macro_f1,macro_recall,"
                                  "agreement_with_fp16,mean_abs_delta_logit,quantize_s,load_s,eval_s,tweets_per_s,"
                                  "tokens_per_s,latency_p50_ms,latency_p95_ms,weight_bytes,peak_memory_bytes,energy_j,"
                                  "kwh,kg_co2eq\n");
    for (int i = 0; i < n && !rc; i++) {
        const qh_eval_result *x = &r[i];
        double v[] = {(double)x->n_tweets,   (double)x->n_tokens,  x->metrics.accuracy,      x->metrics.macro_f1,
                      x->metrics.macro_recall, x->agreement_with_fp16, x->mean_abs_dlogit,    x->quantize_seconds,
                      x->load_seconds,        x->eval_seconds,       x->tweets_per_second,    x->tokens_per_second,
                      x->latency_p50_ms,      x->latency_p95_ms,     x->weight_bytes,         x->peak_memory_bytes,
                      x->energy.joules,       x->kwh,                x->kg_co2};
        rc = csv_text(&b, x->variant);
        if (!rc) rc = csv_text(&b, x->backend);
        if (!rc) rc = csv_text(&b, x->device);
        if (!rc) rc = csv_text(&b, x->energy.source);
        size_t nv = sizeof v / sizeof *v;
        for (size_t k = 0; k < nv && !rc; k++) rc = csv_num(&b, v[k], k + 1 == nv);
    }
    if (!rc) rc = qh_strbuf_save(&b, path);
    qh_strbuf_free(&b);
    return rc;
}

static void fmt(char *buf, size_t size, const char *f, double v)
{
    if (isfinite(v)) snprintf(buf, size, f, v);
    else snprintf(buf, size, "n/a");
}

/* The columns of the stdout and HTML tables: one list, so both show the same numbers. */
typedef struct {
    const char *text_head, *html_head, *format;
    double (*get)(const qh_eval_result *r, double mem_scale);
    int text_width; /* 0: HTML only */
} column;

static double c_acc(const qh_eval_result *r, double s) { return (void)s, r->metrics.accuracy; }
static double c_f1(const qh_eval_result *r, double s) { return (void)s, r->metrics.macro_f1; }
static double c_rec(const qh_eval_result *r, double s) { return (void)s, r->metrics.macro_recall; }
static double c_agree(const qh_eval_result *r, double s) { return (void)s, r->agreement_with_fp16; }
static double c_dlogit(const qh_eval_result *r, double s) { return (void)s, r->mean_abs_dlogit; }
static double c_quant(const qh_eval_result *r, double s) { return (void)s, r->quantize_seconds; }
static double c_load(const qh_eval_result *r, double s) { return (void)s, r->load_seconds; }
static double c_eval(const qh_eval_result *r, double s) { return (void)s, r->eval_seconds; }
static double c_tps(const qh_eval_result *r, double s) { return (void)s, r->tweets_per_second; }
static double c_toks(const qh_eval_result *r, double s) { return (void)s, r->tokens_per_second; }
static double c_weights(const qh_eval_result *r, double s) { return r->weight_bytes / s; }
static double c_peak(const qh_eval_result *r, double s) { return r->peak_memory_bytes / s; }
static double c_joules(const qh_eval_result *r, double s) { return (void)s, r->energy.joules; }
static double c_co2(const qh_eval_result *r, double s) { return (void)s, r->kg_co2; }

static const column columns[] = {
    {"accuracy", "accuracy", "%.4f", c_acc, 8},
    {"macro-F1", "macro-F1", "%.4f", c_f1, 8},
    {"macro-rec", "macro recall<br>(TweetEval metric)", "%.4f", c_rec, 9},
    {"agree", "agreement<br>with fp16", "%.4f", c_agree, 8},
    {NULL, "mean |&Delta;logit|<br>vs fp16", "%.4f", c_dlogit, 0},
    {"quant s", "quantize s", "%.2f", c_quant, 8},
    {"load s", "load s", "%.2f", c_load, 8},
    {"eval s", "eval s", "%.2f", c_eval, 9},
    {"tweets/s", "tweets/s", "%.0f", c_tps, 9},
    {NULL, "tokens/s", "%.0f", c_toks, 0},
    {"weights", "weights", "%.3f", c_weights, 10},
    {"peak", "peak memory", "%.3f", c_peak, 9},
    {"energy J", "energy J", "%.1f", c_joules, 9},
    {"kg CO2eq", "kg CO2-eq", "%.2e", c_co2, 10},
};
#define N_COLUMNS ((int)(sizeof columns / sizeof *columns))

/* GB for real models, MB for small ones (the offline demo). */
static double memory_scale(const qh_eval_result *r, int n, const char **unit)
{
    double biggest = 0;
    for (int i = 0; i < n; i++) biggest = fmax(biggest, fmax(r[i].weight_bytes, r[i].peak_memory_bytes));
    *unit = biggest >= 1e9 ? "GB" : "MB";
    return biggest >= 1e9 ? 1e9 : 1e6;
}

void qh_eval_print_table(FILE *out, const qh_eval_context *ctx, const qh_eval_result *r, int n)
{
    fprintf(out, "\n%s split of %s, head %s, %s backend\n", ctx->split, ctx->data, ctx->head, n ? r[0].backend : "");
    const char *unit;
    double scale = memory_scale(r, n, &unit);
    fprintf(out, "%-7s", "variant");
    for (int c = 0; c < N_COLUMNS; c++) {
        if (!columns[c].text_width) continue;
        char head[32];
        snprintf(head, sizeof head, "%s%s%s", columns[c].text_head, columns[c].get == c_weights || columns[c].get == c_peak ? " " : "",
                 columns[c].get == c_weights || columns[c].get == c_peak ? unit : "");
        fprintf(out, " %*s", columns[c].text_width, head);
    }
    fputc('\n', out);
    for (int i = 0; i < n; i++) {
        fprintf(out, "%-7s", r[i].variant);
        for (int c = 0; c < N_COLUMNS; c++) {
            if (!columns[c].text_width) continue;
            char v[32];
            fmt(v, sizeof v, columns[c].format, columns[c].get(&r[i], scale));
            fprintf(out, " %*s", columns[c].text_width, v);
        }
        fputc('\n', out);
    }
    for (int i = 0; i < n; i++)
        if (isfinite(r[i].latency_p50_ms)) {
            char replays[64] = "";
            if (r[i].latency_replayed)
                snprintf(replays, sizeof replays, ", %d replayed from a recorded CUDA graph", r[i].latency_replayed);
            fprintf(out, "%s batch-1 latency: p50 %.2f ms, p95 %.2f ms (%d tweets%s)\n", r[i].variant, r[i].latency_p50_ms,
                    r[i].latency_p95_ms, r[i].latency_samples, replays);
        }
    if (n) fprintf(out, "energy: %s; emissions at %.0f g CO2-eq/kWh%s\n", r[0].energy.source, ctx->carbon_intensity,
                   ctx->carbon_intensity_is_default ? " (default world average, --carbon-intensity to change)" : "");
}

static int html_table(qh_strbuf *b, const qh_eval_result *r, int n)
{
    const char *unit;
    double scale = memory_scale(r, n, &unit);
    int rc = qh_strbuf_append(b, "<table><tr><th>variant</th>");
    for (int c = 0; c < N_COLUMNS && !rc; c++)
        rc = qh_strbuf_appendf(b, "<th>%s%s%s</th>", columns[c].html_head,
                               columns[c].get == c_weights || columns[c].get == c_peak ? " " : "",
                               columns[c].get == c_weights || columns[c].get == c_peak ? unit : "");
    if (!rc) rc = qh_strbuf_append(b, "<th>latency p50 / p95 ms</th></tr>\n");
    for (int i = 0; i < n && !rc; i++) {
        rc = qh_strbuf_appendf(b, "<tr><td>%s</td>", r[i].variant);
        for (int c = 0; c < N_COLUMNS && !rc; c++) {
            char v[48];
            fmt(v, sizeof v, columns[c].format, columns[c].get(&r[i], scale));
            rc = qh_strbuf_appendf(b, "<td>%s</td>", v);
        }
        if (!rc && isfinite(r[i].latency_p50_ms))
            rc = qh_strbuf_appendf(b, "<td>%.2f / %.2f</td></tr>\n", r[i].latency_p50_ms, r[i].latency_p95_ms);
        else if (!rc) rc = qh_strbuf_append(b, "<td>n/a</td></tr>\n");
    }
    return rc ? rc : qh_strbuf_append(b, "</table>\n");
}

/* One bar chart of a per-variant quantity. */
static int bars(qh_strbuf *b, const qh_eval_result *r, int n, const char *title, const char *unit, int decimals,
                double (*get)(const qh_eval_result *, double), double scale)
{
    const char *labels[8];
    double v[8];
    for (int i = 0; i < n && i < 8; i++) labels[i] = r[i].variant, v[i] = get(&r[i], scale);
    qh_svg_opts o = {.width = 420, .height = 300, .title = title, .decimals = decimals};
    int rc = qh_strbuf_append(b, "<div class=\"chart\">");
    if (!rc) rc = qh_svg_bar_chart(b, &o, labels, v, n < 8 ? n : 8, unit);
    return rc ? rc : qh_strbuf_append(b, "</div>\n");
}

static double get_acc(const qh_eval_result *r, double s) { return (void)s, 100 * r->metrics.accuracy; }
static double get_recall(const qh_eval_result *r, double s) { return (void)s, 100 * r->metrics.macro_recall; }
static double get_co2_g(const qh_eval_result *r, double s) { return (void)s, r->kg_co2 * 1000; }

/* Include train-head's loss curve: the file is one <svg> element (an XML prolog, if any, is
 * dropped). A missing file is simply left out. */
static int include_svg(qh_strbuf *b, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    if (!path || qh_read_file(path, 16u << 20, &text, &len) != QH_OK) return QH_OK;
    const char *svg = strstr(text, "<svg");
    int rc = QH_OK;
    if (svg) {
        rc = qh_strbuf_append(b, "<h2>Training loss (train-head)</h2>\n<div class=\"chart wide\">");
        if (!rc) rc = qh_strbuf_append(b, svg);
        if (!rc) rc = qh_strbuf_append(b, "</div>\n");
    }
    free(text);
    return rc;
}

int qh_eval_write_html(const qh_eval_context *ctx, const qh_eval_result *r, int n, const char *path)
{
    qh_strbuf b = {0};
    int rc = qh_strbuf_append(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>qhead evaluation</title>\n"
                                  "<style>body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}"
                                  "table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 8px;"
                                  "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
                                  ".chart{display:inline-block;margin:6px;vertical-align:top}.note{color:#555;font-size:90%}"
                                  "</style></head><body>\n<h1>qhead evaluation</h1>\n<p>");
    if (!rc) rc = qh_strbuf_append(&b, "Model <b>");
    if (!rc) rc = qh_strbuf_append_xml(&b, ctx->model);
    if (!rc) rc = qh_strbuf_append(&b, "</b>, data <b>");
    if (!rc) rc = qh_strbuf_append_xml(&b, ctx->data);
    if (!rc) rc = qh_strbuf_appendf(&b, "</b> (%s split, %lld tweets), head <b>", ctx->split, n ? (long long)r[0].n_tweets : 0LL);
    if (!rc) rc = qh_strbuf_append_xml(&b, ctx->head);
    if (!rc) rc = qh_strbuf_append(&b, "</b>, backend <b>");
    if (!rc) rc = qh_strbuf_append_xml(&b, n ? r[0].device : "");
    if (!rc) rc = qh_strbuf_append(&b, "</b>. Created ");
    if (!rc) rc = qh_strbuf_append_xml(&b, ctx->created ? ctx->created : "");
    if (!rc) rc = qh_strbuf_append(&b, ".</p>\n");
    if (!rc) rc = html_table(&b, r, n);
    if (!rc) rc = qh_strbuf_append(&b, "<p class=\"note\">Energy: ");
    if (!rc) rc = qh_strbuf_append_xml(&b, n ? r[0].energy.source : "");
    if (!rc) rc = qh_strbuf_appendf(&b, ". Emissions = energy &times; %.0f g CO2-eq/kWh%s. Peak memory: ", ctx->carbon_intensity,
                                    ctx->carbon_intensity_is_default
                                        ? " (the world-average figure CodeCarbon falls back to; set --carbon-intensity for your grid)"
                                        : " (--carbon-intensity)");
    if (!rc) rc = qh_strbuf_append_xml(&b, n ? r[0].peak_memory_kind : "");
    if (!rc) rc = qh_strbuf_append(&b, ".</p>\n<h2>Per variant</h2>\n");
    if (!rc) rc = bars(&b, r, n, "accuracy", "%", 2, get_acc, 1);
    if (!rc) rc = bars(&b, r, n, "macro recall (TweetEval metric)", "%", 2, get_recall, 1);
    if (!rc) rc = bars(&b, r, n, "evaluation time", "s", 2, c_eval, 1);
    if (!rc) rc = bars(&b, r, n, "throughput", "tweets/s", QH_SVG_NO_DECIMALS, c_tps, 1);
    const char *mem_unit;
    double mem_scale = memory_scale(r, n, &mem_unit);
    if (!rc) rc = bars(&b, r, n, "weight memory", mem_unit, 0, c_weights, mem_scale);
    if (!rc) rc = bars(&b, r, n, "peak memory", mem_unit, 0, c_peak, mem_scale);
    if (!rc) rc = bars(&b, r, n, "energy", "J", 1, c_joules, 1);
    if (!rc) rc = bars(&b, r, n, "emissions", "g CO2-eq", 0, get_co2_g, 1);
    if (!rc) rc = qh_strbuf_append(&b, "<h2>Confusion matrices</h2>\n");
    for (int i = 0; i < n && !rc; i++) {
        char title[64];
        snprintf(title, sizeof title, "%s: true vs predicted", r[i].variant);
        qh_svg_opts o = {.width = 420, .height = 400, .title = title};
        rc = qh_strbuf_append(&b, "<div class=\"chart\">");
        if (!rc) rc = qh_svg_heatmap(&b, &o, ctx->label_names, r[i].metrics.confusion, r[i].metrics.num_classes);
        if (!rc) rc = qh_strbuf_append(&b, "</div>\n");
    }
    if (!rc) rc = qh_strbuf_append(&b, "<h2>Per class</h2>\n<table><tr><th>variant</th><th>class</th><th>precision</th>"
                                      "<th>recall</th><th>F1</th><th>support</th></tr>\n");
    for (int i = 0; i < n && !rc; i++)
        for (int k = 0; k < r[i].metrics.num_classes && !rc; k++) {
            rc = qh_strbuf_appendf(&b, "<tr><td>%s</td><td>", r[i].variant);
            if (!rc) rc = qh_strbuf_append_xml(&b, k < ctx->num_labels ? ctx->label_names[k] : "");
            if (!rc)
                rc = qh_strbuf_appendf(&b, "</td><td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%lld</td></tr>\n",
                                       r[i].metrics.precision[k], r[i].metrics.recall[k], r[i].metrics.f1[k],
                                       (long long)r[i].metrics.support[k]);
        }
    if (!rc) rc = qh_strbuf_append(&b, "</table>\n");
    if (!rc) rc = include_svg(&b, ctx->loss_curve_svg);
    if (!rc) rc = qh_strbuf_append(&b, "</body></html>\n");
    if (!rc) rc = qh_strbuf_save(&b, path);
    qh_strbuf_free(&b);
    return rc;
}
