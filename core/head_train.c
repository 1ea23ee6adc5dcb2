#include "head_train.h"

#include "error.h"
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void qh_train_opts_default(qh_train_opts *o)
{
    /* lr 1e-3 with AdamW suits a linear probe on unnormalised LLaMA features (norms ~100):
     * larger rates oscillate, smaller ones need many more epochs than the 3 users run. */
    *o = (qh_train_opts){.lr = 1e-3, .weight_decay = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                         .batch_size = 32, .epochs = 3, .seed = 42, .bias = 0, .class_weights = 0,
                         .patience = 0, .log_every = 0, .init_std = 0.02};
}

/* splitmix64: small, seedable, identical on every platform. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double next_uniform(uint64_t *s) { return ((next_u64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static double next_normal(uint64_t *s)
{
    double u1 = next_uniform(s), u2 = next_uniform(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Unbiased index in [0, n). */
static int64_t next_below(uint64_t *s, int64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % (uint64_t)n, r;
    do r = next_u64(s);
    while (r >= limit);
    return (int64_t)(r % (uint64_t)n);
}

static void logits_row(const qh_head *h, const float *x, double *z)
{
    for (int k = 0; k < h->num_labels; k++) {
        const float *w = h->weight + (size_t)k * h->hidden_size;
        double acc = h->bias ? h->bias[k] : 0.0;
        for (int j = 0; j < h->hidden_size; j++) acc += (double)w[j] * x[j];
        z[k] = acc;
    }
}

/* Softmax in place; returns -log p[label]. */
static double softmax_ce(double *z, int k, int label)
{
    double m = z[0];
    for (int i = 1; i < k; i++) m = z[i] > m ? z[i] : m;
    double sum = 0;
    for (int i = 0; i < k; i++) sum += exp(z[i] - m);
    double ce = log(sum) + m - z[label];
    for (int i = 0; i < k; i++) z[i] = exp(z[i] - m) / sum;
    return ce;
}

double qh_head_loss_grad(const qh_head *h, const qh_dataset_view *d, const int64_t *idx, int n,
                         const double *class_weight, float *gw, float *gb)
{
    int K = h->num_labels, D = h->hidden_size;
    double z[QH_MAX_LABELS], wsum = 0, loss = 0;
    double *acc = calloc((size_t)K * D, sizeof(double));
    double accb[QH_MAX_LABELS] = {0};
    if (!acc) return NAN;
    for (int b = 0; b < n; b++) {
        int64_t i = idx ? idx[b] : b;
        const float *x = d->x + (size_t)i * D;
        int y = d->labels[i];
        double w = class_weight ? class_weight[y] : 1.0;
        logits_row(h, x, z);
        loss += w * softmax_ce(z, K, y);
        wsum += w;
        for (int k = 0; k < K; k++) {
            double g = w * (z[k] - (k == y));
            accb[k] += g;
            double *a = acc + (size_t)k * D;
            for (int j = 0; j < D; j++) a[j] += g * x[j];
        }
    }
    double inv = wsum > 0 ? 1.0 / wsum : 0.0;
    for (size_t j = 0; j < (size_t)K * D; j++) gw[j] = (float)(acc[j] * inv);
    if (gb)
        for (int k = 0; k < K; k++) gb[k] = (float)(accb[k] * inv);
    free(acc);
    return loss * inv;
}

int qh_head_evaluate(const qh_head *h, const qh_dataset_view *d, const double *class_weight, double *loss,
                     double *accuracy, double *macro_f1)
{
    int32_t *pred = malloc(sizeof(int32_t) * (size_t)(d->n ? d->n : 1));
    if (!pred) return qh_fail(QH_ESYS, "out of memory evaluating the head");
    double z[QH_MAX_LABELS], total = 0, wsum = 0;
    for (int64_t i = 0; i < d->n; i++) {
        logits_row(h, d->x + (size_t)i * h->hidden_size, z);
        int best = 0;
        for (int k = 1; k < h->num_labels; k++) best = z[k] > z[best] ? k : best;
        pred[i] = best;
        double w = class_weight ? class_weight[d->labels[i]] : 1.0;
        total += w * softmax_ce(z, h->num_labels, d->labels[i]);
        wsum += w;
    }
    qh_metrics m;
    int rc = qh_metrics_compute(d->labels, pred, (size_t)d->n, h->num_labels, &m);
    free(pred);
    if (rc) return rc;
    *loss = wsum > 0 ? total / wsum : 0.0;
    *accuracy = m.accuracy;
    *macro_f1 = m.macro_f1;
    qh_metrics_free(&m);
    return QH_OK;
}

