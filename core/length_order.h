/* Sequences ordered shortest first (ties in original order), so consecutive micro-batches hold
 * similar lengths and the progress of a pass over them is even. */
#ifndef QHEAD_LENGTH_ORDER_H
#define QHEAD_LENGTH_ORDER_H

#include <stdint.h>

/* order[i] = index of the i-th shortest of the n sequences whose bounds are offsets[0..n];
 * malloc'd, NULL when out of memory. */
int64_t *qh_order_by_length(const int64_t *offsets, int64_t n);

#endif
