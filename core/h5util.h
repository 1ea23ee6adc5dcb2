/* Small HDF5 helpers shared by head files and feature caches: typed datasets and string
 * attributes, with HDF5's own error printing silenced (qhead reports one line per problem). */
#ifndef QHEAD_H5UTIL_H
#define QHEAD_H5UTIL_H

#include <hdf5.h>
#include <stdint.h>

/* Call before the first HDF5 use: no HDF5 error printing, and no HDF5 exit handler. */
void qh_h5_quiet(void);
/* Write a dataset of rank 1 or 2 from native float / int32 / double memory. */
herr_t qh_h5_write(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int rank, const hsize_t *dims,
                   const void *data);
/* Dimensions of a dataset; returns its rank, or -1 if absent / unreadable. */
int qh_h5_dims(hid_t loc, const char *name, hsize_t *dims, int max_rank);
/* 1 when the file holds every byte of dataset name's data (or the data is compressed, which
 * cannot be told without reading it), else 0: a dataset declared larger than what was written
 * (a truncated or hostile file) would read back as fill values at whatever size it claims. */
int qh_h5_fully_stored(hid_t loc, const char *name);
/* Read a whole dataset into caller memory of the given native type. */
herr_t qh_h5_read(hid_t loc, const char *name, hid_t mem_type, void *data);
/* Read a rectangular block of rows [row0, row0 + rows) of a rank-2 (or rank-1) dataset. */
herr_t qh_h5_read_rows(hid_t loc, const char *name, hid_t mem_type, hsize_t row0, hsize_t rows, void *data);

/* Variable-length UTF-8 string attributes: one string, or an array. */
herr_t qh_h5_set_str(hid_t loc, const char *name, const char *value);
herr_t qh_h5_set_strs(hid_t loc, const char *name, const char *const *values, int n);
/* Copy a scalar string attribute into dst (empty string when absent); returns 0 if present. */
int qh_h5_get_str(hid_t loc, const char *name, char *dst, size_t size);
/* Read an array-of-strings attribute with exactly n entries into dst[i] (each size bytes). */
int qh_h5_get_strs(hid_t loc, const char *name, int n, char *dst, size_t size);

#endif
