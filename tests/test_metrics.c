/* Classification metrics against hand-computed values (scikit-learn's conventions with
 * labels=range(K), zero_division=0), and the cross-entropy / argmax helpers. */
#include "testutil.h"

#include "error.h"
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NEAR(a, b) assert_true(fabs((double)(a) - (double)(b)) <= 1e-12)

/* K = 4; class 2 is never predicted, class 3 never occurs in the truth.
 *   truth: 0 0 0 1 1 1 2 2
 *   pred:  0 0 1 1 1 3 0 1
 * confusion (rows = truth, columns = prediction):
 *   t0: 2 1 0 0   support 3
 *   t1: 0 2 0 1   support 3
 *   t2: 1 1 0 0   support 2
 *   t3: 0 0 0 0   support 0
 * column sums (times predicted): 3 4 0 1; diagonal (true positives): 2 2 0 0
 *   precision: 2/3, 2/4 = 1/2, 0 (never predicted, 0/0 -> 0), 0/1 = 0
 *   recall:    2/3, 2/3, 0/2 = 0, 0 (absent, 0/0 -> 0)
 *   f1: class 0: 2 (2/3)(2/3) / (4/3) = 2/3
 *       class 1: 2 (1/2)(2/3) / (1/2 + 2/3) = (2/3) / (7/6) = 4/7
 *       classes 2, 3: P + R = 0 -> 0
 *   accuracy = (2 + 2) / 8 = 1/2
 *   macro precision = (2/3 + 1/2 + 0 + 0) / 4 = (7/6) / 4 = 7/24
 *   macro recall    = (2/3 + 2/3 + 0 + 0) / 4 = (4/3) / 4 = 1/3
 *   macro f1        = (2/3 + 4/7 + 0 + 0) / 4 = (26/21) / 4 = 13/42
 * All four classes count in the averages, as sklearn does when given labels=range(4). */
