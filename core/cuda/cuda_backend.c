/* CUDA backend: device memory, weights, downloads, profiling, graphs and the backend's lifetime;
 * its ops (the table's embed through gather_rows) are in cuda_ops.c, matrix products in
 * cuda_gemm.c, the state both files share in cuda_backend_impl.h.
 *
 * Storage is fp16 (weights converted once when uploaded; activations), arithmetic fp32: the
 * matrix products run on tensor cores with fp32 accumulation (cuBLASLt, CUBLAS_COMPUTE_32F), the
 * kernels in cuda_kernels.cu / cuda_attention.cu widen to fp32. The residual stream that
 * llama_forward.c keeps in fp32 is accumulated in fp32 inside the matrix product's epilogue
 * (linear_add: y += x w^T with C = D = y in fp32), so it costs no separate pass.
 *
 * int8 and nf4 weights (quant_weights) are placed and multiplied by cuda_quant*.c.
 *
 * Everything runs in order on one stream; memory comes from the stream-ordered pool
 * (cudaMallocAsync), which keeps freed blocks for reuse, so the per-micro-batch allocations of
 * llama_forward.c cost no device synchronisation. Only download_f32 and sync wait for the GPU.
 * A batch-1 pass can be recorded once as a CUDA graph and replayed (capture_begin, graph_run:
 * backend.h); memory of the backend's own that kernels read (the rotary table, the quantized
 * products' scratch) counts as moved whenever it is reallocated, which makes older recordings
 * stale. */
#include "cuda_backend_impl.h"

#include "../error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKSPACE_BYTES ((size_t)32 << 20)

static const char *op_names[QH_CUDA_OP_COUNT] = {
    "embed (+ host gaps)", "rmsnorm", "gemm q/k/v", "gemm o (+residual)", "gemm gate/up", "gemm down (+residual)",
    "gemm other", "rope", "attention", "silu_mul", "add", "gather_rows", "copies",
    "int8 activations (+sync)", "nf4 dequantize"};

int qh_cu_be_err(cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return QH_OK;
    cudaGetLastError(); /* clear a sticky launch error where possible */
    return qh_fail(QH_ESYS, "CUDA error in %s: %s", what, cudaGetErrorString(e));
}

int qh_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

/* ---- profiling ------------------------------------------------------------------------------ */

/* Times are taken from the start mark to each event; an event whose time cannot be read has
 * its interval (and the next readable one's) counted for its own op, and is reported. */
static void prof_flush(cu_impl *im)
{
    if (im->n_ev == 0) return;
    cudaEventSynchronize(im->ev[im->n_ev]);
    double prev = 0;
    int pending = -1;
    for (int i = 1; i <= im->n_ev; i++) {
        float c = 0;
        cudaError_t e = cudaEventElapsedTime(&c, im->ev[0], im->ev[i]);
        if (e == cudaSuccess) {
            im->prof_ms[pending >= 0 ? pending : im->ev_kind[i]] += c - prev;
            prev = c;
            pending = -1;
        } else {
            cudaGetLastError();
            if (!im->prof_err) im->prof_err = e;
            im->prof_fail[im->ev_kind[i]]++;
            if (pending < 0) pending = im->ev_kind[i];
        }
    }
    cudaEvent_t t = im->ev[0]; /* the last event becomes the next start mark */
    im->ev[0] = im->ev[im->n_ev];
    im->ev[im->n_ev] = t;
    im->n_ev = 0;
}

static void prof_mark(cu_impl *im, int kind)
{
    if (kind < QH_CUDA_OP_GEMM_QKV || (kind > QH_CUDA_OP_GEMM_OTHER && kind < QH_CUDA_OP_COPY))
        im->gen++; /* an op that may have written memory (products and copies down track their own) */
    if (!im->prof) return;
    if (im->n_ev == PROF_EVENTS) prof_flush(im);
    im->n_ev++;
    im->ev_kind[im->n_ev] = kind;
    cudaEventRecord(im->ev[im->n_ev], im->stream);
}

