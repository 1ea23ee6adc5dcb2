#include "memstat.h"

#ifdef QHEAD_HAVE_CUDA
#include "cuda/qh_cuda.h"
#endif

#include <stdio.h>
#include <string.h>

static double status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') {
            sscanf(line + n + 1, "%lf", &kb);
            break;
        }
    fclose(f);
    return kb;
}

double qh_mem_rss(void) { return status_kb("VmRSS") * 1024.0; }

void qh_mem_peak_reset(const qh_backend *be)
{
    (void)be;
    /* "5" resets the peak RSS (Linux 4.0+); harmless where not permitted */
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

double qh_mem_peak(const qh_backend *be, char *kind, size_t kind_size)
{
#ifdef QHEAD_HAVE_CUDA
    if (be && be->device == QH_DEVICE_CUDA) {
        size_t live = 0, peak = 0;
        qh_cuda_memory(be, &live, &peak);
        snprintf(kind, kind_size, "GPU (CUDA runtime)");
        return (double)peak;
    }
#endif
    (void)be;
    double hwm = status_kb("VmHWM") * 1024.0;
    snprintf(kind, kind_size, hwm > 0 ? "process peak RSS" : "unavailable");
    return hwm;
}
