/* Peak memory of a piece of work: device memory from the CUDA backend's own accounting (what
 * it allocated through the CUDA runtime), or the process's peak resident set on the CPU
 * (VmHWM, reset between variants through /proc/self/clear_refs). */
#ifndef QHEAD_MEMSTAT_H
#define QHEAD_MEMSTAT_H

#include "backend.h"

#include <stddef.h>

/* Start a new peak (CPU: resets VmHWM where the kernel allows; CUDA: nothing, a backend
 * counts from its creation). */
void qh_mem_peak_reset(const qh_backend *be);
/* Peak bytes since the reset and what they measure ("GPU (CUDA runtime)", "process peak
 * RSS"); NaN-free: 0 with kind "unavailable" when nothing could be read. */
double qh_mem_peak(const qh_backend *be, char *kind, size_t kind_size);
/* Current resident set of the process in bytes (0 when unreadable). */
double qh_mem_rss(void);

#endif
