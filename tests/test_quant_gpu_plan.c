/* The CUDA backend's quantized-weight layouts and small-batch kernel launch plans
 * (core/quant_gpu_plan.c): pure host arithmetic, checked without a GPU. */
#include "testutil.h"

#include "quant.h"
#include "quant_gpu_plan.h"

#include <stdio.h>

static float dummy_scale[1];
static int8_t dummy_q[1];

static qh_tensor i8_weight(int64_t rows, int64_t cols)
{
    qh_tensor t = qh_tensor_2d(QH_I8, rows, cols);
    t.quant.scale = dummy_scale;
    return t;
}

static qh_tensor nf4_weight(int64_t rows, int64_t cols, int bs, int dq)
{
    qh_tensor t = qh_tensor_2d(QH_NF4, rows, cols);
    t.quant.blocksize = bs;
    if (dq) t.quant.qabsmax = dummy_q, t.quant.nested_absmax = dummy_scale;
    else t.quant.scale = dummy_scale;
    return t;
}

/* Parts in order, 256-byte aligned, each large enough, total covering the last. */
static void check_parts(const qh_quant_dev_layout *l, size_t scale_bytes, size_t q_bytes, size_t nested_bytes)
{
    size_t end = l->codes_bytes;
    if (scale_bytes) {
        assert_true(l->off_scale % 256 == 0 && l->off_scale >= end);
        end = l->off_scale + scale_bytes;
    }
    if (l->off_scale127) { /* int8: SCB / 127 after SCB, as many */
        assert_true(l->off_scale127 % 256 == 0 && l->off_scale127 >= end);
        end = l->off_scale127 + scale_bytes;
    }
    if (q_bytes) {
        assert_true(l->off_qabsmax % 256 == 0 && l->off_qabsmax >= end);
        end = l->off_qabsmax + q_bytes;
        assert_true(l->off_nested % 256 == 0 && l->off_nested >= end);
        end = l->off_nested + nested_bytes;
        assert_true(l->off_nested127 % 256 == 0 && l->off_nested127 >= end); /* nested / 127, as many */
        end = l->off_nested127 + nested_bytes;
    }
    assert_true(l->total >= end && l->total % 256 == 0 && l->total - end < 256);
}

static void test_int8_layout(void **state)
{
    (void)state;
    static const int64_t shapes[][4] = {/* rows, cols, rows_pad, cols_pad */
                                        {4096, 4096, 4096, 4096}, {11008, 4096, 11008, 4096}, {4096, 11008, 4096, 11008},
                                        {517, 100, 520, 112},     {1, 1, 4, 16},              {33, 160, 36, 160}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        qh_tensor w = i8_weight(shapes[i][0], shapes[i][1]);
        qh_quant_dev_layout l;
        assert_int_equal(qh_quant_dev_layout_of(&w, &l), 0);
        assert_int_equal(l.rows_pad, shapes[i][2]);
        assert_int_equal(l.cols_pad, shapes[i][3]);
        assert_int_equal(l.codes_bytes, (size_t)(shapes[i][2] * shapes[i][3]));
        assert_int_equal(l.off_qabsmax, 0);
        assert_true(l.off_scale127 > 0);
        check_parts(&l, (size_t)shapes[i][0] * 4, 0, 0);
    }
    /* 7B: the int8 matrices of one layer are 4 x 16 MiB + 3 x 43 MiB plus their scales */
    qh_tensor w = i8_weight(11008, 4096);
    qh_quant_dev_layout l;
    qh_quant_dev_layout_of(&w, &l);
    assert_int_equal(l.total, (size_t)11008 * 4096 + 2 * 11008 * 4); /* every part already 256-aligned */
}

static void test_nf4_layout(void **state)
{
    (void)state;
    static const int64_t shapes[][3] = {/* rows, cols, blocksize */
                                        {11008, 4096, 64}, {4096, 11008, 128}, {517, 100, 64}, {3, 10, 4}, {1, 2, 2},
                                        {300, 4096, 256}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int dq = 0; dq < 2; dq++) {
            int64_t rows = shapes[i][0], cols = shapes[i][1], bs = shapes[i][2];
            qh_tensor w = nf4_weight(rows, cols, (int)bs, dq);
            qh_quant_dev_layout l;
            assert_int_equal(qh_quant_dev_layout_of(&w, &l), 0);
            int64_t nb = (rows * cols + bs - 1) / bs;
            assert_int_equal(l.n_blocks, nb);
            assert_int_equal(l.codes_bytes, (size_t)(rows * cols / 2));
            if (dq) {
                assert_int_equal(l.n_nested, (nb + QH_NF4_NESTED_BLOCK - 1) / QH_NF4_NESTED_BLOCK);
                assert_int_equal(l.off_scale, 0);
                check_parts(&l, 0, (size_t)nb, (size_t)l.n_nested * 4);
            } else {
                assert_int_equal(l.off_qabsmax, 0);
                assert_int_equal(l.off_nested, 0);
                assert_int_equal(l.off_nested127, 0);
                check_parts(&l, (size_t)nb * 4, 0, 0);
            }
        }
    /* refused: odd rows of codes, no blocksize, not quantized, int8 without scales */
    qh_quant_dev_layout l;
    qh_tensor w = nf4_weight(4, 7, 64, 0);
    assert_int_equal(qh_quant_dev_layout_of(&w, &l), -1);
    w = nf4_weight(4, 8, 0, 0);
    assert_int_equal(qh_quant_dev_layout_of(&w, &l), -1);
    w = qh_tensor_2d(QH_F16, 4, 8);
    assert_int_equal(qh_quant_dev_layout_of(&w, &l), -1);
    w = qh_tensor_2d(QH_I8, 4, 8);
    assert_int_equal(qh_quant_dev_layout_of(&w, &l), -1);
}

