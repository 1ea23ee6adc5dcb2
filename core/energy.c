#include "energy.h"

#include "clock.h"

#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double qh_energy_integrate(const double *t, const double *w, size_t n)
{
    double j = 0;
    for (size_t i = 1; i < n; i++) j += 0.5 * (w[i] + w[i - 1]) * (t[i] - t[i - 1]);
    return j;
}

double qh_energy_counter_delta(double before, double after, double max_range)
{
    return after >= before ? after - before : after + max_range - before;
}

double qh_joules_to_kwh(double joules) { return joules / 3.6e6; }
double qh_emissions_kg(double joules, double g_per_kwh) { return qh_joules_to_kwh(joules) * g_per_kwh / 1000.0; }

/* ---- NVML, resolved at run time ---- */
typedef int (*nvml_void_fn)(void);
typedef int (*nvml_handle_fn)(unsigned, void **);
typedef int (*nvml_uint_fn)(void *, unsigned *);
typedef int (*nvml_ull_fn)(void *, unsigned long long *);
typedef int (*nvml_name_fn)(void *, char *, unsigned);

typedef struct {
    void *lib;
    nvml_void_fn shutdown;
    nvml_uint_fn power_mw;
    nvml_ull_fn energy_mj; /* NULL or failing on boards without the counter */
    void *dev;
} nvml_api;

static int nvml_open(nvml_api *a, int device, char *name, size_t name_size)
{
    memset(a, 0, sizeof *a);
    a->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!a->lib) a->lib = dlopen("libnvidia-ml.so", RTLD_NOW | RTLD_LOCAL);
    if (!a->lib) return snprintf(name, name_size, "unavailable: libnvidia-ml not found"), -1;
    nvml_void_fn init = (nvml_void_fn)dlsym(a->lib, "nvmlInit_v2");
    nvml_handle_fn handle = (nvml_handle_fn)dlsym(a->lib, "nvmlDeviceGetHandleByIndex_v2");
    nvml_name_fn get_name = (nvml_name_fn)dlsym(a->lib, "nvmlDeviceGetName");
    a->shutdown = (nvml_void_fn)dlsym(a->lib, "nvmlShutdown");
    a->power_mw = (nvml_uint_fn)dlsym(a->lib, "nvmlDeviceGetPowerUsage");
    a->energy_mj = (nvml_ull_fn)dlsym(a->lib, "nvmlDeviceGetTotalEnergyConsumption");
    if (!init || !handle || !a->shutdown || !a->power_mw || init() != 0) {
        dlclose(a->lib);
        a->lib = NULL;
        return snprintf(name, name_size, "unavailable: NVML did not initialise"), -1;
    }
    unsigned mw;
    if (handle((unsigned)device, &a->dev) != 0 || a->power_mw(a->dev, &mw) != 0) {
        a->shutdown();
        dlclose(a->lib);
        a->lib = NULL;
        return snprintf(name, name_size, "unavailable: NVML cannot read GPU %d's power", device), -1;
    }
    char gpu[96] = "GPU";
    if (get_name) get_name(a->dev, gpu, sizeof gpu);
    snprintf(name, name_size, "NVML (%s)", gpu);
    return 0;
}

/* ---- RAPL: package domains intel-rapl:N (not the sub-domains intel-rapl:N:M) ---- */
#define MAX_RAPL 8
typedef struct {
    int n;
    char path[MAX_RAPL][300];
    double max_range[MAX_RAPL];
    double last[MAX_RAPL];
    double total_uj;
} rapl_state;

static int read_double(const char *path, double *v)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int ok = fscanf(f, "%lf", v) == 1;
    fclose(f);
    return ok ? 0 : -1;
}

static int rapl_open(rapl_state *r, char *name, size_t name_size)
{
    memset(r, 0, sizeof *r);
    const char *base = "/sys/class/powercap";
    DIR *d = opendir(base);
    if (!d) return snprintf(name, name_size, "unavailable: no %s (no RAPL on this machine)", base), -1;
    struct dirent *e;
    int unreadable = 0;
    while ((e = readdir(d)) && r->n < MAX_RAPL) {
        int a, b;
        char extra;
        if (sscanf(e->d_name, "intel-rapl:%d%c", &a, &extra) != 1 || sscanf(e->d_name, "intel-rapl:%d:%d", &a, &b) == 2)
            continue;
        char p[300];
        snprintf(r->path[r->n], sizeof r->path[r->n], "%s/%s/energy_uj", base, e->d_name);
        snprintf(p, sizeof p, "%s/%s/max_energy_range_uj", base, e->d_name);
        if (read_double(r->path[r->n], &r->last[r->n]) || read_double(p, &r->max_range[r->n])) {
            unreadable = 1;
            continue;
        }
        r->n++;
    }
    closedir(d);
    if (!r->n)
        return snprintf(name, name_size, "unavailable: %s", unreadable ? "RAPL counters not readable (needs privileges)"
                                                                       : "no RAPL package counters"), -1;
    snprintf(name, name_size, "RAPL (%d CPU package%s)", r->n, r->n > 1 ? "s" : "");
    return 0;
}

