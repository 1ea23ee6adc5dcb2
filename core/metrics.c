#include "metrics.h"

#include "error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void qh_metrics_free(qh_metrics *m)
{
    if (!m) return;
    free(m->confusion);
    free(m->support);
    free(m->precision);
    free(m->recall);
    free(m->f1);
    m->confusion = m->support = NULL;
    m->precision = m->recall = m->f1 = NULL;
}

/* num / den, or 0 when den is 0 (zero_division=0). */
static double ratio(int64_t num, int64_t den) { return den ? (double)num / (double)den : 0.0; }

int qh_metrics_compute(const int32_t *truth, const int32_t *pred, size_t n, int num_classes,
                       qh_metrics *out)
{
    memset(out, 0, sizeof *out);
    if (num_classes < 1) return qh_fail(QH_EINPUT, "metrics: %d classes (need at least 1)", num_classes);
    if (n && (!truth || !pred)) return qh_fail(QH_EINPUT, "metrics: no labels given for %zu examples", n);
    const size_t k = (size_t)num_classes;
    for (size_t i = 0; i < n; i++) {
        if (truth[i] < 0 || truth[i] >= num_classes)
            return qh_fail(QH_EINPUT, "metrics: true label %d of example %zu is outside [0, %d)", (int)truth[i], i,
                           num_classes);
        if (pred[i] < 0 || pred[i] >= num_classes)
            return qh_fail(QH_EINPUT, "metrics: predicted label %d of example %zu is outside [0, %d)", (int)pred[i],
                           i, num_classes);
    }
    out->num_classes = num_classes;
    out->n = (int64_t)n;
    out->confusion = calloc(k * k, sizeof *out->confusion);
    out->support = calloc(k, sizeof *out->support);
    out->precision = calloc(k, sizeof *out->precision);
    out->recall = calloc(k, sizeof *out->recall);
    out->f1 = calloc(k, sizeof *out->f1);
    int64_t *predicted = calloc(k, sizeof *predicted);
    if (!out->confusion || !out->support || !out->precision || !out->recall || !out->f1 || !predicted) {
        free(predicted);
        qh_metrics_free(out);
        return qh_fail(QH_ESYS, "metrics: out of memory for %d classes", num_classes);
    }
    for (size_t i = 0; i < n; i++) out->confusion[(size_t)truth[i] * k + (size_t)pred[i]]++;
    int64_t correct = 0;
    for (size_t t = 0; t < k; t++)
        for (size_t p = 0; p < k; p++) {
            int64_t c = out->confusion[t * k + p];
            out->support[t] += c;
            predicted[p] += c;
            if (t == p) correct += c;
        }
    double sp = 0, sr = 0, sf = 0;
    for (size_t c = 0; c < k; c++) {
        int64_t tp = out->confusion[c * k + c];
        double p = ratio(tp, predicted[c]), r = ratio(tp, out->support[c]);
        out->precision[c] = p;
        out->recall[c] = r;
        out->f1[c] = p + r > 0 ? 2 * p * r / (p + r) : 0.0;
        sp += p, sr += r, sf += out->f1[c];
    }
    free(predicted);
    out->accuracy = ratio(correct, (int64_t)n);
    out->macro_precision = sp / (double)k;
    out->macro_recall = sr / (double)k;
    out->macro_f1 = sf / (double)k;
    return QH_OK;
}

double qh_softmax_xent(const float *logits, int k, int label)
{
    if (k < 1 || label < 0 || label >= k) return NAN;
    double mx = -INFINITY;
    for (int i = 0; i < k; i++) {
        if (isnan(logits[i])) return NAN;
        if ((double)logits[i] > mx) mx = logits[i];
    }
    if (isinf(mx)) {
        /* -inf: every logit is -inf; +inf: the shift would give inf - inf */
        if (mx == INFINITY && (double)logits[label] != INFINITY) return INFINITY;
        return NAN;
    }
    double sum = 0;
    for (int i = 0; i < k; i++) sum += exp((double)logits[i] - mx);
    return mx + log(sum) - (double)logits[label];
}

int qh_argmax(const float *v, int k)
{
    if (k < 1) return -1;
    int best = -1;
    for (int i = 0; i < k; i++)
        if (!isnan(v[i]) && (best < 0 || v[i] > v[best])) best = i;
    return best < 0 ? 0 : best;
}
