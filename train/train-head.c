/* train-head: features from the frozen backbone (cached in HDF5), then a trained
 * classification head, with train/val loss logged so overfitting shows. */
#include "advice.h"
#include "args.h"
#include "backbone_inputs.h"
#include "error.h"
#include "feature_extract.h"
#include "fileio.h"
#include "head_train.h"
#include "token_split.h"
#include "train_report.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "train-head";

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: train-head [options]\n"
            "\n"
            "Computes each tweet's last-token hidden state with the frozen LLaMA backbone (cached in\n"
            "OUT/features/), trains a Linear(hidden -> labels) head on the train split, and logs train\n"
            "and val loss, val accuracy and val macro-F1 every epoch (and every --log-every steps) to\n"
            "stdout, OUT/train_log.csv and OUT/loss_curve.svg. The head with the best val loss is saved\n"
            "to OUT/head.h5.\n"
            "\n"
            "  --model DIR          transformers model directory (default: $QHEAD_MODEL, else\n"
            "                       checkpoints/llama-2-7b-hf)\n"
            "  --tokenizer FILE     SentencePiece model (default: MODEL/tokenizer.model)\n"
            "  --data DIR           TweetEval task directory (default: data/tweeteval/sentiment)\n"
            "  --out DIR            output directory (default: checkpoints)\n"
            "  --backend NAME       cpu, cuda or auto (default auto: the GPU when there is one)\n"
            "  --batch-tokens N     tokens per forward micro-batch (default: 12288 on a GPU, 4096 on a CPU)\n"
            "  --epochs N           passes over the train split (default 3)\n"
            "  --lr X               AdamW learning rate (default 1e-3)\n"
            "  --weight-decay X     AdamW decoupled weight decay (default 0.01)\n"
            "  --batch-size N       examples per optimizer step (default 32)\n"
            "  --seed N             initialisation and shuffling seed (default 42)\n"
            "  --bias               give the head a bias (transformers' score layer has none)\n"
            "  --class-weights      weight the loss by n / (classes * count) for imbalanced splits\n"
            "  --patience N         stop after N evaluations without a better val loss (default 0: never)\n"
            "  --log-every N        also evaluate on val every N steps (default 0: each epoch only)\n"
            "  --help               this text\n");
}

typedef struct {
    const char *model, *tokenizer, *data, *out, *backend;
    long batch_tokens;
    qh_train_opts t;
} options;

static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){.model = qh_default_model_dir(), .data = "data/tweeteval/sentiment", .out = "checkpoints",
                   .backend = "auto", .batch_tokens = 0};
    qh_train_opts_default(&o->t);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--bias")) {
            o->t.bias = 1;
            continue;
        }
        if (!strcmp(a, "--class-weights")) {
            o->t.class_weights = 1;
            continue;
        }
        if (i + 1 >= argc || strncmp(a, "--", 2) != 0)
            return qh_fail(QH_EINPUT, "%s: unknown argument or missing value (see --help)", a);
        const char *v = argv[++i];
        long x = 0;
        int rc = QH_OK;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--tokenizer")) o->tokenizer = v;
        else if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--backend")) {
            o->backend = v;
            if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto"))
                rc = qh_fail(QH_EINPUT, "--backend: '%s' is not cpu, cuda or auto", v);
        } else if (!strcmp(a, "--batch-tokens")) rc = qh_arg_long(a, v, 16, 1 << 24, &o->batch_tokens);
        else if (!strcmp(a, "--epochs")) rc = qh_arg_long(a, v, 1, 100000, &x), o->t.epochs = (int)x;
        else if (!strcmp(a, "--batch-size")) rc = qh_arg_long(a, v, 1, 1 << 24, &x), o->t.batch_size = (int)x;
        else if (!strcmp(a, "--seed")) rc = qh_arg_long(a, v, 0, 0x7fffffffL, &x), o->t.seed = (uint64_t)x;
        else if (!strcmp(a, "--patience")) rc = qh_arg_long(a, v, 0, 1000000, &x), o->t.patience = (int)x;
        else if (!strcmp(a, "--log-every")) rc = qh_arg_long(a, v, 0, 1 << 30, &x), o->t.log_every = (int)x;
        else if (!strcmp(a, "--lr")) rc = qh_arg_double(a, v, 1e-12, 100, &o->t.lr);
        else if (!strcmp(a, "--weight-decay")) rc = qh_arg_double(a, v, 0, 100, &o->t.weight_decay);
        else rc = qh_fail(QH_EINPUT, "%s: unknown option (see --help)", a);
        if (rc) return rc;
    }
    return QH_OK;
}

typedef struct {
    const options *o;
    char csv[4200], svg[4200];
    int64_t steps_per_epoch;
} run_state;

