/* evaluate: fp16, int8 and nf4 backbones with the trained head on the test split, measured
 * for quality, speed, memory and energy, reported as a table, JSON, CSV and HTML. */
#include "advice.h"
#include "args.h"
#include "backbone_inputs.h"
#include "error.h"
#include "eval_run.h"
#include "fileio.h"
#include "quant_model.h"
#include "svg.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *prog = "evaluate";

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: evaluate [--all-variants | --variant fp16|int8|nf4] [options]\n"
            "\n"
            "Runs each backbone variant with the head from train-head over the test split and reports\n"
            "accuracy, macro-F1, macro recall (TweetEval's sentiment metric), per-class scores, confusion\n"
            "matrices, agreement with fp16, load/quantization/evaluation time, throughput, memory, energy\n"
            "and emissions: a table on stdout and OUT/eval/report.{json,csv,html}. A variant not yet\n"
            "quantized is quantized first (OUT/backbone-<variant>.safetensors), its time reported apart.\n"
            "\n"
            "  --all-variants         fp16, int8 and nf4 (the default when --variant is not given)\n"
            "  --variant NAME         just one of fp16, int8, nf4 (repeatable)\n"
            "  --model DIR            transformers model directory (default: $QHEAD_MODEL, else\n"
            "                         checkpoints/llama-2-7b-hf)\n"
            "  --tokenizer FILE       SentencePiece model (default: MODEL/tokenizer.model)\n"
            "  --data DIR             TweetEval task directory (default: data/tweeteval/sentiment)\n"
            "  --split NAME           split to evaluate (default: test)\n"
            "  --out DIR              where train-head wrote head.h5 and where reports go (default: checkpoints)\n"
            "  --head FILE            head file (default: OUT/head.h5)\n"
            "  --backend NAME         cpu, cuda or auto (default auto)\n"
            "  --batch-tokens N       tokens per forward micro-batch (default: 12288 on a GPU, 10240 for nf4, 4096 on a CPU)\n"
            "  --latency N            also time N single tweets at batch 1 (p50/p95; each length warmed up once)\n"
            "  --carbon-intensity G   grid intensity in g CO2-eq/kWh (default 475, the world average\n"
            "                         CodeCarbon falls back to)\n"
            "  --help                 this text\n");
}

typedef struct {
    const char *model, *tokenizer, *data, *split, *out, *head, *backend;
    long batch_tokens, latency;
    double carbon;
    int carbon_default;
    int variants[3]; /* fp16, int8, nf4 selected */
} options;

static const char *const variant_names[3] = {"fp16", "int8", "nf4"};

static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){.model = qh_default_model_dir(), .data = "data/tweeteval/sentiment", .split = "test",
                   .out = "checkpoints", .backend = "auto", .batch_tokens = 0, .carbon = QH_DEFAULT_CARBON_INTENSITY,
                   .carbon_default = 1};
    int any = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--all-variants")) {
            o->variants[0] = o->variants[1] = o->variants[2] = any = 1;
            continue;
        }
        if (i + 1 >= argc || strncmp(a, "--", 2) != 0)
            return qh_fail(QH_EINPUT, "%s: unknown argument or missing value (see --help)", a);
        const char *v = argv[++i];
        int rc = QH_OK;
        if (!strcmp(a, "--variant")) {
            int k = !strcmp(v, "fp16") ? 0 : !strcmp(v, "int8") ? 1 : !strcmp(v, "nf4") ? 2 : -1;
            if (k < 0) rc = qh_fail(QH_EINPUT, "--variant: '%s' is not fp16, int8 or nf4", v);
            else o->variants[k] = any = 1;
        } else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--tokenizer")) o->tokenizer = v;
        else if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--split")) {
            o->split = v;
            if (!qh_tweeteval_is_split_name(v)) rc = qh_fail(QH_EINPUT, "--split: '%s' is not train, val or test", v);
        } else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--head")) o->head = v;
        else if (!strcmp(a, "--backend")) {
            o->backend = v;
            if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto"))
                rc = qh_fail(QH_EINPUT, "--backend: '%s' is not cpu, cuda or auto", v);
        } else if (!strcmp(a, "--batch-tokens")) rc = qh_arg_long(a, v, 16, 1 << 24, &o->batch_tokens);
        else if (!strcmp(a, "--latency")) rc = qh_arg_long(a, v, 1, 1000000, &o->latency);
        else if (!strcmp(a, "--carbon-intensity")) rc = qh_arg_double(a, v, 0, 5000, &o->carbon), o->carbon_default = 0;
        else rc = qh_fail(QH_EINPUT, "%s: unknown option (see --help)", a);
        if (rc) return rc;
    }
    if (!any) o->variants[0] = o->variants[1] = o->variants[2] = 1;
    return QH_OK;
}