void qh_cuda_profile(qh_backend *be, int on)
{
    cu_impl *im = be->impl;
    if (on && !im->prof) {
        for (int i = 0; i <= PROF_EVENTS; i++) cudaEventCreate(&im->ev[i]);
        memset(im->prof_ms, 0, sizeof im->prof_ms);
        memset(im->prof_fail, 0, sizeof im->prof_fail);
        im->prof_err = cudaSuccess;
        im->n_ev = 0;
        cudaEventRecord(im->ev[0], im->stream);
        im->prof = 1;
    } else if (!on && im->prof) {
        prof_flush(im);
        for (int i = 0; i <= PROF_EVENTS; i++) cudaEventDestroy(im->ev[i]);
        im->prof = 0;
    }
}

int qh_cuda_profile_read(qh_backend *be, double ms[QH_CUDA_OP_COUNT], const char *names[QH_CUDA_OP_COUNT])
{
    cu_impl *im = be->impl;
    if (im->prof) prof_flush(im);
    for (int i = 0; i < QH_CUDA_OP_COUNT; i++) {
        ms[i] = im->prof_ms[i];
        names[i] = op_names[i];
        if (im->prof_fail[i])
            fprintf(stderr, "qh_cuda_profile: %ld events after '%s' had no time (%s)\n", im->prof_fail[i], op_names[i],
                    cudaGetErrorString(im->prof_err));
    }
    return QH_OK;
}

/* ---- memory ---------------------------------------------------------------------------------- */

static int dev_alloc(cu_impl *im, size_t n, void **p)
{
    *p = NULL;
    cudaError_t e = cudaMallocAsync(p, n ? n : 16, im->stream);
    if (e != cudaSuccess) {
        cudaGetLastError();
        *p = NULL;
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        if (e == cudaErrorMemoryAllocation)
            return qh_fail(QH_ESYS,
                           "CUDA out of memory allocating %.1f MiB (%.0f MiB free of %.0f MiB): try a smaller "
                           "--batch-tokens",
                           n / 1048576.0, fr / 1048576.0, tot / 1048576.0);
        return qh_fail(QH_ESYS, "CUDA error allocating %.1f MiB: %s", n / 1048576.0, cudaGetErrorString(e));
    }
    im->live += n;
    if (im->live > im->peak) im->peak = im->live;
    return QH_OK;
}

static void dev_free(cu_impl *im, void *p, size_t n)
{
    if (!p) return;
    cudaFreeAsync(p, im->stream);
    im->live = im->live >= n ? im->live - n : 0;
}

static int cu_alloc(qh_backend *be, qh_tensor *t)
{
    ((cu_impl *)be->impl)->gen++;
    int rc = dev_alloc(be->impl, qh_tensor_nbytes(t), &t->data);
    if (rc) return rc;
    t->device = QH_DEVICE_CUDA;
    t->owned = 1;
    return QH_OK;
}

static void cu_release(qh_backend *be, qh_tensor *t)
{
    ((cu_impl *)be->impl)->gen++;
    if (t->owned && qh_tensor_is_quantized(t)) qh_cu_quant_forget(be);
    if (t->owned) dev_free(be->impl, t->data, qh_tensor_is_quantized(t) ? qh_cu_quant_bytes(t) : qh_tensor_nbytes(t));
    t->data = NULL;
    t->owned = 0;
}

/* host -> t's storage. From pageable memory the call returns once the bytes are staged: host
 * may be reused. */
static int cu_write(qh_backend *be, const void *host, qh_tensor *t)
{
    cu_impl *im = be->impl;
    im->gen++;
    size_t n = qh_tensor_nbytes(t);
    int rc = n ? cuda_err(cudaMemcpyAsync(t->data, host, n, cudaMemcpyHostToDevice, im->stream), "upload") : QH_OK;
    prof_mark(im, QH_CUDA_OP_COPY);
    return rc;
}