static void rapl_poll(rapl_state *r)
{
    for (int i = 0; i < r->n; i++) {
        double v;
        if (read_double(r->path[i], &v)) continue;
        r->total_uj += qh_energy_counter_delta(r->last[i], v, r->max_range[i]);
        r->last[i] = v;
    }
}

/* ---- the sampler ---- */
struct qh_energy_meter {
    qh_energy_target target;
    int interval_ms;
    int available;
    char source[128];
    nvml_api nvml;
    unsigned long long energy_start_mj;
    int has_counter;
    rapl_state rapl;
    pthread_t thread;
    pthread_mutex_t lock;
    int stop, running;
    double t0, *t, *w;
    size_t n, cap;
    double peak_w;
};

static void sample(qh_energy_meter *m)
{
    double t = qh_now_s(), w = NAN;
    if (m->target == QH_ENERGY_GPU) {
        unsigned mw;
        if (m->nvml.power_mw(m->nvml.dev, &mw) == 0) w = mw / 1000.0;
    } else {
        double before = m->rapl.total_uj;
        rapl_poll(&m->rapl);
        double dt = m->n ? t - m->t[m->n - 1] : 0;
        w = dt > 0 ? (m->rapl.total_uj - before) * 1e-6 / dt : NAN;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 1024;
        double *nt = realloc(m->t, cap * sizeof *nt), *nw = nt ? realloc(m->w, cap * sizeof *nw) : NULL;
        if (nt) m->t = nt;
        if (!nt || !nw) return;
        m->w = nw;
        m->cap = cap;
    }
    m->t[m->n] = t;
    m->w[m->n++] = w;
    if (w > m->peak_w) m->peak_w = w;
}

static void *sampler(void *arg)
{
    qh_energy_meter *m = arg;
    struct timespec ts = {.tv_sec = m->interval_ms / 1000, .tv_nsec = (long)(m->interval_ms % 1000) * 1000000L};
    for (;;) {
        pthread_mutex_lock(&m->lock);
        int stop = m->stop;
        if (!stop) sample(m);
        pthread_mutex_unlock(&m->lock);
        if (stop) break;
        nanosleep(&ts, NULL);
    }
    return NULL;
}

qh_energy_meter *qh_energy_start(qh_energy_target target, int device, int interval_ms)
{
    qh_energy_meter *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->target = target;
    m->interval_ms = interval_ms > 0 ? interval_ms : 100;
    pthread_mutex_init(&m->lock, NULL);
    if (target == QH_ENERGY_GPU) {
        m->available = nvml_open(&m->nvml, device, m->source, sizeof m->source) == 0;
        m->has_counter = m->available && m->nvml.energy_mj && m->nvml.energy_mj(m->nvml.dev, &m->energy_start_mj) == 0;
    } else {
        m->available = rapl_open(&m->rapl, m->source, sizeof m->source) == 0;
    }
    m->t0 = qh_now_s();
    if (m->available) {
        sample(m);
        m->running = pthread_create(&m->thread, NULL, sampler, m) == 0;
    }
    return m;
}

void qh_energy_stop(qh_energy_meter *m, qh_energy_result *out)
{
    memset(out, 0, sizeof *out);
    out->joules = out->joules_sampled = out->mean_watts = out->peak_watts = NAN;
    if (!m) {
        snprintf(out->source, sizeof out->source, "unavailable: out of memory");
        return;
    }
    if (m->running) {
        pthread_mutex_lock(&m->lock);
        m->stop = 1;
        pthread_mutex_unlock(&m->lock);
        pthread_join(m->thread, NULL);
    }
    out->seconds = qh_now_s() - m->t0;
    out->available = m->available;
    snprintf(out->source, sizeof out->source, "%s", m->source);
    if (m->available) {
        sample(m); /* a last point at the end */
        out->samples = m->n;
        out->peak_watts = m->peak_w;
        if (m->target == QH_ENERGY_GPU) {
            out->joules_sampled = qh_energy_integrate(m->t, m->w, m->n);
            unsigned long long end_mj;
            if (m->has_counter && m->nvml.energy_mj(m->nvml.dev, &end_mj) == 0 && end_mj >= m->energy_start_mj) {
                out->joules = (double)(end_mj - m->energy_start_mj) / 1000.0;
                size_t len = strlen(out->source);
                snprintf(out->source + len, sizeof out->source - len, ", energy counter");
            } else {
                out->joules = out->joules_sampled;
                size_t len = strlen(out->source);
                snprintf(out->source + len, sizeof out->source - len, ", power sampled every %d ms", m->interval_ms);
            }
            m->nvml.shutdown();
            dlclose(m->nvml.lib);
        } else {
            out->joules = m->rapl.total_uj * 1e-6;
        }
        out->mean_watts = out->seconds > 0 ? out->joules / out->seconds : NAN;
    }
    pthread_mutex_destroy(&m->lock);
    free(m->t);
    free(m->w);
    free(m);
}