/* Quantize when the file is missing; otherwise take the time quantize recorded. */
static int ensure_quantized(const options *o, int k, const char *qfile, qh_eval_result *r)
{
    char report[4200];
    snprintf(report, sizeof report, "%s/quantize-%s.json", o->out, variant_names[k]);
    r->quantize_seconds = NAN;
    if (qh_path_exists(qfile)) {
        char *text = NULL;
        size_t len;
        if (qh_read_file(report, 64u << 20, &text, &len) == QH_OK) {
            cJSON *j = cJSON_Parse(text);
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "overall"), "seconds");
            if (cJSON_IsNumber(s)) r->quantize_seconds = s->valuedouble;
            cJSON_Delete(j);
            free(text);
        }
        return QH_OK;
    }
    printf("%s: %s not found, quantizing %s now\n", variant_names[k], qfile, o->model);
    qh_quantize_opts q = {.model_dir = o->model, .out_path = qfile, .report_path = report, .bits = k == 1 ? 8 : 4,
                          .blocksize = 64, .double_quant = 0, .threshold = 6.0};
    qh_quantize_summary sum;
    int rc = qh_quantize_model(&q, &sum);
    if (!rc) {
        r->quantize_seconds = sum.seconds;
        r->quantized_now = 1;
    }
    return rc;
}

/* Predictions and logits per tweet, for people and for later single-variant runs. */
static int save_predictions(const char *path, const qh_token_split *s, const float *logits, int K)
{
    qh_strbuf b = {0};
    int rc = qh_strbuf_append(&b, "index,label,prediction");
    for (int k = 0; k < K && !rc; k++) rc = qh_strbuf_appendf(&b, ",logit_%d", k);
    if (!rc) rc = qh_strbuf_append(&b, "\n");
    for (int64_t i = 0; i < s->n && !rc; i++) {
        rc = qh_strbuf_appendf(&b, "%lld,%d,%d", (long long)i, s->labels[i], qh_argmax(logits + i * K, K));
        for (int k = 0; k < K && !rc; k++) rc = qh_strbuf_appendf(&b, ",%.9g", logits[i * K + k]);
        if (!rc) rc = qh_strbuf_append(&b, "\n");
    }
    if (!rc) rc = qh_strbuf_save(&b, path);
    qh_strbuf_free(&b);
    return rc;
}

/* fp16 logits from an earlier run's predictions file, when it covers the same split. */
static float *load_fp16_logits(const char *path, int64_t n, int K)
{
    char *text = NULL;
    size_t len;
    if (qh_read_file(path, (size_t)1 << 30, &text, &len) != QH_OK) return NULL;
    float *l = malloc(sizeof(float) * (size_t)(n * K + 1));
    char *p = strchr(text, '\n');
    int64_t i = 0;
    while (l && p && p[1] && i < n) {
        p++;
        long long idx;
        int lab, pr, used;
        if (sscanf(p, "%lld,%d,%d%n", &idx, &lab, &pr, &used) != 3 || idx != i) break;
        char *q = p + used;
        int k = 0;
        for (; k < K; k++) {
            char *end;
            if (*q != ',') break;
            l[i * K + k] = strtof(q + 1, &end);
            q = end;
        }
        if (k < K) break;
        i++;
        p = strchr(q, '\n');
    }
    int complete = i == n && !(p && p[1]); /* every row read, nothing after them */
    free(text);
    if (!complete) {
        free(l);
        return NULL;
    }
    return l;
}