/* After each log row: print it and rewrite the CSV and the curve. */
static int on_row(void *user, const qh_train_log *log, const qh_head *h)
{
    (void)h;
    run_state *rs = user;
    const qh_train_row *r = &log->rows[log->n - 1];
    const char *note = "";
    if (log->n > 1 && r->val_loss > log->rows[log->n - 2].val_loss)
        note = r->train_loss < log->rows[log->n - 2].train_loss ? "  val loss up while train loss falls: overfitting"
                                                                 : "  val loss up";
    printf("epoch %-3d step %-7lld train_loss %.4f  val_loss %.4f  val_acc %.4f  val_macro_f1 %.4f%s%s\n", r->epoch,
           (long long)r->step, r->train_loss, r->val_loss, r->val_accuracy, r->val_macro_f1,
           log->best_row == log->n - 1 ? "  *best" : "", note);
    fflush(stdout);
    int rc = qh_train_log_write_csv(log, rs->csv);
    if (!rc) rc = qh_train_log_write_svg(log, rs->steps_per_epoch, rs->svg);
    return rc ? (fprintf(stderr, "%s: %s\n", prog, qh_last_error()), 1) : 0;
}

static char *hyperparameters_json(const options *o, const char *tok_sha, const qh_train_log *log, int64_t n_train,
                                  int64_t n_val)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "data", o->data);
    cJSON_AddStringToObject(j, "tokenizer_sha256", tok_sha);
    cJSON_AddNumberToObject(j, "epochs", o->t.epochs);
    cJSON_AddNumberToObject(j, "lr", o->t.lr);
    cJSON_AddNumberToObject(j, "weight_decay", o->t.weight_decay);
    cJSON_AddNumberToObject(j, "beta1", o->t.beta1);
    cJSON_AddNumberToObject(j, "beta2", o->t.beta2);
    cJSON_AddNumberToObject(j, "eps", o->t.eps);
    cJSON_AddNumberToObject(j, "batch_size", o->t.batch_size);
    cJSON_AddNumberToObject(j, "seed", (double)o->t.seed);
    cJSON_AddBoolToObject(j, "bias", o->t.bias);
    cJSON_AddBoolToObject(j, "class_weights", o->t.class_weights);
    cJSON_AddNumberToObject(j, "patience", o->t.patience);
    cJSON_AddNumberToObject(j, "log_every", o->t.log_every);
    cJSON_AddNumberToObject(j, "init_std", o->t.init_std);
    cJSON_AddNumberToObject(j, "train_examples", (double)n_train);
    cJSON_AddNumberToObject(j, "val_examples", (double)n_val);
    cJSON_AddNumberToObject(j, "best_epoch", log->rows[log->best_row].epoch);
    cJSON_AddNumberToObject(j, "best_step", (double)log->rows[log->best_row].step);
    cJSON_AddNumberToObject(j, "best_val_loss", log->rows[log->best_row].val_loss);
    cJSON_AddBoolToObject(j, "stopped_early", log->stopped_early);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

typedef struct {
    qh_tweeteval_split text;
    qh_token_split tok;
    float *hidden;
} split_data;

static int load_split(const options *o, const qh_tweeteval_mapping *map, const qh_tokenizer *tok, int max_len,
                      const char *name, split_data *s)
{
    int rc = qh_tweeteval_load_split(o->data, name, map, &s->text);
    if (!rc) rc = qh_tokenize_split(tok, &s->text, max_len, &s->tok);
    if (!rc && s->tok.truncated)
        fprintf(stderr, "%s: warning: %lld %s tweets were longer than %d tokens and were truncated\n", prog,
                (long long)s->tok.truncated, name, max_len);
    return rc;
}

static int features(qh_feature_extractor *fx, const options *o, const qh_checkpoint *ck, const char *tok_desc,
                    const char *task, const char *name, split_data *s)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/features/%s-%s-%.12s.h5", o->out, task, name, ck->fingerprint);
    int H = ck->cfg.hidden_size;
    s->hidden = malloc(sizeof(float) * (size_t)H * (size_t)(s->tok.n ? s->tok.n : 1));
    if (!s->hidden) return qh_fail(QH_ESYS, "out of memory for %lld x %d features", (long long)s->tok.n, H);
    qh_feature_spec spec = {.split = name, .model = o->model, .model_fingerprint = ck->fingerprint,
                            .tokenizer = tok_desc, .hidden_size = H, .n = s->tok.n, .ids = s->tok.ids,
                            .offsets = s->tok.offsets, .labels = s->tok.labels};
    qh_feature_stats st;
    char label[64];
    snprintf(label, sizeof label, "features %s", name);
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/features", o->out);
    int rc = qh_mkdirs(dir);
    if (rc) return rc;
    if ((rc = qh_extract_features(fx, path, &spec, label, s->hidden, &st))) return rc;
    if (st.note[0]) printf("note: %s\n", st.note);
    if (st.reused_file) printf("%s: reused %s\n", label, path);
    else if (st.parts_reused) printf("%s: resumed, %d parts reused, %d computed\n", label, st.parts_reused, st.parts_computed);
    return QH_OK;
}