static void test_small_plan(void **state)
{
    (void)state;
    static const int64_t ns[] = {1, 7, 64, 127, 128, 129, 517, 4096, 11008};
    static const int64_t ks[] = {64, 128, 1024, 4096, 10240, 11008, 16384};
    static const int sms[] = {1, 8, 132};
    int checked = 0;
    for (int t = 1; t <= QH_NF4_SMALL_MAX_TOKENS; t++)
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
            for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++)
                for (size_t c = 0; c < sizeof sms / sizeof sms[0]; c++)
                    for (int form = 0; form < 3; form++) { /* one weight, q/k/v (n, n/2, n/2), a pair */
                        int64_t k = ks[b], n[3] = {ns[a], (ns[a] + 1) / 2, (ns[a] + 1) / 2};
                        int nw = form == 1 ? 3 : form == 2 ? 2 : 1, paired = form == 2;
                        if (paired) n[1] = n[0];
                        qh_nf4_small_plan p;
                        assert_int_equal(qh_nf4_small_plan_of(t, n, nw, paired, k, 64, sms[c], 0, 0, &p), 1);
                        assert_int_equal(p.token_tiles, (t + 7) / 8);
                        assert_int_equal(p.rows, 128);
                        assert_true(p.kr >= QH_NF4_SMALL_KSTEP && p.kr % QH_NF4_SMALL_KSTEP == 0);
                        assert_true(p.kr / QH_NF4_SMALL_KSTEP <= QH_NF4_SMALL_MAX_STEPS);
                        assert_true(p.splits >= 1 && p.splits <= QH_NF4_SMALL_MAX_SPLITS);
                        assert_true((int64_t)(p.splits - 1) * p.kr < k && (int64_t)p.splits * p.kr >= k);
                        int64_t tiles = 0, per = paired ? p.rows / 2 : p.rows;
                        for (int i = 0; i < (paired ? 1 : nw); i++) tiles += (n[i] + per - 1) / per;
                        assert_int_equal(p.tiles, tiles);
                        /* splits: at most about 1.5 blocks per multiprocessor where the columns
                         * allow, never fewer than 32 steps a block need */
                        int64_t steps = k / 64, fill = 3 * (int64_t)sms[c] / (2 * tiles);
                        if (fill < 1) fill = 1;
                        if (fill > 8) fill = 8;
                        if (fill < (steps + 31) / 32) fill = (steps + 31) / 32;
                        if (fill > steps) fill = steps;
                        assert_true(p.splits <= fill);
                        assert_true(2 * p.splits > fill);
                        size_t x = 2 * (size_t)p.token_tiles * 8 * (size_t)qh_nf4_small_xld(p.token_tiles) * 2;
                        assert_int_equal(p.smem,
                                         QH_NF4_SMALL_LUT_BYTES + 1024 + x + (size_t)p.rows * QH_NF4_SMALL_AMAX_LD * 4);
                        /* two blocks per multiprocessor (228 KiB, 1 KiB reserved per block), and the
                         * partial sums [tokens][rows + 4] fp32 fit over the table and x buffers */
                        assert_true(2 * (p.smem + 1024 + 128) <= 228 * 1024);
                        assert_true((size_t)p.token_tiles * 8 * (size_t)(p.rows + 4) * 4 <= QH_NF4_SMALL_LUT_BYTES + x);
                        assert_int_equal(p.bs_shift, 0);
                        checked++;
                    }
    printf("# %d plans checked\n", checked);
    /* the 7B shapes at 30 tokens on an H100 (132 multiprocessors) */
    qh_nf4_small_plan p;
    const int64_t qkv[3] = {4096, 4096, 4096}, gu[2] = {11008, 11008}, h[1] = {4096};
    assert_int_equal(qh_nf4_small_plan_of(30, qkv, 3, 0, 4096, 64, 132, 0, 0, &p), 1);
    assert_int_equal(p.rows, 128), assert_int_equal(p.splits, 2), assert_int_equal(p.kr, 2048);
    assert_int_equal(p.tiles, 96);
    assert_int_equal(qh_nf4_small_plan_of(30, gu, 2, 1, 4096, 64, 132, 0, 0, &p), 1);
    assert_int_equal(p.rows, 128), assert_int_equal(p.splits, 2), assert_int_equal(p.tiles, 172);
    assert_int_equal(qh_nf4_small_plan_of(30, h, 1, 0, 4096, 64, 132, 0, 0, &p), 1); /* o_proj */
    assert_int_equal(p.splits, 6), assert_int_equal(p.kr, 11 * 64), assert_int_equal(p.tiles, 32);
    assert_int_equal(qh_nf4_small_plan_of(30, h, 1, 0, 11008, 64, 132, 0, 0, &p), 1); /* down_proj */
    assert_int_equal(p.splits, 6); /* 172 steps of 64 columns in 6 blocks of at most 29 */
    assert_int_equal(p.kr, 29 * 64);
    /* a forced plan is taken, or refused where it cannot be */
    assert_int_equal(qh_nf4_small_plan_of(30, h, 1, 0, 4096, 64, 132, 256, 3, &p), 1);
    assert_int_equal(p.rows, 256);
    assert_int_equal(p.splits, 3);
    assert_int_equal(p.kr, 22 * 64);
    assert_int_equal(p.tiles, 16);
    assert_int_equal(qh_nf4_small_plan_of(30, h, 1, 0, 4096, 64, 132, 256, 1, &p), 0); /* 64 steps in one block */
    assert_int_equal(qh_nf4_small_plan_of(33, h, 1, 0, 4096, 64, 132, 256, 0, &p), 0); /* 256 rows: up to 32 tokens */
    assert_int_equal(qh_nf4_small_plan_of(64, h, 1, 0, 4096, 64, 132, 0, 0, &p), 1);
    assert_int_equal(p.token_tiles, 8), assert_int_equal(p.rows, 128);
    assert_int_equal(qh_nf4_small_plan_of(65, h, 1, 0, 4096, 64, 132, 0, 0, &p), 0); /* beyond the kernel */
    /* the staged x rows: 16 bytes past a multiple of 128 (bank-conflict free fragments), chunk
     * steps dividing the 4 or 8 steps of codes in flight */
    for (int tt = 1; tt <= 8; tt++) {
        assert_int_equal(qh_nf4_small_xld(tt) * 2 % 128, 16);
        assert_int_equal((tt <= 4 ? 8 : 4) % qh_nf4_small_chunk(tt), 0);
    }
    assert_int_equal(qh_nf4_small_plan_of(30, h, 1, 0, 4096, 64, 132, 64, 0, &p), 0);
    assert_int_equal(qh_nf4_small_plan_of(30, h, 1, 0, 4096, 64, 132, 0, 9, &p), 0);
    /* fewer splits than asked when the steps run out: 3 steps in splits of 1 */
    assert_int_equal(qh_nf4_small_plan_of(8, h, 1, 0, 192, 64, 132, 0, 4, &p), 1);
    assert_int_equal(p.splits, 3);
    assert_int_equal(p.kr, 64);
    /* not for it: too many tokens, columns or blocks not multiples of 64, more columns than 8
     * blocks of 32 steps, unequal pairs, more than three weights */
    const int64_t n64[3] = {64, 64, 64}, odd[2] = {64, 65}, zero[1] = {0};
    assert_int_equal(qh_nf4_small_plan_of(0, n64, 1, 0, 64, 64, 132, 0, 0, &p), 0);
    assert_int_equal(qh_nf4_small_plan_of(65, n64, 1, 0, 64, 64, 132, 0, 0, &p), 0);
    assert_int_equal(qh_nf4_small_plan_of(8, n64, 1, 0, 96, 64, 132, 0, 0, &p), 0);
    assert_int_equal(qh_nf4_small_plan_of(8, n64, 1, 0, 128, 32, 132, 0, 0, &p), 0);
    assert_int_equal(qh_nf4_small_plan_of(8, n64, 1, 0, 32, 64, 132, 0, 0, &p), 0);
    assert_int_equal(qh_nf4_small_plan_of(8, zero, 1, 0, 64, 64, 132, 0, 0, &p), 0);
    assert_int_equal(qh_nf4_small_plan_of(8, n64, 1, 0, 384, 192, 132, 0, 0, &p), 0); /* blocksize not 64 x 2^j */
    assert_int_equal(qh_nf4_small_plan_of(8, n64, 1, 0, 16384 + 64, 64, 132, 0, 0, &p), 0);
    assert_int_equal(qh_nf4_small_plan_of(8, odd, 2, 1, 64, 64, 132, 0, 0, &p), 0);
    assert_int_equal(qh_nf4_small_plan_of(8, n64, 3, 1, 64, 64, 132, 0, 0, &p), 0);
    assert_int_equal(qh_nf4_small_plan_of(8, n64, 4, 0, 64, 64, 132, 0, 0, &p), 0);
    assert_int_equal(qh_nf4_small_plan_of(8, n64, 1, 0, 256, 128, 132, 0, 0, &p), 1);
    assert_int_equal(p.bs_shift, 1);
    assert_int_equal(qh_nf4_small_plan_of(8, n64, 1, 0, 1024, 256, 132, 0, 0, &p), 1);
    assert_int_equal(p.bs_shift, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int8_layout),
        cmocka_unit_test(test_nf4_layout),
        cmocka_unit_test(test_small_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
