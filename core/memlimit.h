/* Refusing work that cannot fit in memory before allocating it, with the numbers in the
 * message (a hostile or mistaken checkpoint, cache or argument must not get the process killed
 * by the OOM killer, or swap the machine to a halt, halfway through). */
#ifndef QHEAD_MEMLIMIT_H
#define QHEAD_MEMLIMIT_H

#include <stdint.h>

/* Physical memory of the machine in bytes (sysconf), or 0 when unknown. */
uint64_t qh_phys_mem_bytes(void);

/* QH_OK when bytes fit in physical memory (or it is unknown); else QH_EINPUT with the line
 * "<what> needs <X> GB of memory, more than the <Y> GB this machine has". */
int qh_check_memory(uint64_t bytes, const char *what);

#endif
