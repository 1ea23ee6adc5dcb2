/* Device layouts and launch plans of the CUDA backend's quantized kernels; see quant_gpu_plan.h. */
#include "quant_gpu_plan.h"

#include "quant.h"

#include <string.h>

static size_t up256(size_t n) { return (n + 255) & ~(size_t)255; }

int qh_quant_dev_layout_of(const qh_tensor *w, qh_quant_dev_layout *l)
{
    memset(l, 0, sizeof *l);
    if (!qh_tensor_is_quantized(w) || w->ndim != 2 || w->shape[0] < 0 || w->shape[1] < 0) return -1;
    int64_t rows = w->shape[0], cols = w->shape[1];
    if (w->dtype == QH_I8) {
        l->rows_pad = (rows + 3) / 4 * 4;
        l->cols_pad = (cols + 15) / 16 * 16;
        l->codes_bytes = (size_t)(l->rows_pad * l->cols_pad);
        l->off_scale = up256(l->codes_bytes);
        l->off_scale127 = l->off_scale + up256((size_t)rows * sizeof(float));
        l->total = l->off_scale127 + up256((size_t)rows * sizeof(float));
        return 0;
    }
    if (cols % 2 || w->quant.blocksize < 2) return -1;
    l->rows_pad = rows, l->cols_pad = cols;
    l->n_blocks = (rows * cols + w->quant.blocksize - 1) / w->quant.blocksize;
    l->codes_bytes = (size_t)(rows * cols / 2);
    size_t at = up256(l->codes_bytes);
    if (w->quant.qabsmax) {
        l->n_nested = (l->n_blocks + QH_NF4_NESTED_BLOCK - 1) / QH_NF4_NESTED_BLOCK;
        l->off_qabsmax = at;
        at += up256((size_t)l->n_blocks);
        l->off_nested = at;
        at += up256((size_t)l->n_nested * sizeof(float));
        l->off_nested127 = at;
        at += up256((size_t)l->n_nested * sizeof(float));
    } else {
        l->off_scale = at;
        at += up256((size_t)l->n_blocks * sizeof(float));
    }
    l->total = at;
    return 0;
}

static size_t nf4_small_smem(int token_tiles, int rows)
{
    size_t x = 2 * (size_t)token_tiles * 8 * (size_t)qh_nf4_small_xld(token_tiles) * 2;
    /* 1024 spare bytes: the warpgroup products' x tiles start 1024-byte aligned */
    size_t main = QH_NF4_SMALL_LUT_BYTES + 1024 + x + (size_t)rows * QH_NF4_SMALL_AMAX_LD * 4;
    /* after the main loop the table and x buffers hold the block's partial sums, fp32
     * [tokens][rows + 4]; they always fit there */
    return main;
}

int qh_nf4_small_plan_of(int64_t t, const int64_t *n, int nw, int paired, int64_t k, int blocksize, int n_sm, int rows,
                         int splits, qh_nf4_small_plan *p)
{
    memset(p, 0, sizeof *p);
    if (t < 1 || t > QH_NF4_SMALL_MAX_TOKENS || nw < 1 || nw > QH_NF4_SMALL_MAX_WEIGHTS || (paired && nw != 2) ||
        k < QH_NF4_SMALL_KSTEP || k % QH_NF4_SMALL_KSTEP || k > ((int64_t)1 << 30) || blocksize <= 0 ||
        blocksize % QH_NF4_SMALL_KSTEP || (blocksize & (blocksize - 1)))
        return 0;
    for (int i = 0; i < nw; i++)
        if (n[i] < 1 || n[i] > ((int64_t)1 << 31) / (k / QH_NF4_SMALL_KSTEP) || (paired && n[i] != n[0])) return 0;
    if ((rows && rows != 128 && rows != 256) || (splits && splits > QH_NF4_SMALL_MAX_SPLITS) ||
        (rows == 256 && t > 32)) /* beyond 32 tokens the accumulators leave no room for 32 rows a warp */
        return 0;

    /* Measured on an H100 at 30 tokens (bench/NOTES.md, sessions 5 and 11): 128 rows per block
     * beat 256 (fewer registers, no spills), and the best number of splits is the largest that
     * keeps the blocks within about 1.5 per multiprocessor (two fit on one): q/k/v 2 (192
     * blocks; 3-8: 31-39 us against 28), o_proj 6 (192; 5: 13.8 us, 6: 12.6, 8: 16.2), down_proj 6
     * (192), gate/up 2 (the fewest that keep a block within 32 steps; 3-8 slower). More splits
     * cost a larger reduction and larger clusters, fewer of which fit at once; fewer leave
     * multiprocessors idle. */
    const int64_t steps = k / QH_NF4_SMALL_KSTEP;
    const int best_rows = rows ? rows : 128;
    const int per_tile = paired ? best_rows / 2 : best_rows;
    int64_t best_tiles = 0;
    for (int i = 0; i < (paired ? 1 : nw); i++) best_tiles += (n[i] + per_tile - 1) / per_tile;
    if (best_tiles > 0x7fffffff) return 0;
    int64_t want = n_sm > 0 ? 3 * (int64_t)n_sm / (2 * best_tiles) : 1;
    if (want < 1) want = 1;
    if (want < (steps + QH_NF4_SMALL_MAX_STEPS - 1) / QH_NF4_SMALL_MAX_STEPS) /* the fewest that fit */
        want = (steps + QH_NF4_SMALL_MAX_STEPS - 1) / QH_NF4_SMALL_MAX_STEPS;
    if (want > QH_NF4_SMALL_MAX_SPLITS) want = QH_NF4_SMALL_MAX_SPLITS;
    const int64_t best_splits = splits ? splits : want;
    if ((steps + best_splits - 1) / best_splits > QH_NF4_SMALL_MAX_STEPS) return 0;
    int64_t per = (steps + best_splits - 1) / best_splits;
    p->token_tiles = (int)((t + 7) / 8);
    p->rows = best_rows;
    p->splits = (int)((steps + per - 1) / per); /* fewer when the steps run out (a cluster of that size) */
    p->kr = (int)(per * QH_NF4_SMALL_KSTEP);
    p->tiles = best_tiles;
    for (int b = blocksize / QH_NF4_SMALL_KSTEP; b > 1; b >>= 1) p->bs_shift++;
    p->smem = nf4_small_smem(p->token_tiles, p->rows);
    return 1;
}