static int run(const options *o)
{
    char tok_path[4200], head_path[4200], evdir[4200], path[4400];
    if (o->tokenizer) snprintf(tok_path, sizeof tok_path, "%s", o->tokenizer);
    else snprintf(tok_path, sizeof tok_path, "%s/tokenizer.model", o->model);
    if (o->head) snprintf(head_path, sizeof head_path, "%s", o->head);
    else snprintf(head_path, sizeof head_path, "%s/head.h5", o->out);
    if (qh_check_model_dir(prog, o->model, tok_path) || qh_check_task_dir(prog, o->data, &o->split, 1)) return -QH_EINPUT;
    if (!qh_path_exists(head_path))
        return qh_fail(QH_EINPUT, "%s: no trained head; run train-head first (or pass --head FILE)", head_path);

    qh_head *head = NULL;
    qh_checkpoint *ck = NULL;
    qh_tokenizer *tok = NULL;
    qh_tweeteval_mapping map = {0};
    qh_tweeteval_split text = {0};
    qh_token_split ts = {0};
    qh_eval_result res[3];
    float *logits[3] = {0};
    int nres = 0;
    memset(res, 0, sizeof res);
    int rc = qh_head_load(head_path, &head);
    if (!rc) rc = qh_backbone_inputs_open(o->model, tok_path, &ck, &tok);
    if (!rc && head->model_fingerprint[0] && strcmp(head->model_fingerprint, ck->fingerprint) != 0)
        rc = qh_fail(QH_EINPUT, "%s was trained on another backbone (fingerprint %.12s, %s is %.12s); run train-head with this model",
                     head_path, head->model_fingerprint, o->model, ck->fingerprint);
    if (!rc && head->hidden_size != ck->cfg.hidden_size)
        rc = qh_fail(QH_EINPUT, "%s expects hidden size %d, %s has %d", head_path, head->hidden_size, o->model, ck->cfg.hidden_size);
    if (!rc) rc = qh_tweeteval_load_mapping(o->data, &map);
    if (!rc && map.num_classes != head->num_labels)
        rc = qh_fail(QH_EINPUT, "%s/mapping.txt has %d classes but %s has %d", o->data, map.num_classes, head_path, head->num_labels);
    if (!rc) rc = qh_tweeteval_load_split(o->data, o->split, &map, &text);
    if (!rc) rc = qh_tokenize_split(tok, &text, ck->cfg.max_position_embeddings, &ts);
    snprintf(evdir, sizeof evdir, "%s/eval", o->out);
    if (!rc) rc = qh_mkdirs(evdir);
    if (!rc) printf("evaluate: %s split of %s: %lld tweets, %lld tokens; head %s\n", o->split, o->data, (long long)ts.n,
                    (long long)ts.n_tokens, head_path);
    float *fp16_prev = NULL;
    for (int k = 0; k < 3 && !rc; k++) {
        if (!o->variants[k]) continue;
        char qfile[4200];
        snprintf(qfile, sizeof qfile, "%s/backbone-%s.safetensors", o->out, variant_names[k]);
        qh_eval_result *r = &res[nres];
        r->quantize_seconds = NAN;
        if (k > 0 && (rc = ensure_quantized(o, k, qfile, r))) break;
        if (k > 0 && !logits[0] && !fp16_prev) {
            snprintf(path, sizeof path, "%s/predictions-fp16.csv", evdir);
            fp16_prev = load_fp16_logits(path, ts.n, head->num_labels);
        }
        qh_eval_opts eo = {.model_dir = o->model, .variant = variant_names[k], .qfile = k ? qfile : NULL,
                           .backend = o->backend, .batch_tokens = (int)o->batch_tokens, .latency_samples = (int)o->latency,
                           .carbon_intensity = o->carbon, .split = &ts, .head = head,
                           .fp16_logits = logits[0] ? logits[0] : fp16_prev, .log = stdout};
        rc = qh_eval_variant(&eo, r, &logits[nres]);
        if (rc) break;
        snprintf(path, sizeof path, "%s/predictions-%s.csv", evdir, variant_names[k]);
        rc = save_predictions(path, &ts, logits[nres], head->num_labels);
        nres++;
    }
    free(fp16_prev);
    if (!rc) {
        const char *labels[QH_MAX_LABELS];
        for (int k = 0; k < head->num_labels; k++) labels[k] = map.names[k];
        char created[64], curve[4200];
        time_t now = time(NULL);
        strftime(created, sizeof created, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
        snprintf(curve, sizeof curve, "%s/loss_curve.svg", o->out);
        qh_eval_context ctx = {.model = o->model, .data = o->data, .split = o->split, .head = head_path,
                               .label_names = labels, .num_labels = head->num_labels, .carbon_intensity = o->carbon,
                               .carbon_intensity_is_default = o->carbon_default, .loss_curve_svg = curve, .created = created};
        qh_eval_print_table(stdout, &ctx, res, nres);
        char pj[4400], pc[4400], ph[4400];
        snprintf(pj, sizeof pj, "%s/report.json", evdir);
        snprintf(pc, sizeof pc, "%s/report.csv", evdir);
        snprintf(ph, sizeof ph, "%s/report.html", evdir);
        rc = qh_eval_write_json(&ctx, res, nres, pj);
        if (!rc) rc = qh_eval_write_csv(&ctx, res, nres, pc);
        if (!rc) rc = qh_eval_write_html(&ctx, res, nres, ph);
        if (!rc) printf("wrote %s, %s, %s\n", pj, pc, ph);
    }
    for (int i = 0; i < 3; i++) {
        qh_metrics_free(&res[i].metrics);
        free(logits[i]);
    }
    qh_token_split_free(&ts);
    qh_tweeteval_split_free(&text);
    qh_tweeteval_mapping_free(&map);
    qh_tokenizer_free(tok);
    qh_checkpoint_close(ck);
    qh_head_free(head);
    return rc;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout), 0;
    options o;
    int rc = parse_args(argc, argv, &o);
    if (!rc) rc = run(&o);
    if (rc == -QH_EINPUT) return 2;
    return rc ? qh_report(prog, rc) : 0;
}
