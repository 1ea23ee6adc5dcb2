/* The CUDA backend's quantized-weight layouts and fused-kernel launch plans
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
    if (q_bytes) {
        assert_true(l->off_qabsmax % 256 == 0 && l->off_qabsmax >= end);
        end = l->off_qabsmax + q_bytes;
        assert_true(l->off_nested % 256 == 0 && l->off_nested >= end);
        end = l->off_nested + nested_bytes;
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
        check_parts(&l, (size_t)shapes[i][0] * 4, 0, 0);
    }
    /* 7B: the int8 matrices of one layer are 4 x 16 MiB + 3 x 43 MiB plus their scales */
    qh_tensor w = i8_weight(11008, 4096);
    qh_quant_dev_layout l;
    qh_quant_dev_layout_of(&w, &l);
    assert_int_equal(l.total, (size_t)11008 * 4096 + 11008 * 4 + 0); /* both parts already 256-aligned */
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

static void test_fused_plan(void **state)
{
    (void)state;
    static const int64_t ns[] = {1, 7, 64, 127, 128, 129, 517, 4096, 11008};
    static const int64_t ks[] = {64, 128, 1024, 4096, 10240, 11008, 64000};
    static const int sms[] = {1, 8, 132};
    int checked = 0;
    for (int t = 1; t <= QH_NF4_FUSED_MAX_TOKENS; t++)
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
            for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++)
                for (size_t c = 0; c < sizeof sms / sizeof sms[0]; c++) {
                    int64_t n = ns[a], k = ks[b];
                    qh_nf4_fused_plan p;
                    assert_int_equal(qh_nf4_fused_plan_of(t, n, k, 64, sms[c], &p), 1);
                    assert_int_equal(p.token_tiles, (t + 7) / 8);
                    assert_true(p.kr >= QH_NF4_FUSED_KSTEP && p.kr % QH_NF4_FUSED_KSTEP == 0);
                    assert_true(p.splits >= 1 && (int64_t)(p.splits - 1) * p.kr < k && (int64_t)p.splits * p.kr >= k);
                    assert_int_equal(p.row_groups, (n + QH_NF4_FUSED_ROWS - 1) / QH_NF4_FUSED_ROWS);
                    size_t xs = (size_t)p.token_tiles * 8 * (size_t)(p.kr + QH_NF4_FUSED_XPAD) * 2;
                    assert_true(xs <= QH_NF4_FUSED_SMEM);
                    assert_true(p.kr / QH_NF4_FUSED_KSTEP <= QH_NF4_FUSED_MAX_STEPS);
                    assert_int_equal(p.smem, QH_NF4_FUSED_LUT_BYTES + QH_NF4_FUSED_ROWS * QH_NF4_FUSED_AMAX_LD * 4 + xs);
                    assert_int_equal(p.bs_shift, 0);
                    /* enough blocks for the machine where the columns allow: at least half the aim */
                    int64_t steps = k / QH_NF4_FUSED_KSTEP, want = (2 * sms[c] + p.row_groups - 1) / p.row_groups;
                    assert_true(2 * (int64_t)p.splits >= (steps < want ? steps : want));
                    checked++;
                }
    printf("# %d plans checked\n", checked);
    /* the 7B shapes at 30 tokens on an H100 */
    qh_nf4_fused_plan p;
    assert_int_equal(qh_nf4_fused_plan_of(30, 4096, 4096, 64, 132, &p), 1);
    assert_int_equal(p.token_tiles, 4);
    assert_int_equal(p.splits, 8);
    assert_int_equal(p.kr, 512);
    assert_int_equal(qh_nf4_fused_plan_of(1, 4096, 11008, 64, 132, &p), 1);
    assert_int_equal(p.token_tiles, 1);
    assert_int_equal(p.splits, 11); /* at most 16 steps of 64 columns per block: 172 steps in 11 */
    assert_int_equal(p.kr, 1024);
    assert_int_equal(qh_nf4_fused_plan_of(30, 11008, 4096, 64, 132, &p), 1);
    assert_int_equal(p.splits, 6); /* shared memory bounds kr at 704: 64 steps of 64 in 6 splits of 11 */
    assert_int_equal(p.kr, 704);
    /* not for it: too many tokens, columns or blocks not multiples of 64 */
    assert_int_equal(qh_nf4_fused_plan_of(0, 64, 64, 64, 132, &p), 0);
    assert_int_equal(qh_nf4_fused_plan_of(33, 64, 64, 64, 132, &p), 0);
    assert_int_equal(qh_nf4_fused_plan_of(8, 64, 96, 64, 132, &p), 0);
    assert_int_equal(qh_nf4_fused_plan_of(8, 64, 128, 32, 132, &p), 0);
    assert_int_equal(qh_nf4_fused_plan_of(8, 64, 32, 64, 132, &p), 0);
    assert_int_equal(qh_nf4_fused_plan_of(8, 0, 64, 64, 132, &p), 0);
    assert_int_equal(qh_nf4_fused_plan_of(8, 64, 384, 192, 132, &p), 0); /* blocksize not 64 x 2^j */
    assert_int_equal(qh_nf4_fused_plan_of(8, 64, 256, 128, 132, &p), 1);
    assert_int_equal(p.bs_shift, 1);
    assert_int_equal(qh_nf4_fused_plan_of(8, 64, 1024, 256, 132, &p), 1);
    assert_int_equal(p.bs_shift, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int8_layout),
        cmocka_unit_test(test_nf4_layout),
        cmocka_unit_test(test_fused_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
