/* Classification metrics for the evaluation reports.
 *
 * Conventions follow scikit-learn's precision_recall_fscore_support / classification_report
 * called with labels=range(K) and zero_division=0:
 *   - a class that is never predicted has precision 0 (0/0 is taken as 0, no warning);
 *   - a class absent from the truth has recall 0 (0/0 again);
 *   - F1 is 2PR / (P + R), and 0 when P + R is 0;
 *   - every one of the K classes counts in the macro averages, including classes absent from
 *     the truth and classes never predicted (scikit-learn does this because labels=range(K)
 *     is given explicitly; without it sklearn would drop labels seen in neither array).
 * Macro-averaged recall is the official metric of TweetEval's sentiment task (the mean of
 * the per-class recalls over negative, neutral, positive); accuracy and macro-F1 are
 * reported beside it.
 *
 * With n = 0 every count is 0 and accuracy, all per-class scores and all averages are 0. */
#ifndef QHEAD_METRICS_H
#define QHEAD_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int num_classes; /* K */
    int64_t n;       /* number of examples */
    int64_t *confusion; /* [K * K], confusion[true * K + pred] */
    int64_t *support;   /* [K], examples whose true label is k */
    double *precision, *recall, *f1; /* [K] each */
    double accuracy, macro_precision, macro_recall, macro_f1;
} qh_metrics;

/* Fill *out from n pairs of (truth, prediction) labels in [0, num_classes). A label outside
 * that range, or num_classes < 1, is QH_EINPUT (naming the index); out of memory is QH_ESYS.
 * On failure *out holds no allocations. Free with qh_metrics_free. */
int qh_metrics_compute(const int32_t *truth, const int32_t *pred, size_t n, int num_classes,
                       qh_metrics *out);
/* Release the arrays; safe on a zeroed or already-freed struct. */
void qh_metrics_free(qh_metrics *m);

/* Cross-entropy of one example: -log softmax(logits)[label], computed in double as
 * logsumexp(logits) - logits[label] with the max subtracted first, so logits of +-1000 do
 * not overflow. Returns NaN when k < 1, label is outside [0, k), any logit is NaN, all are
 * -inf, or logits[label] is +inf; +inf when another logit is +inf and logits[label] is not. */
double qh_softmax_xent(const float *logits, int k, int label);
/* Index of the largest value; the first one on ties. NaN entries are never chosen unless all
 * are NaN (then 0). Returns -1 when k < 1. */
int qh_argmax(const float *v, int k);

#endif
