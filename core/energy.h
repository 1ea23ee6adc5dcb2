/* Energy while a piece of work runs: GPU board energy through NVML (loaded with dlopen, so
 * there is no build-time dependency and machines without a driver still run), CPU package
 * energy through RAPL (/sys/class/powercap), or "unavailable" — never a made-up number.
 *
 * A sampler thread reads power (GPU) or the energy counter (RAPL) every interval (100 ms by
 * default). For the GPU, joules come from NVML's cumulative energy counter where the board has
 * one (Volta and later), and from the trapezoid integral of the sampled power otherwise; both
 * are reported. */
#ifndef QHEAD_ENERGY_H
#define QHEAD_ENERGY_H

#include <stddef.h>

typedef enum { QH_ENERGY_GPU, QH_ENERGY_CPU } qh_energy_target;

typedef struct {
    int available;
    char source[128];      /* "NVML counter (NVIDIA H100 80GB HBM3)", "RAPL package-0", or why unavailable */
    double joules;         /* best estimate (NaN when unavailable) */
    double joules_sampled; /* trapezoid of the power samples (GPU), NaN when not sampled */
    double seconds;
    double mean_watts, peak_watts;
    size_t samples;
} qh_energy_result;

typedef struct qh_energy_meter qh_energy_meter;

/* Start measuring (device index for the GPU). Always succeeds: an unreadable source gives a
 * meter whose result says unavailable. interval_ms 0 means 100. */
qh_energy_meter *qh_energy_start(qh_energy_target target, int device, int interval_ms);
/* Stop, fill *out, free the meter. */
void qh_energy_stop(qh_energy_meter *m, qh_energy_result *out);

/* Trapezoid integral of power samples (watts at seconds t[i], increasing); 0 for n < 2. */
double qh_energy_integrate(const double *t, const double *watts, size_t n);
/* Counter difference with wrap-around at max_range (RAPL counters wrap). */
double qh_energy_counter_delta(double before, double after, double max_range);

/* kWh and kg CO2-eq from joules and a grid intensity in g/kWh. */
double qh_joules_to_kwh(double joules);
double qh_emissions_kg(double joules, double g_per_kwh);
/* The default intensity: the world-average figure CodeCarbon falls back to (475 g/kWh). */
#define QH_DEFAULT_CARBON_INTENSITY 475.0

#endif
