/* Head training: gradients against finite differences, the AdamW step against its formula,
 * learning on separable features, bit-identical reruns, early stopping, class weights. */
#include "testutil.h"

#include "error.h"
#include "head_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *x;
    int32_t *y;
    qh_dataset_view v;
} data;

/* Classes are Gaussian clouds around random centres; `sep` scales the centres apart and
 * label_noise makes a fraction of labels random (so a model can overfit them). */
static void make_data(data *d, int64_t n, int dim, int K, double sep, double label_noise, uint64_t seed)
{
    uint64_t rng = 1234; /* same centres for every split */
    double centres[8][64];
    for (int k = 0; k < K; k++)
        for (int j = 0; j < dim; j++) centres[k][j] = sep * tu_rand_normal(&rng);
    rng = seed;
    d->x = malloc(sizeof(float) * (size_t)(n * dim));
    d->y = malloc(sizeof(int32_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        int k = (int)(i % K);
        for (int j = 0; j < dim; j++) d->x[i * dim + j] = (float)(centres[k][j] + tu_rand_normal(&rng));
        d->y[i] = tu_rand_uniform(&rng) < label_noise ? (int32_t)(tu_rand_u64(&rng) % (uint64_t)K) : k;
    }
    d->v = (qh_dataset_view){.x = d->x, .labels = d->y, .n = n, .dim = dim};
}

static void free_data(data *d)
{
    free(d->x);
    free(d->y);
}

static double loss_at(qh_head *h, const data *d, const double *cw, float *gw)
{
    return qh_head_loss_grad(h, &d->v, NULL, (int)d->v.n, cw, gw, NULL);
}

static void check_gradient(int with_bias, const double *cw)
{
    enum { K = 3, D = 5, N = 7 };
    data d;
    make_data(&d, N, D, K, 1.0, 0.0, 9);
    qh_head *h;
    assert_int_equal(qh_head_create(K, D, with_bias, &h), QH_OK);
    uint64_t rng = 3;
    for (int i = 0; i < K * D; i++) h->weight[i] = (float)(0.3 * tu_rand_normal(&rng));
    if (h->bias)
        for (int k = 0; k < K; k++) h->bias[k] = (float)(0.3 * tu_rand_normal(&rng));
    float gw[K * D], gb[K], scratch[K * D];
    qh_head_loss_grad(h, &d.v, NULL, N, cw, gw, with_bias ? gb : NULL);
    const double eps = 1e-2; /* float weights: a step this size keeps rounding far below it */
    for (int i = 0; i < K * D + (with_bias ? K : 0); i++) {
        float *p = i < K * D ? &h->weight[i] : &h->bias[i - K * D];
        float saved = *p;
        *p = (float)(saved + eps);
        double up = loss_at(h, &d, cw, scratch);
        *p = (float)(saved - eps);
        double down = loss_at(h, &d, cw, scratch);
        *p = saved;
        double numeric = (up - down) / (2 * eps), analytic = i < K * D ? gw[i] : gb[i - K * D];
        /* central differences err by O(eps^2 * third derivative): well under 1e-3 here */
        assert_true(fabs(numeric - analytic) < 1e-3 * (1 + fabs(numeric)));
    }
    qh_head_free(h);
    free_data(&d);
}

static void test_gradient_matches_finite_differences(void **state)
{
    (void)state;
    check_gradient(0, NULL);
    check_gradient(1, NULL);
    double cw[3] = {0.5, 2.0, 1.25};
    check_gradient(1, cw);
}

/* The class-weighted loss is sum w_y ce / sum w_y, as PyTorch's CrossEntropyLoss(weight=w). */
static void test_weighted_loss_formula(void **state)
{
    (void)state;
    data d;
    make_data(&d, 6, 4, 3, 1.0, 0.0, 2);
    qh_head *h;
    assert_int_equal(qh_head_create(3, 4, 0, &h), QH_OK);
    for (int i = 0; i < 12; i++) h->weight[i] = (float)(0.1 * (i - 6));
    double cw[3] = {1.0, 3.0, 0.5}, num = 0, den = 0;
    for (int i = 0; i < 6; i++) {
        double z[3], m = -1e300, s = 0;
        for (int k = 0; k < 3; k++) {
            z[k] = 0;
            for (int j = 0; j < 4; j++) z[k] += (double)h->weight[k * 4 + j] * d.x[i * 4 + j];
            m = fmax(m, z[k]);
        }
        for (int k = 0; k < 3; k++) s += exp(z[k] - m);
        num += cw[d.y[i]] * (log(s) + m - z[d.y[i]]);
        den += cw[d.y[i]];
    }
    float gw[12];
    assert_true(fabs(qh_head_loss_grad(h, &d.v, NULL, 6, cw, gw, NULL) - num / den) < 1e-12);
    double bal[3];
    int32_t labels[6] = {0, 0, 0, 0, 1, 2};
    qh_class_weights(labels, 6, 3, bal);
    assert_true(fabs(bal[0] - 0.5) < 1e-15 && fabs(bal[1] - 2.0) < 1e-15 && fabs(bal[2] - 2.0) < 1e-15);
    qh_head_free(h);
    free_data(&d);
}

/* One AdamW step from zero moments moves each weight by lr * g / (|g| + eps') after the
 * decoupled decay (bias correction makes m_hat = g, v_hat = g^2). A single-example train set,
 * one epoch, batch 1: exactly one step. */
static void test_first_adamw_step(void **state)
{
    (void)state;
    data tr, va;
    make_data(&tr, 1, 6, 2, 1.0, 0.0, 4);
    make_data(&va, 4, 6, 2, 1.0, 0.0, 5);
    qh_train_opts o;
    qh_train_opts_default(&o);
    o.epochs = 1;
    o.batch_size = 1;
    o.lr = 0.01;
    o.weight_decay = 0.1;
    /* the initial weights the trainer draws, recovered by training with lr so tiny nothing moves */
    qh_train_opts frozen = o;
    frozen.lr = 1e-30;
    qh_head *init, *h;
    qh_train_log log;
    assert_int_equal(qh_train_head(&tr.v, &va.v, 2, &frozen, NULL, NULL, &init, &log), QH_OK);
    qh_train_log_free(&log);
    float g[12];
    qh_head_loss_grad(init, &tr.v, NULL, 1, NULL, g, NULL);
    assert_int_equal(qh_train_head(&tr.v, &va.v, 2, &o, NULL, NULL, &h, &log), QH_OK);
    assert_int_equal(log.n, 1);
    for (int i = 0; i < 12; i++) {
        double p = init->weight[i] * (1 - o.lr * o.weight_decay);
        double want = p - o.lr * g[i] / (fabs((double)g[i]) + o.eps);
        assert_true(fabs(h->weight[i] - want) < 1e-6);
    }
    qh_train_log_free(&log);
    qh_head_free(init);
    qh_head_free(h);
    free_data(&tr);
    free_data(&va);
}

static void test_learns_separable_classes(void **state)
{
    (void)state;
    data tr, va;
    make_data(&tr, 600, 32, 4, 1.0, 0.0, 11);
    make_data(&va, 200, 32, 4, 1.0, 0.0, 12);
    qh_train_opts o;
    qh_train_opts_default(&o);
    o.epochs = 5;
    o.lr = 1e-2;
    o.bias = 1;
    o.log_every = 5;
    qh_head *h;
    qh_train_log log;
    assert_int_equal(qh_train_head(&tr.v, &va.v, 4, &o, NULL, NULL, &h, &log), QH_OK);
    assert_true(log.n > 5);
    assert_true(log.rows[log.n - 1].train_loss < 0.3 * log.rows[0].train_loss);
    assert_true(log.rows[log.best_row].val_loss < 0.2);
    assert_true(log.rows[log.best_row].val_accuracy > 0.97);
    assert_true(log.rows[log.best_row].val_macro_f1 > 0.97);
    int ends = 0;
    for (size_t i = 0; i < log.n; i++) ends += log.rows[i].epoch_end;
    assert_int_equal(ends, 5);
    /* the returned head is the best-val-loss one */
    double l, a, f;
    assert_int_equal(qh_head_evaluate(h, &va.v, NULL, &l, &a, &f), QH_OK);
    assert_true(fabs(l - log.rows[log.best_row].val_loss) < 1e-12);
    qh_train_log_free(&log);
    qh_head_free(h);
    free_data(&tr);
    free_data(&va);
}

static void test_same_seed_is_bit_identical(void **state)
{
    (void)state;
    data tr, va;
    make_data(&tr, 300, 16, 3, 0.5, 0.1, 21);
    make_data(&va, 100, 16, 3, 0.5, 0.1, 22);
    qh_train_opts o;
    qh_train_opts_default(&o);
    o.batch_size = 7;
    qh_head *a, *b, *c;
    qh_train_log la, lb, lc;
    assert_int_equal(qh_train_head(&tr.v, &va.v, 3, &o, NULL, NULL, &a, &la), QH_OK);
    assert_int_equal(qh_train_head(&tr.v, &va.v, 3, &o, NULL, NULL, &b, &lb), QH_OK);
    o.seed = 43;
    assert_int_equal(qh_train_head(&tr.v, &va.v, 3, &o, NULL, NULL, &c, &lc), QH_OK);
    assert_memory_equal(a->weight, b->weight, sizeof(float) * 48);
    assert_int_equal(la.n, lb.n);
    assert_memory_equal(la.rows, lb.rows, sizeof(qh_train_row) * la.n);
    assert_memory_not_equal(a->weight, c->weight, sizeof(float) * 48);
    qh_train_log_free(&la);
    qh_train_log_free(&lb);
    qh_train_log_free(&lc);
    qh_head_free(a);
    qh_head_free(b);
    qh_head_free(c);
    free_data(&tr);
    free_data(&va);
}

/* Few examples, many dimensions, noisy labels and a large rate: the head memorises the train
 * set, val loss turns up, and patience stops the run; the kept head is the val minimum. */
static void test_overfitting_stops_early(void **state)
{
    (void)state;
    data tr, va;
    make_data(&tr, 40, 64, 2, 0.15, 0.4, 31);
    make_data(&va, 400, 64, 2, 0.15, 0.4, 32);
    qh_train_opts o;
    qh_train_opts_default(&o);
    o.epochs = 200;
    o.lr = 0.05;
    o.batch_size = 8;
    o.patience = 3;
    qh_head *h;
    qh_train_log log;
    assert_int_equal(qh_train_head(&tr.v, &va.v, 2, &o, NULL, NULL, &h, &log), QH_OK);
    assert_true(log.stopped_early);
    assert_true(log.n < 200);
    assert_int_equal(log.best_row, log.n - 1 - 3);
    for (size_t i = 0; i < log.n; i++) assert_true(log.rows[i].val_loss >= log.rows[log.best_row].val_loss);
    assert_true(log.rows[log.n - 1].train_loss < log.rows[0].train_loss);
    qh_train_log_free(&log);
    qh_head_free(h);
    free_data(&tr);
    free_data(&va);
}

static int stop_after_two(void *user, const qh_train_log *log, const qh_head *h)
{
    (void)h;
    *(int *)user += 1;
    return log->n >= 2;
}

static void test_bad_inputs_and_callback(void **state)
{
    (void)state;
    data tr, va;
    make_data(&tr, 20, 4, 2, 1.0, 0.0, 41);
    make_data(&va, 10, 4, 2, 1.0, 0.0, 42);
    qh_train_opts o;
    qh_train_opts_default(&o);
    qh_head *h;
    qh_train_log log;
    tr.y[5] = 2; /* outside 0..1 */
    assert_int_equal(qh_train_head(&tr.v, &va.v, 2, &o, NULL, NULL, &h, &log), QH_EINPUT);
    assert_non_null(strstr(qh_last_error(), "train example 5 has label 2"));
    assert_null(h);
    tr.y[5] = 1;
    o.batch_size = 0;
    assert_int_equal(qh_train_head(&tr.v, &va.v, 2, &o, NULL, NULL, &h, &log), QH_EINPUT);
    o.batch_size = 4;
    tr.x[3] = NAN;
    assert_int_equal(qh_train_head(&tr.v, &va.v, 2, &o, NULL, NULL, &h, &log), QH_EINPUT);
    assert_non_null(strstr(qh_last_error(), "NaN"));
    tr.x[3] = 0;
    int calls = 0;
    o.log_every = 1;
    assert_int_equal(qh_train_head(&tr.v, &va.v, 2, &o, stop_after_two, &calls, &h, &log), QH_ESYS);
    assert_int_equal(calls, 2);
    assert_null(h);
    free_data(&tr);
    free_data(&va);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient_matches_finite_differences),
        cmocka_unit_test(test_weighted_loss_formula),
        cmocka_unit_test(test_first_adamw_step),
        cmocka_unit_test(test_learns_separable_classes),
        cmocka_unit_test(test_same_seed_is_bit_identical),
        cmocka_unit_test(test_overfitting_stops_early),
        cmocka_unit_test(test_bad_inputs_and_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
