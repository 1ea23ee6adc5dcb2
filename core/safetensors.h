/* Read-only, memory-mapped safetensors files.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON header
 * {"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data; offsets are relative to the data start. Everything in the header is checked
 * before any tensor is used: header inside the file, offsets inside the data, no overlaps,
 * byte counts equal to shape x dtype size without overflow, known dtypes, unique names.
 * Tensor bytes are never copied: they are used where the map puts them. */
#ifndef QHEAD_SAFETENSORS_H
#define QHEAD_SAFETENSORS_H

#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

#define QH_ST_MAX_DIMS 8

typedef struct {
    char *name;
    qh_dtype dtype;
    int ndim;
    int64_t shape[QH_ST_MAX_DIMS];
    uint64_t begin, end; /* relative to the data section */
} qh_st_tensor;

typedef struct {
    char *path;
    void *map;
    size_t map_size;
    const uint8_t *data; /* start of the data section */
    uint64_t data_size;
    uint64_t header_size;
    qh_st_tensor *tensors;
    size_t n_tensors;
    char **meta_keys, **meta_values; /* __metadata__ (string values only, as the format says) */
    size_t n_meta;
} qh_safetensors;

int qh_st_open(const char *path, qh_safetensors **out);
void qh_st_close(qh_safetensors *st);
const qh_st_tensor *qh_st_find(const qh_safetensors *st, const char *name);
const void *qh_st_data(const qh_safetensors *st, const qh_st_tensor *t);
const char *qh_st_meta(const qh_safetensors *st, const char *key);
/* A tensor view over the mapped bytes (ndim must be <= QH_MAX_DIMS). */
int qh_st_view(const qh_safetensors *st, const qh_st_tensor *t, qh_tensor *out);

#endif