void qh_train_log_free(qh_train_log *log)
{
    free(log->rows);
    memset(log, 0, sizeof *log);
}

static int log_append(qh_train_log *log, const qh_train_row *r)
{
    if (log->n == log->cap) {
        size_t cap = log->cap ? log->cap * 2 : 64;
        qh_train_row *p = realloc(log->rows, cap * sizeof *p);
        if (!p) return qh_fail(QH_ESYS, "out of memory for the training log");
        log->rows = p;
        log->cap = cap;
    }
    log->rows[log->n++] = *r;
    return QH_OK;
}

static int check_inputs(const qh_dataset_view *train, const qh_dataset_view *val, int K, const qh_train_opts *o)
{
    if (K < 2 || K > QH_MAX_LABELS) return qh_fail(QH_EINPUT, "the head needs 2 to %d labels, not %d", QH_MAX_LABELS, K);
    if (train->n < 1 || val->n < 1) return qh_fail(QH_EINPUT, "training needs a non-empty train and val split");
    if (train->dim != val->dim || train->dim < 1) return qh_fail(QH_EINPUT, "train and val features differ in size");
    if (o->batch_size < 1 || o->epochs < 1 || !(o->lr > 0) || !(o->weight_decay >= 0) || o->patience < 0 ||
        o->log_every < 0)
        return qh_fail(QH_EINPUT, "invalid training options");
    const qh_dataset_view *sets[2] = {train, val};
    for (int s = 0; s < 2; s++)
        for (int64_t i = 0; i < sets[s]->n; i++)
            if (sets[s]->labels[i] < 0 || sets[s]->labels[i] >= K)
                return qh_fail(QH_EINPUT, "%s example %lld has label %d, outside 0..%d", s ? "val" : "train",
                               (long long)i, sets[s]->labels[i], K - 1);
    return QH_OK;
}

typedef struct {
    double *m, *v; /* Adam moments for weight then bias */
    int64_t t;
} adamw_state;

/* PyTorch's AdamW: decoupled decay p -= lr*wd*p, then the bias-corrected Adam step. */
static void adamw_step(float *p, const float *g, double *m, double *v, size_t n, const qh_train_opts *o, int64_t t)
{
    double c1 = 1.0 - pow(o->beta1, (double)t), c2 = 1.0 - pow(o->beta2, (double)t);
    for (size_t i = 0; i < n; i++) {
        double pi = p[i] * (1.0 - o->lr * o->weight_decay);
        m[i] = o->beta1 * m[i] + (1.0 - o->beta1) * g[i];
        v[i] = o->beta2 * v[i] + (1.0 - o->beta2) * (double)g[i] * g[i];
        pi -= o->lr * (m[i] / c1) / (sqrt(v[i] / c2) + o->eps);
        p[i] = (float)pi;
    }
}

static void copy_head(qh_head *dst, const qh_head *src)
{
    memcpy(dst->weight, src->weight, sizeof(float) * (size_t)src->num_labels * src->hidden_size);
    if (src->bias) memcpy(dst->bias, src->bias, sizeof(float) * (size_t)src->num_labels);
}

void qh_class_weights(const int32_t *labels, int64_t n, int K, double *w)
{
    int64_t count[QH_MAX_LABELS] = {0};
    for (int64_t i = 0; i < n; i++) count[labels[i]]++;
    for (int k = 0; k < K; k++) w[k] = count[k] ? (double)n / ((double)K * (double)count[k]) : 1.0;
}