static int cu_upload(qh_backend *be, const void *host, qh_tensor *t)
{
    int rc = cu_alloc(be, t);
    if (!rc) rc = cu_write(be, host, t);
    if (rc) cu_release(be, t);
    return rc;
}

static int check_flag(cu_impl *im)
{
    if (*(volatile int *)im->err_host) {
        *(volatile int *)im->err_host = 0;
        return qh_fail(QH_EINPUT, "a token id is outside the vocabulary (or a row index out of range) on the GPU");
    }
    return QH_OK;
}

static int cu_sync(qh_backend *be)
{
    cu_impl *im = be->impl;
    int rc = cuda_err(cudaStreamSynchronize(im->stream), "synchronize");
    if (!rc) rc = check_flag(im);
    return rc;
}

static int cu_download_f32(qh_backend *be, const qh_tensor *t, float *host)
{
    cu_impl *im = be->impl;
    if (!qh_dtype_is_float(t->dtype)) return qh_fail(QH_ESYS, "download_f32: tensor is not float");
    size_t n = (size_t)qh_tensor_numel(t), bytes = qh_tensor_nbytes(t);
    void *dst = host;
    if (t->dtype != QH_F32) {
        dst = malloc(bytes ? bytes : 1);
        if (!dst) return qh_fail(QH_ESYS, "out of memory");
    }
    int rc = bytes ? cuda_err(cudaMemcpyAsync(dst, t->data, bytes, cudaMemcpyDeviceToHost, im->stream), "download")
                   : QH_OK;
    if (!rc) rc = cu_sync(be);
    if (!rc && t->dtype != QH_F32) qh_convert_to_f32(t->dtype, dst, host, n);
    if (dst != host) free(dst);
    prof_mark(im, QH_CUDA_OP_COPY);
    return rc;
}

static int cu_download_start(qh_backend *be, const qh_tensor *t, float *host, int *ticket)
{
    cu_impl *im = be->impl;
    if (!qh_dtype_is_float(t->dtype)) return qh_fail(QH_ESYS, "download_start: tensor is not float");
    int slot = im->dl_next & 1;
    if (im->dl[slot].busy) return qh_fail(QH_ESYS, "download_start: internal error: more than two downloads in flight");
    size_t bytes = qh_tensor_nbytes(t);
    if (bytes > im->dl[slot].cap) {
        if (im->dl[slot].stage) cudaFreeHost(im->dl[slot].stage);
        im->dl[slot].stage = NULL, im->dl[slot].cap = 0;
        int rc = cuda_err(cudaHostAlloc(&im->dl[slot].stage, bytes, cudaHostAllocDefault), "cudaHostAlloc");
        if (rc) return rc;
        im->dl[slot].cap = bytes;
    }
    if (!im->dl[slot].done) {
        int rc = cuda_err(cudaEventCreateWithFlags(&im->dl[slot].done, cudaEventDisableTiming), "cudaEventCreate");
        if (rc) return rc;
    }
    int rc = bytes ? cuda_err(cudaMemcpyAsync(im->dl[slot].stage, t->data, bytes, cudaMemcpyDeviceToHost, im->stream),
                              "download")
                   : QH_OK;
    if (!rc) rc = cuda_err(cudaEventRecord(im->dl[slot].done, im->stream), "cudaEventRecord");
    if (rc) return rc;
    im->dl[slot].bytes = bytes, im->dl[slot].n = (size_t)qh_tensor_numel(t);
    im->dl[slot].host = host, im->dl[slot].dtype = t->dtype, im->dl[slot].busy = 1;
    *ticket = im->dl_next++;
    prof_mark(im, QH_CUDA_OP_COPY);
    return QH_OK;
}

