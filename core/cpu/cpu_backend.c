/* CPU backend: memory management and the ops table. Activations are fp32 in host memory;
 * weights stay where the checkpoint's memory map put them. */
#include "cpu_internal.h"

#include "../error.h"

#include <stdlib.h>
#include <string.h>

static int cpu_alloc(qh_backend *be, qh_tensor *t)
{
    (void)be;
    size_t n = qh_tensor_nbytes(t);
    /* 64-byte alignment suits AVX-512 loads and OpenBLAS; never 0 bytes for aligned_alloc */
    size_t rounded = (n + 63) & ~(size_t)63;
    t->data = aligned_alloc(64, rounded ? rounded : 64);
    if (!t->data) return qh_fail(QH_ESYS, "out of memory allocating %zu bytes", n);
    t->device = QH_DEVICE_CPU;
    t->owned = 1;
    return QH_OK;
}

static void cpu_release(qh_backend *be, qh_tensor *t)
{
    (void)be;
    if (t->owned) free(t->data);
    t->data = NULL;
    t->owned = 0;
}

static int cpu_upload(qh_backend *be, const void *host, qh_tensor *t)
{
    int rc = cpu_alloc(be, t);
    if (rc) return rc;
    memcpy(t->data, host, qh_tensor_nbytes(t));
    return QH_OK;
}

static int cpu_download_f32(qh_backend *be, const qh_tensor *t, float *host)
{
    (void)be;
    if (!qh_dtype_is_float(t->dtype)) return qh_fail(QH_ESYS, "download_f32: tensor is not float");
    qh_convert_to_f32(t->dtype, t->data, host, (size_t)qh_tensor_numel(t));
    return QH_OK;
}

static int cpu_weight(qh_backend *be, const qh_tensor *host_view, qh_tensor *out)
{
    (void)be;
    *out = *host_view; /* the memory-mapped bytes are used in place: no copy */
    out->owned = 0;
    out->device = QH_DEVICE_CPU;
    return QH_OK;
}

static int cpu_sync(qh_backend *be)
{
    (void)be;
    return QH_OK;
}

static void cpu_destroy(qh_backend *be)
{
    qh_cpu_impl *impl = be->impl;
    if (impl) free(impl->scratch);
    if (impl) free(impl->qscratch);
    free(impl);
    free(be);
}

int qh_cpu_check_act(const char *op, const qh_tensor *t, int64_t rows, int64_t cols)
{
    if (t->dtype != QH_F32 || qh_tensor_rows(t) != rows || qh_tensor_cols(t) != cols) {
        char buf[64];
        return qh_fail(QH_ESYS, "%s: internal error: expected F32 [%lld, %lld], got %s %s", op,
                       (long long)rows, (long long)cols, qh_dtype_name(t->dtype),
                       qh_shape_str(t, buf, sizeof buf));
    }
    return QH_OK;
}

int qh_cpu_backend_create(qh_backend **out)
{
    qh_backend *be = calloc(1, sizeof *be);
    qh_cpu_impl *impl = calloc(1, sizeof *impl);
    if (!be || !impl) {
        free(be);
        free(impl);
        return qh_fail(QH_ESYS, "out of memory creating the CPU backend");
    }
    be->name = "cpu";
    be->device = QH_DEVICE_CPU;
    be->act_dtype = QH_F32;
    be->quant_weights = 1;
    be->impl = impl;
    be->alloc = cpu_alloc;
    be->release = cpu_release;
    be->upload = cpu_upload;
    be->download_f32 = cpu_download_f32;
    be->weight = cpu_weight;
    be->sync = cpu_sync;
    be->destroy = cpu_destroy;
    be->embed = qh_cpu_embed;
    be->rmsnorm = qh_cpu_rmsnorm;
    be->linear = qh_cpu_linear;
    be->rope = qh_cpu_rope;
    be->attention = qh_cpu_attention;
    be->silu_mul = qh_cpu_silu_mul;
    be->add = qh_cpu_add;
    be->gather_rows = qh_cpu_gather_rows;
    *out = be;
    return QH_OK;
}