int qh_train_head(const qh_dataset_view *train, const qh_dataset_view *val, int K, const qh_train_opts *o,
                  qh_train_callback cb, void *user, qh_head **best_out, qh_train_log *log)
{
    *best_out = NULL;
    memset(log, 0, sizeof *log);
    int rc = check_inputs(train, val, K, o);
    if (rc) return rc;
    int D = train->dim;
    size_t nw = (size_t)K * D;
    qh_head *h = NULL, *best = NULL;
    if ((rc = qh_head_create(K, D, o->bias, &h)) || (rc = qh_head_create(K, D, o->bias, &best))) goto out;
    double cw[QH_MAX_LABELS], *cwp = NULL;
    if (o->class_weights) {
        qh_class_weights(train->labels, train->n, K, cw);
        cwp = cw;
    }
    uint64_t rng = o->seed;
    for (size_t i = 0; i < nw; i++) h->weight[i] = (float)(o->init_std * next_normal(&rng));
    if (h->bias) memset(h->bias, 0, sizeof(float) * (size_t)K);
    copy_head(best, h);

    int64_t *order = malloc(sizeof(int64_t) * (size_t)train->n);
    float *gw = malloc(sizeof(float) * nw);
    double *m = calloc(nw + (size_t)K, sizeof(double)), *v = calloc(nw + (size_t)K, sizeof(double));
    float gb[QH_MAX_LABELS];
    if (!order || !gw || !m || !v) {
        rc = qh_fail(QH_ESYS, "out of memory for training");
        goto out_free;
    }
    for (int64_t i = 0; i < train->n; i++) order[i] = i;
    double best_loss = INFINITY, since_sum = 0;
    int64_t step = 0, since_n = 0;
    int no_better = 0, stop = 0;
    for (int epoch = 1; epoch <= o->epochs && !stop; epoch++) {
        for (int64_t i = train->n - 1; i > 0; i--) { /* Fisher-Yates */
            int64_t j = next_below(&rng, i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (int64_t start = 0; start < train->n && !stop; start += o->batch_size) {
            int nb = (int)(train->n - start < o->batch_size ? train->n - start : o->batch_size);
            double loss = qh_head_loss_grad(h, train, order + start, nb, cwp, gw, h->bias ? gb : NULL);
            if (isnan(loss)) {
                rc = qh_fail(QH_EINPUT, "training diverged (loss is NaN): are the features finite? try a smaller --lr");
                goto out_free;
            }
            step++;
            adamw_step(h->weight, gw, m, v, nw, o, step);
            if (h->bias) adamw_step(h->bias, gb, m + nw, v + nw, (size_t)K, o, step);
            since_sum += loss;
            since_n++;
            int epoch_end = start + nb >= train->n;
            if (!epoch_end && !(o->log_every && step % o->log_every == 0)) continue;
            qh_train_row r = {.epoch = epoch, .step = step, .train_loss = since_sum / (double)since_n,
                              .epoch_end = epoch_end};
            if ((rc = qh_head_evaluate(h, val, cwp, &r.val_loss, &r.val_accuracy, &r.val_macro_f1))) goto out_free;
            since_sum = 0;
            since_n = 0;
            if ((rc = log_append(log, &r))) goto out_free;
            if (r.val_loss < best_loss) {
                best_loss = r.val_loss;
                log->best_row = log->n - 1;
                copy_head(best, h);
                no_better = 0;
            } else if (o->patience && ++no_better >= o->patience) {
                log->stopped_early = 1;
                stop = 1;
            }
            if (cb && cb(user, log, h)) {
                rc = qh_fail(QH_ESYS, "training stopped by its caller");
                goto out_free;
            }
        }
    }
    *best_out = best;
    best = NULL;
out_free:
    free(order);
    free(gw);
    free(m);
    free(v);
out:
    qh_head_free(h);
    qh_head_free(best);
    if (rc) qh_train_log_free(log);
    return rc;
}
