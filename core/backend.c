#include "backend.h"

#include "error.h"

#include <string.h>

int qh_cuda_available(void)
{
#ifdef QHEAD_HAVE_CUDA
    extern int qh_cuda_device_count(void);
    return qh_cuda_device_count() > 0;
#else
    return 0;
#endif
}

int qh_backend_create(const char *name, qh_backend **out)
{
    *out = NULL;
    if (!name || strcmp(name, "auto") == 0) {
#ifdef QHEAD_HAVE_CUDA
        if (qh_cuda_available()) return qh_cuda_backend_create(out);
#endif
        return qh_cpu_backend_create(out);
    }
    if (strcmp(name, "cpu") == 0) return qh_cpu_backend_create(out);
    if (strcmp(name, "cuda") == 0) {
#ifdef QHEAD_HAVE_CUDA
        if (!qh_cuda_available()) return qh_fail(QH_EINPUT, "--backend cuda: no CUDA device found");
        return qh_cuda_backend_create(out);
#else
        return qh_fail(QH_EINPUT, "--backend cuda: this build of qhead has no CUDA support");
#endif
    }
    return qh_fail(QH_EINPUT, "--backend %s: unknown backend (expected cpu, cuda or auto)", name);
}

void qh_backend_destroy(qh_backend *be)
{
    if (be) be->destroy(be);
}

qh_tensor qh_tensor_head_rows(const qh_tensor *t, int64_t rows)
{
    qh_tensor v = *t;
    v.shape[0] = rows;
    v.owned = 0;
    return v;
}
