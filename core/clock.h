/* Monotonic wall-clock seconds, for every timing qhead reports. */
#ifndef QHEAD_CLOCK_H
#define QHEAD_CLOCK_H

double qh_now_s(void);

#endif