static int cu_download_wait(qh_backend *be, int ticket)
{
    cu_impl *im = be->impl;
    int slot = ticket & 1;
    if (!im->dl[slot].busy) return qh_fail(QH_ESYS, "download_wait: internal error: no download %d", ticket);
    im->dl[slot].busy = 0;
    int rc = cuda_err(cudaEventSynchronize(im->dl[slot].done), "download");
    if (!rc) rc = check_flag(im);
    if (!rc) qh_convert_to_f32(im->dl[slot].dtype, im->dl[slot].stage, im->dl[slot].host, im->dl[slot].n);
    return rc;
}

/* Weights become fp16 on the device (fp32 in the fp32 mode), whatever the checkpoint holds. */
static int cu_weight(qh_backend *be, const qh_tensor *host_view, qh_tensor *out)
{
    cu_impl *im = be->impl;
    if (qh_tensor_is_quantized(host_view)) return qh_cu_quant_weight(be, host_view, out);
    if (!qh_dtype_is_float(host_view->dtype))
        return qh_fail(QH_EINPUT, "the CUDA backend runs float weights (F16, BF16, F32, int8, nf4); got %s",
                       qh_dtype_name(host_view->dtype));
    qh_dtype wdt = im->precise ? QH_F32 : QH_F16;
    *out = qh_tensor_desc(wdt, host_view->ndim, host_view->shape);
    int rc = cu_alloc(be, out);
    if (rc) return rc;
    size_t n = (size_t)qh_tensor_numel(host_view);
    if (host_view->dtype == wdt) {
        rc = cuda_err(cudaMemcpyAsync(out->data, host_view->data, n * qh_dtype_size(wdt), cudaMemcpyHostToDevice,
                                      im->stream),
                      "weight upload");
    } else {
        /* BF16/F32 go up as they are and are converted there; F64 is narrowed on the host first */
        const void *src = host_view->data;
        float *tmp = NULL;
        qh_dtype st = host_view->dtype;
        if (st == QH_F64) {
            tmp = malloc(n * sizeof(float) + 1);
            if (!tmp) rc = qh_fail(QH_ESYS, "out of memory");
            else qh_convert_to_f32(QH_F64, src, tmp, n);
            src = tmp, st = QH_F32;
        }
        void *dev = NULL;
        size_t bytes = n * qh_dtype_size(st);
        if (!rc) rc = dev_alloc(im, bytes, &dev);
        if (!rc) rc = cuda_err(cudaMemcpyAsync(dev, src, bytes, cudaMemcpyHostToDevice, im->stream), "weight upload");
        if (!rc) rc = launch_err(qh_cu_convert(im->stream, dev, cu_type(st), out->data, cu_type(wdt), (int64_t)n), "convert");
        dev_free(im, dev, bytes);
        free(tmp);
    }
    if (rc) cu_release(be, out);
    return rc;
}

/* The device memory weight() takes: quantized weights in the backend's padded layout, float
 * weights as fp16 (fp32 in the fp32 mode). */
static uint64_t cu_weight_bytes(qh_backend *be, const qh_tensor *host_view)
{
    cu_impl *im = be->impl;
    if (qh_tensor_is_quantized(host_view)) return qh_cu_quant_bytes(host_view);
    return (uint64_t)qh_tensor_numel(host_view) * (im->precise ? 4 : 2);
}

/* Room the forward pass needs besides the weights at the smallest useful --batch-tokens (its
 * workspace, cuBLASLt's, the pool's rounding); more batch tokens fail later with their own
 * message naming --batch-tokens. */
#define CU_MIN_HEADROOM (256ull << 20)

/* "13.25 GB", "87.3 MB" into buf[32] */
static const char *human_bytes(uint64_t b, char *buf)
{
    if (b >= 1000000000ull) snprintf(buf, 32, "%.2f GB", b / 1e9);
    else snprintf(buf, 32, "%.1f MB", b / 1e6);
    return buf;
}