static void test_missing_classes(void **state)
{
    (void)state;
    const int32_t truth[] = {0, 0, 0, 1, 1, 1, 2, 2};
    const int32_t pred[] = {0, 0, 1, 1, 1, 3, 0, 1};
    qh_metrics m;
    assert_int_equal(qh_metrics_compute(truth, pred, 8, 4, &m), QH_OK);
    assert_int_equal(m.num_classes, 4);
    assert_int_equal(m.n, 8);
    const int64_t conf[16] = {2, 1, 0, 0, 0, 2, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(m.confusion, conf, sizeof conf);
    const int64_t support[4] = {3, 3, 2, 0};
    assert_memory_equal(m.support, support, sizeof support);
    NEAR(m.precision[0], 2.0 / 3), NEAR(m.precision[1], 0.5), NEAR(m.precision[2], 0), NEAR(m.precision[3], 0);
    NEAR(m.recall[0], 2.0 / 3), NEAR(m.recall[1], 2.0 / 3), NEAR(m.recall[2], 0), NEAR(m.recall[3], 0);
    NEAR(m.f1[0], 2.0 / 3), NEAR(m.f1[1], 4.0 / 7), NEAR(m.f1[2], 0), NEAR(m.f1[3], 0);
    NEAR(m.accuracy, 0.5);
    NEAR(m.macro_precision, 7.0 / 24);
    NEAR(m.macro_recall, 1.0 / 3);
    NEAR(m.macro_f1, 13.0 / 42);
    qh_metrics_free(&m);
    qh_metrics_free(&m); /* twice is harmless */
}

/* TweetEval-like 3 classes (negative, neutral, positive), 10 tweets.
 *   truth: 0 0 1 1 1 1 2 2 2 2
 *   pred:  0 1 1 1 1 2 2 2 2 0
 * confusion: t0: 1 1 0 | t1: 0 3 1 | t2: 1 0 3      column sums 2 4 4
 *   precision: 1/2, 3/4, 3/4       recall: 1/2, 3/4, 3/4
 *   f1 = precision here (P = R for every class): 1/2, 3/4, 3/4
 *   accuracy 7/10; macro recall (TweetEval's metric) = (1/2 + 3/4 + 3/4) / 3 = 2/3 */
static void test_three_classes(void **state)
{
    (void)state;
    const int32_t truth[] = {0, 0, 1, 1, 1, 1, 2, 2, 2, 2};
    const int32_t pred[] = {0, 1, 1, 1, 1, 2, 2, 2, 2, 0};
    qh_metrics m;
    assert_int_equal(qh_metrics_compute(truth, pred, 10, 3, &m), QH_OK);
    const int64_t conf[9] = {1, 1, 0, 0, 3, 1, 1, 0, 3};
    assert_memory_equal(m.confusion, conf, sizeof conf);
    NEAR(m.precision[0], 0.5), NEAR(m.precision[1], 0.75), NEAR(m.precision[2], 0.75);
    NEAR(m.recall[0], 0.5), NEAR(m.recall[1], 0.75), NEAR(m.recall[2], 0.75);
    NEAR(m.f1[0], 0.5), NEAR(m.f1[1], 0.75), NEAR(m.f1[2], 0.75);
    NEAR(m.accuracy, 0.7);
    NEAR(m.macro_recall, 2.0 / 3);
    NEAR(m.macro_precision, 2.0 / 3);
    NEAR(m.macro_f1, 2.0 / 3);
    qh_metrics_free(&m);
}

/* truth = pred = 0 1 2 1: every precision, recall and F1 is 1; accuracy 1. */
static void test_perfect(void **state)
{
    (void)state;
    const int32_t y[] = {0, 1, 2, 1};
    qh_metrics m;
    assert_int_equal(qh_metrics_compute(y, y, 4, 3, &m), QH_OK);
    const int64_t conf[9] = {1, 0, 0, 0, 2, 0, 0, 0, 1};
    assert_memory_equal(m.confusion, conf, sizeof conf);
    for (int c = 0; c < 3; c++) NEAR(m.precision[c], 1), NEAR(m.recall[c], 1), NEAR(m.f1[c], 1);
    NEAR(m.accuracy, 1), NEAR(m.macro_precision, 1), NEAR(m.macro_recall, 1), NEAR(m.macro_f1, 1);
    qh_metrics_free(&m);
}

/* truth 0 1 2, pred 1 2 0: no true positive anywhere, so every score is 0.
 * confusion: t0 -> p1, t1 -> p2, t2 -> p0. */
static void test_all_wrong(void **state)
{
    (void)state;
    const int32_t truth[] = {0, 1, 2}, pred[] = {1, 2, 0};
    qh_metrics m;
    assert_int_equal(qh_metrics_compute(truth, pred, 3, 3, &m), QH_OK);
    const int64_t conf[9] = {0, 1, 0, 0, 0, 1, 1, 0, 0};
    assert_memory_equal(m.confusion, conf, sizeof conf);
    for (int c = 0; c < 3; c++) NEAR(m.precision[c], 0), NEAR(m.recall[c], 0), NEAR(m.f1[c], 0);
    NEAR(m.accuracy, 0), NEAR(m.macro_precision, 0), NEAR(m.macro_recall, 0), NEAR(m.macro_f1, 0);
    qh_metrics_free(&m);
}

/* n = 0: defined as accuracy 0 and all scores 0; NULL label arrays are fine. */
static void test_empty(void **state)
{
    (void)state;
    qh_metrics m;
    assert_int_equal(qh_metrics_compute(NULL, NULL, 0, 3, &m), QH_OK);
    assert_int_equal(m.n, 0);
    for (int i = 0; i < 9; i++) assert_int_equal(m.confusion[i], 0);
    for (int c = 0; c < 3; c++) {
        assert_int_equal(m.support[c], 0);
        NEAR(m.precision[c], 0), NEAR(m.recall[c], 0), NEAR(m.f1[c], 0);
    }
    NEAR(m.accuracy, 0), NEAR(m.macro_precision, 0), NEAR(m.macro_recall, 0), NEAR(m.macro_f1, 0);
    assert_false(isnan(m.accuracy) || isnan(m.macro_f1));
    qh_metrics_free(&m);
}

static void test_bad_labels(void **state)
{
    (void)state;
    qh_metrics m;
    const int32_t ok[] = {0, 1, 2}, high[] = {0, 3, 1}, neg[] = {0, 1, -1};
    assert_int_equal(qh_metrics_compute(high, ok, 3, 3, &m), QH_EINPUT);
    assert_non_null(strstr(qh_last_error(), "example 1"));
    assert_null(m.confusion);
    assert_int_equal(qh_metrics_compute(ok, neg, 3, 3, &m), QH_EINPUT);
    assert_non_null(strstr(qh_last_error(), "-1"));
    assert_int_equal(qh_metrics_compute(ok, ok, 3, 0, &m), QH_EINPUT);
    qh_metrics_free(&m);
}

/* Random labels: macro recall and the confusion matrix against a direct count. */
static void test_random_against_direct_count(void **state)
{
    (void)state;
    enum { N = 5000, K = 5 };
    static int32_t truth[N], pred[N];
    uint64_t rng = 42;
    for (int i = 0; i < N; i++) {
        truth[i] = (int32_t)(tu_rand_u64(&rng) % K);
        /* right 60% of the time, except that class 4 is never predicted */
        pred[i] = tu_rand_uniform(&rng) < 0.6 && truth[i] != K - 1 ? truth[i] : (int32_t)(tu_rand_u64(&rng) % (K - 1));
    }
    qh_metrics m;
    assert_int_equal(qh_metrics_compute(truth, pred, N, K, &m), QH_OK);
    double rsum = 0;
    int correct = 0;
    for (int c = 0; c < K; c++) {
        int tp = 0, sup = 0;
        for (int i = 0; i < N; i++) sup += truth[i] == c, tp += truth[i] == c && pred[i] == c;
        assert_int_equal(m.support[c], sup);
        NEAR(m.recall[c], sup ? (double)tp / sup : 0);
        rsum += sup ? (double)tp / sup : 0;
        correct += tp;
    }
    NEAR(m.precision[4], 0);
    NEAR(m.macro_recall, rsum / K);
    NEAR(m.accuracy, (double)correct / N);
    qh_metrics_free(&m);
}

/* Reference: -log softmax in float64 straight from the definition (fine for small logits). */
static double xent_direct(const double *z, int k, int label)
{
    double s = 0;
    for (int i = 0; i < k; i++) s += exp(z[i]);
    return -log(exp(z[label]) / s);
}

static void test_xent(void **state)
{
    (void)state;
    const float small[] = {1.0f, 2.0f, 3.0f, -0.5f};
    const double smalld[] = {1.0, 2.0, 3.0, -0.5};
    for (int l = 0; l < 4; l++) assert_true(fabs(qh_softmax_xent(small, 4, l) - xent_direct(smalld, 4, l)) < 1e-12);
    /* [1000, -1000]: exp(1000) overflows a double, so use the shifted float64 formula:
     * loss(label 0) = log(1 + exp(-2000)) = 0 (exp(-2000) underflows to 0);
     * loss(label 1) = 2000 + log(1 + exp(-2000)) = 2000 */
    const float big[] = {1000.0f, -1000.0f};
    double l0 = qh_softmax_xent(big, 2, 0), l1 = qh_softmax_xent(big, 2, 1);
    assert_true(isfinite(l0) && isfinite(l1));
    assert_true(fabs(l0 - log1p(exp(-2000.0))) < 1e-12);
    assert_true(fabs(l1 - (2000.0 + log1p(exp(-2000.0)))) < 1e-9);
    /* three equal huge logits: log 3 whichever the label; equal very negative ones: log 2 */
    const float eq[] = {1000.0f, 1000.0f, 1000.0f}, neg[] = {-1000.0f, -1000.0f};
    assert_true(fabs(qh_softmax_xent(eq, 3, 2) - log(3.0)) < 1e-12);
    assert_true(fabs(qh_softmax_xent(neg, 2, 0) - log(2.0)) < 1e-12);
    /* one class: loss 0 */
    assert_true(qh_softmax_xent(small, 1, 0) == 0.0);
    /* bad label or non-finite logits */
    assert_true(isnan(qh_softmax_xent(small, 4, 4)));
    assert_true(isnan(qh_softmax_xent(small, 4, -1)));
    assert_true(isnan(qh_softmax_xent(small, 0, 0)));
    const float withnan[] = {1.0f, NAN}, withinf[] = {INFINITY, 0.0f};
    assert_true(isnan(qh_softmax_xent(withnan, 2, 0)));
    assert_true(isinf(qh_softmax_xent(withinf, 2, 1)));
}

static void test_argmax(void **state)
{
    (void)state;
    const float a[] = {1, 3, 3, 2}, same[] = {5, 5, 5}, neg[] = {-INFINITY, -7, -5}, withnan[] = {NAN, 1, 2};
    assert_int_equal(qh_argmax(a, 4), 1); /* first of the tied maxima */
    assert_int_equal(qh_argmax(same, 3), 0);
    assert_int_equal(qh_argmax(neg, 3), 2);
    assert_int_equal(qh_argmax(withnan, 3), 2);
    assert_int_equal(qh_argmax(a, 1), 0);
    assert_int_equal(qh_argmax(a, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_classes), cmocka_unit_test(test_three_classes),
        cmocka_unit_test(test_perfect),         cmocka_unit_test(test_all_wrong),
        cmocka_unit_test(test_empty),           cmocka_unit_test(test_bad_labels),
        cmocka_unit_test(test_random_against_direct_count),
        cmocka_unit_test(test_xent),            cmocka_unit_test(test_argmax),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
