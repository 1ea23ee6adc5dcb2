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
        l->total = l->off_scale + up256((size_t)rows * sizeof(float));
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
    } else {
        l->off_scale = at;
        at += up256((size_t)l->n_blocks * sizeof(float));
    }
    l->total = at;
    return 0;
}

int qh_nf4_fused_plan_of(int64_t t, int64_t n, int64_t k, int blocksize, int n_sm, qh_nf4_fused_plan *p)
{
    memset(p, 0, sizeof *p);
    if (t < 1 || t > QH_NF4_FUSED_MAX_TOKENS || n < 1 || k < QH_NF4_FUSED_KSTEP || k % QH_NF4_FUSED_KSTEP ||
        blocksize <= 0 || blocksize % QH_NF4_FUSED_KSTEP || (blocksize & (blocksize - 1)) || k > ((int64_t)1 << 30) ||
        n > ((int64_t)1 << 31) / (k / QH_NF4_FUSED_KSTEP))
        return 0;
    int tiles = (int)((t + 7) / 8);
    int64_t steps = k / QH_NF4_FUSED_KSTEP;
    int64_t max_steps = ((int64_t)QH_NF4_FUSED_SMEM / (tiles * 8 * 2) - QH_NF4_FUSED_XPAD) / QH_NF4_FUSED_KSTEP;
    if (max_steps > QH_NF4_FUSED_MAX_STEPS) max_steps = QH_NF4_FUSED_MAX_STEPS;
    int64_t groups = (n + QH_NF4_FUSED_ROWS - 1) / QH_NF4_FUSED_ROWS;
    int64_t want = n_sm > 0 ? (2 * (int64_t)n_sm + groups - 1) / groups : 1;
    int64_t splits = (steps + max_steps - 1) / max_steps;
    if (splits < want) splits = want;
    if (splits > steps) splits = steps;
    if (splits > 65535) splits = 65535; /* gridDim.y */
    int64_t per = (steps + splits - 1) / splits;
    if (per > max_steps) return 0; /* only for k beyond what 65535 splits cover */
    splits = (steps + per - 1) / per;
    p->token_tiles = tiles;
    p->splits = (int)splits;
    p->kr = (int)(per * QH_NF4_FUSED_KSTEP);
    p->row_groups = groups;
    for (int b = blocksize / QH_NF4_FUSED_KSTEP; b > 1; b >>= 1) p->bs_shift++;
    p->smem = QH_NF4_FUSED_LUT_BYTES + (size_t)QH_NF4_FUSED_ROWS * QH_NF4_FUSED_AMAX_LD * 4 +
              (size_t)tiles * 8 * (size_t)(p->kr + QH_NF4_FUSED_XPAD) * 2;
    return 1;
}