static int cu_check_capacity(qh_backend *be, uint64_t bytes, const char *what)
{
    cu_impl *im = be->impl;
    size_t fr = 0, tot = 0;
    int rc = cuda_err(cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo");
    if (rc) return rc;
    if (im->free_limit && im->free_limit < fr) fr = im->free_limit;
    if (bytes + CU_MIN_HEADROOM <= fr) return QH_OK;
    char need[32], run[32], avail[32], all[32];
    return qh_fail(QH_EINPUT,
                   "%s need %s of GPU memory (and %s to run), more than the %s free on %s (%s in all): use a "
                   "smaller variant (quantize --bits 8 or 4), free the GPU, or --backend cpu",
                   what, human_bytes(bytes, need), human_bytes(bytes + CU_MIN_HEADROOM, run), human_bytes(fr, avail),
                   im->name, human_bytes(tot, all));
}

void qh_cuda_set_free_limit(qh_backend *be, size_t bytes) { ((cu_impl *)be->impl)->free_limit = bytes; }

/* ---- services for cuda_quant.c (cuda_quant.h) ------------------------------------------------ */

cudaStream_t qh_cu_be_stream(qh_backend *be) { return ((cu_impl *)be->impl)->stream; }
int qh_cu_be_sm_count(qh_backend *be) { return ((cu_impl *)be->impl)->sms; }
int qh_cu_be_cc_major(qh_backend *be) { return ((cu_impl *)be->impl)->cc_major; }
int qh_cu_be_alloc(qh_backend *be, size_t bytes, void **p) { return dev_alloc(be->impl, bytes, p); }
void qh_cu_be_free(qh_backend *be, void *p, size_t bytes)
{
    ((cu_impl *)be->impl)->epoch++; /* scratch or a weight moves: recorded graphs are stale */
    dev_free(be->impl, p, bytes);
}
void qh_cu_be_mark(qh_backend *be, int kind) { prof_mark(be->impl, kind); }
unsigned long qh_cu_be_generation(qh_backend *be) { return ((cu_impl *)be->impl)->gen; }
struct qh_cu_quant **qh_cu_be_quant(qh_backend *be) { return &((cu_impl *)be->impl)->quant; }

/* ---- graphs: record a forward pass once, replay it (backend.h) ------------------------------ */

typedef struct {
    cudaGraphExec_t exec;
    unsigned long epoch; /* im->epoch when recorded */
} cu_graph;

static int cu_capture_begin(qh_backend *be)
{
    cu_impl *im = be->impl;
    if (im->prof) return 1; /* per-op events need the ops run one by one */
    qh_cu_quant_begin_capture(be);
    /* thread-local: only this thread's calls that would wait for the device break the recording */
    int rc = cuda_err(cudaStreamBeginCapture(im->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    if (rc) qh_cu_quant_after_capture(be);
    return rc;
}

static int cu_capture_end(qh_backend *be, void **graph)
{
    cu_impl *im = be->impl;
    *graph = NULL;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(im->stream, &g);
    /* the recorded ops' host-side bookkeeping describes work that did not run */
    im->gen++;
    qh_cu_quant_after_capture(be);
    cudaGraphExec_t exec = NULL;
    if (e == cudaSuccess && g) e = cudaGraphInstantiate(&exec, g, 0);
    if (g) cudaGraphDestroy(g);
    if (e != cudaSuccess || !exec) { /* an op waited for the device or did something else a graph cannot hold */
        cudaGetLastError();
        return QH_OK;
    }
    cu_graph *cg = malloc(sizeof *cg);
    if (!cg) {
        cudaGraphExecDestroy(exec);
        return qh_fail(QH_ESYS, "out of memory");
    }
    cg->exec = exec, cg->epoch = im->epoch;
    *graph = cg;
    return QH_OK;
}

static int cu_graph_run(qh_backend *be, void *graph)
{
    cu_impl *im = be->impl;
    cu_graph *cg = graph;
    if (cg->epoch != im->epoch || im->prof) return 1;
    im->gen++; /* the replayed ops wrote memory */
    int rc = qh_cu_quant_before_replay(be);
    return rc ? rc : cuda_err(cudaGraphLaunch(cg->exec, im->stream), "cudaGraphLaunch");
}

static void cu_graph_free(qh_backend *be, void *graph)
{
    cu_graph *cg = graph;
    if (!cg) return;
    cudaStreamSynchronize(((cu_impl *)be->impl)->stream); /* no replay of it in flight (rare: eviction) */
    cudaGraphExecDestroy(cg->exec);
    free(cg);
}

/* ---- extras (qh_cuda.h) ----------------------------------------------------------------------- */

void qh_cuda_memory(const qh_backend *be, size_t *live, size_t *peak)
{
    const cu_impl *im = be->impl;
    if (live) *live = im->live;
    if (peak) *peak = im->peak;
}

void qh_cuda_reset_peak(qh_backend *be)
{
    cu_impl *im = be->impl;
    im->peak = im->live;
}

int qh_cuda_device_memory(size_t *used, size_t *total)
{
    size_t fr = 0, tot = 0;
    int rc = cuda_err(cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo");
    if (used) *used = tot - fr;
    if (total) *total = tot;
    return rc;
}

const char *qh_cuda_device_name(const qh_backend *be) { return ((const cu_impl *)be->impl)->name; }

int qh_cuda_fill(qh_backend *be, qh_tensor *t, uint64_t seed, float mean, float sd)
{
    cu_impl *im = be->impl;
    int type = cu_type(t->dtype);
    if (type < 0) return qh_fail(QH_ESYS, "qh_cuda_fill: not a 16/32-bit float tensor");
    im->gen++;
    return launch_err(qh_cu_fill(im->stream, t->data, type, qh_tensor_numel(t), seed, mean, sd), "fill");
}

void qh_cuda_set_attention(qh_backend *be, int kind) { ((cu_impl *)be->impl)->attn_kind = kind; }

void qh_cuda_set_precision(qh_backend *be, int fp32)
{
    ((cu_impl *)be->impl)->precise = fp32 != 0;
    be->act_dtype = fp32 ? QH_F32 : QH_F16;
}

int qh_cuda_gemm_bench(qh_backend *be, int64_t t, int64_t n, int64_t k, int f32_acc, int max_algos, int sustain_ms,
                       double *tflops_first, double *tflops_best)
{
    *tflops_first = *tflops_best = 0;
    qh_tensor w = qh_tensor_2d(QH_F16, n, k), x = qh_tensor_2d(QH_F16, t, k);
    qh_tensor y = qh_tensor_2d(f32_acc ? QH_F32 : QH_F16, t, n);
    int rc = cu_alloc(be, &w);
    if (!rc) rc = cu_alloc(be, &x);
    if (!rc) rc = cu_alloc(be, &y);
    if (!rc) rc = qh_cuda_fill(be, &w, 1, 0, 0.02f);
    if (!rc) rc = qh_cuda_fill(be, &x, 2, 0, 1.0f);
    if (!rc) rc = qh_cuda_fill(be, &y, 3, 0, 1.0f);
    if (!rc)
        rc = qh_cu_gemm_sweep(((cu_impl *)be->impl)->gemm, w.data, x.data, y.data, t, n, k, f32_acc, max_algos,
                              sustain_ms, tflops_first, tflops_best);
    cu_release(be, &w);
    cu_release(be, &x);
    cu_release(be, &y);
    if (!rc) rc = cu_sync(be);
    return rc;
}

/* ---- lifetime --------------------------------------------------------------------------------- */

static void cu_destroy(qh_backend *be)
{
    cu_impl *im = be->impl;
    if (im) {
        if (im->prof) qh_cuda_profile(be, 0);
        dev_free(im, im->rope_cs, (size_t)im->rope_npos * (im->rope_hd / 2) * sizeof(float2));
        dev_free(im, im->rope_inv, (size_t)(im->rope_hd / 2) * sizeof(double));
        dev_free(im, im->workspace, WORKSPACE_BYTES);
        qh_cu_quant_free(be);
        qh_cu_gemm_destroy(im->gemm);
        if (im->stream) {
            cudaStreamSynchronize(im->stream);
            cudaStreamDestroy(im->stream);
        }
        if (im->err_host) cudaFreeHost(im->err_host);
        for (int i = 0; i < 2; i++) {
            if (im->dl[i].stage) cudaFreeHost(im->dl[i].stage);
            if (im->dl[i].done) cudaEventDestroy(im->dl[i].done);
        }
        /* give the pool's cached blocks back to the device */
        cudaMemPool_t pool;
        if (cudaDeviceGetDefaultMemPool(&pool, im->device) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
        cudaGetLastError();
        free(im);
    }
    free(be);
}

int qh_cuda_backend_create(qh_backend **out)
{
    *out = NULL;
    qh_backend *be = calloc(1, sizeof *be);
    cu_impl *im = calloc(1, sizeof *im);
    if (!be || !im) {
        free(be);
        free(im);
        return qh_fail(QH_ESYS, "out of memory creating the CUDA backend");
    }
    be->impl = im;
    be->destroy = cu_destroy;
    int rc = cuda_err(cudaGetDevice(&im->device), "cudaGetDevice");
    struct cudaDeviceProp prop;
    if (!rc) rc = cuda_err(cudaGetDeviceProperties(&prop, im->device), "cudaGetDeviceProperties");
    if (!rc) {
        snprintf(im->name, sizeof im->name, "%s, sm_%d%d, %d SMs, %.1f GiB", prop.name, prop.major, prop.minor,
                 prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0);
        im->sms = prop.multiProcessorCount, im->cc_major = prop.major;
        if (prop.major < 7)
            rc = qh_fail(QH_EINPUT, "--backend cuda: %s is too old (tensor cores need compute capability 7.0+)", prop.name);
    }
    if (!rc) rc = cuda_err(cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    cudaMemPool_t pool;
    if (!rc) rc = cuda_err(cudaDeviceGetDefaultMemPool(&pool, im->device), "cudaDeviceGetDefaultMemPool");
    if (!rc) {
        uint64_t keep = UINT64_MAX; /* keep freed blocks cached: no device sync on the next allocation */
        rc = cuda_err(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "mempool");
    }
    if (!rc) rc = cuda_err(cudaHostAlloc((void **)&im->err_host, sizeof(int), cudaHostAllocMapped), "cudaHostAlloc");
    if (!rc) {
        *im->err_host = 0;
        rc = cuda_err(cudaHostGetDevicePointer((void **)&im->err_dev, im->err_host, 0), "cudaHostGetDevicePointer");
    }
    if (!rc) rc = dev_alloc(im, WORKSPACE_BYTES, &im->workspace);
    if (!rc) rc = qh_cu_gemm_create(im->stream, im->workspace, WORKSPACE_BYTES, &im->gemm);
    if (rc) {
        cu_destroy(be);
        return rc;
    }
    const char *attn = getenv("QHEAD_CUDA_ATTENTION");
    im->attn_kind = attn && !strcmp(attn, "simple") ? QH_CUDA_ATTN_SIMPLE : QH_CUDA_ATTN_TC;
    be->name = "cuda";
    be->device = QH_DEVICE_CUDA;
    be->quant_weights = 1;
    const char *prec = getenv("QHEAD_CUDA_PRECISION");
    qh_cuda_set_precision(be, prec && !strcmp(prec, "fp32"));
    be->alloc = cu_alloc;
    be->release = cu_release;
    be->upload = cu_upload;
    be->download_f32 = cu_download_f32;
    be->download_start = cu_download_start;
    be->download_wait = cu_download_wait;
    be->weight = cu_weight;
    be->weight_bytes = cu_weight_bytes;
    be->check_capacity = cu_check_capacity;
    be->sync = cu_sync;
    qh_cu_ops_install(be);
    be->capture_begin = cu_capture_begin;
    be->capture_end = cu_capture_end;
    be->graph_run = cu_graph_run;
    be->graph_free = cu_graph_free;
    be->write = cu_write;
    *out = be;
    return QH_OK;
}
