/* Head training at the real scale: 45,615 x 4096 train features (TweetEval sentiment, LLaMA-2-7B
 * hidden size), 2,000 val, 3 classes, 3 epochs at the defaults. Features are synthetic class
 * clouds of LLaMA-like magnitude; the timing does not depend on their values.
 *   usage: bench_train_head [n_train] [dim] [epochs] */
#include "head_train.h"

#include "clock.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float rng_gauss(uint64_t *s)
{
    double u1 = ((rng_next(s) >> 11) + 0.5) / 9007199254740992.0, u2 = ((rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

static void make(float *x, int32_t *y, int64_t n, int dim, const float *centres, uint64_t seed)
{
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        y[i] = (int32_t)(rng_next(&s) % 3);
        for (int j = 0; j < dim; j++) x[i * dim + j] = centres[y[i] * dim + j] + 1.5f * rng_gauss(&s);
    }
}

int main(int argc, char **argv)
{
    int64_t n_train = argc > 1 ? atoll(argv[1]) : 45615, n_val = 2000;
    int dim = argc > 2 ? atoi(argv[2]) : 4096;
    qh_train_opts o;
    qh_train_opts_default(&o);
    o.epochs = argc > 3 ? atoi(argv[3]) : 3;
    float *centres = malloc(sizeof(float) * 3 * (size_t)dim);
    float *xt = malloc(sizeof(float) * (size_t)(n_train * dim)), *xv = malloc(sizeof(float) * (size_t)(n_val * dim));
    int32_t *yt = malloc(sizeof(int32_t) * (size_t)n_train), *yv = malloc(sizeof(int32_t) * (size_t)n_val);
    if (!centres || !xt || !xv || !yt || !yv) return fprintf(stderr, "out of memory\n"), 1;
    uint64_t s = 1;
    for (int i = 0; i < 3 * dim; i++) centres[i] = 0.05f * rng_gauss(&s);
    make(xt, yt, n_train, dim, centres, 2);
    make(xv, yv, n_val, dim, centres, 3);
    qh_dataset_view tr = {xt, yt, n_train, dim}, va = {xv, yv, n_val, dim};
    qh_head *h;
    qh_train_log log;
    double t0 = qh_now_s();
    if (qh_train_head(&tr, &va, 3, &o, NULL, NULL, &h, &log)) return fprintf(stderr, "training failed\n"), 1;
    double t = qh_now_s() - t0;
    const qh_train_row *b = &log.rows[log.best_row];
    /* forward + backward: 2 products of [batch, dim] x [dim, 3] per step, plus val passes */
    double flop = 2.0 * 2.0 * 3.0 * dim * (double)n_train * o.epochs + 2.0 * 3.0 * dim * (double)n_val * (double)log.n;
    printf("train %lld x %d, val %lld, %d epochs, batch %d: %.2f s (%.2f GFLOP/s), best val loss %.4f acc %.4f\n",
           (long long)n_train, dim, (long long)n_val, o.epochs, o.batch_size, t, flop / t * 1e-9, b->val_loss,
           b->val_accuracy);
    qh_head_free(h);
    qh_train_log_free(&log);
    free(centres), free(xt), free(xv), free(yt), free(yv);
    return 0;
}