static int run(const options *o)
{
    char tok_path[4200];
    if (o->tokenizer) snprintf(tok_path, sizeof tok_path, "%s", o->tokenizer);
    else snprintf(tok_path, sizeof tok_path, "%s/tokenizer.model", o->model);
    const char *splits[2] = {"train", "val"};
    if (qh_check_model_dir(prog, o->model, tok_path) || qh_check_task_dir(prog, o->data, splits, 2)) return -QH_EINPUT;

    qh_checkpoint *ck = NULL;
    qh_tokenizer *tok = NULL;
    qh_tweeteval_mapping map = {0};
    split_data sd[2] = {0};
    qh_feature_extractor fx = {.model_dir = o->model, .backend = o->backend, .batch_tokens = (int)o->batch_tokens,
                               .log = stdout};
    qh_head *head = NULL;
    qh_train_log log = {0};
    double *matrix = NULL;
    char *hp = NULL;
    int rc = qh_backbone_inputs_open(o->model, tok_path, &ck, &tok);
    if (!rc) rc = qh_tweeteval_load_mapping(o->data, &map);
    if (!rc && map.num_classes > QH_MAX_LABELS)
        rc = qh_fail(QH_EINPUT, "%s/mapping.txt: %d classes, at most %d supported", o->data, map.num_classes, QH_MAX_LABELS);
    int max_len = ck ? ck->cfg.max_position_embeddings : 0;
    for (int i = 0; i < 2 && !rc; i++) rc = load_split(o, &map, tok, max_len, splits[i], &sd[i]);
    char tok_desc[4400];
    if (!rc) snprintf(tok_desc, sizeof tok_desc, "%s sha256:%s", tok_path, qh_tokenizer_sha256(tok));
    const char *task = strrchr(o->data, '/') && strrchr(o->data, '/')[1] ? strrchr(o->data, '/') + 1 : o->data;
    if (!rc) printf("train-head: %s, %s: %lld train / %lld val tweets, %d classes, hidden %d\n", o->model, o->data,
                    (long long)sd[0].tok.n, (long long)sd[1].tok.n, map.num_classes, ck->cfg.hidden_size);
    for (int i = 0; i < 2 && !rc; i++) rc = features(&fx, o, ck, tok_desc, task, splits[i], &sd[i]);
    qh_feature_extractor_free(&fx);

    run_state rs = {.o = o, .steps_per_epoch = (sd[0].tok.n + o->t.batch_size - 1) / o->t.batch_size};
    snprintf(rs.csv, sizeof rs.csv, "%s/train_log.csv", o->out);
    snprintf(rs.svg, sizeof rs.svg, "%s/loss_curve.svg", o->out);
    if (!rc) {
        int H = ck->cfg.hidden_size;
        qh_dataset_view tr = {sd[0].hidden, sd[0].tok.labels, sd[0].tok.n, H}, va = {sd[1].hidden, sd[1].tok.labels, sd[1].tok.n, H};
        printf("training Linear(%d -> %d)%s: %d epochs, batch %d, AdamW lr %g weight decay %g, seed %llu\n", H,
               map.num_classes, o->t.bias ? " with bias" : "", o->t.epochs, o->t.batch_size, o->t.lr,
               o->t.weight_decay, (unsigned long long)o->t.seed);
        rc = qh_train_head(&tr, &va, map.num_classes, &o->t, on_row, &rs, &head, &log);
    }
    if (!rc) {
        for (int k = 0; k < map.num_classes; k++) snprintf(head->label_names[k], sizeof head->label_names[k], "%s", map.names[k]);
        snprintf(head->model_fingerprint, sizeof head->model_fingerprint, "%s", ck->fingerprint);
        matrix = qh_train_log_matrix(&log);
        hp = hyperparameters_json(o, qh_tokenizer_sha256(tok), &log, sd[0].tok.n, sd[1].tok.n);
        qh_head_record rec = {.hyperparameters_json = hp, .log = matrix, .log_rows = (int)log.n,
                              .log_cols = QH_TRAIN_LOG_COLS, .log_columns = qh_train_log_columns};
        char path[4200];
        snprintf(path, sizeof path, "%s/head.h5", o->out);
        rc = (!matrix || !hp) ? qh_fail(QH_ESYS, "out of memory") : qh_head_save_record(head, &rec, path);
        if (!rc) {
            const qh_train_row *b = &log.rows[log.best_row];
            printf("best val loss %.4f (epoch %d, step %lld, val acc %.4f, val macro-F1 %.4f)%s\n", b->val_loss, b->epoch,
                   (long long)b->step, b->val_accuracy, b->val_macro_f1, log.stopped_early ? "; stopped early" : "");
            printf("wrote %s, %s, %s\n", path, rs.csv, rs.svg);
        }
    }
    free(matrix);
    free(hp);
    qh_train_log_free(&log);
    qh_head_free(head);
    for (int i = 0; i < 2; i++) {
        free(sd[i].hidden);
        qh_token_split_free(&sd[i].tok);
        qh_tweeteval_split_free(&sd[i].text);
    }
    qh_tweeteval_mapping_free(&map);
    qh_tokenizer_free(tok);
    qh_checkpoint_close(ck);
    return rc;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout), 0;
    options o;
    int rc = parse_args(argc, argv, &o);
    if (!rc) rc = run(&o);
    if (rc == -QH_EINPUT) return 2; /* the advice paragraph was printed */
    return rc ? qh_report(prog, rc) : 0;
}
