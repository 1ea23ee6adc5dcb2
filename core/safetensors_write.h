/* Streaming safetensors writer: declare every tensor (name, dtype, shape) and metadata, then
 * write their bytes in the declared order, then commit. The file is built under a temporary
 * name and renamed into place after fsync, so a crash or full disk never leaves a partial
 * file where a good one was. Data never needs to be in memory all at once (quantize streams
 * 13.5 GB through it). */
#ifndef QHEAD_SAFETENSORS_WRITE_H
#define QHEAD_SAFETENSORS_WRITE_H

#include "dtype.h"

#include <stddef.h>
#include <stdint.h>

typedef struct qh_st_writer qh_st_writer;

int qh_st_writer_begin(const char *path, qh_st_writer **out);
int qh_st_writer_declare(qh_st_writer *w, const char *name, qh_dtype dtype, int ndim, const int64_t *shape);
int qh_st_writer_meta(qh_st_writer *w, const char *key, const char *value);
/* Append bytes of the current tensor (declared order); may be called several times per
 * tensor. The header is written before the first data. */
int qh_st_writer_write(qh_st_writer *w, const void *data, size_t bytes);
/* Checks every declared byte arrived, fsyncs and renames into place; frees w. */
int qh_st_writer_commit(qh_st_writer *w);
/* Removes the temporary file; frees w. */
void qh_st_writer_abort(qh_st_writer *w);

#endif
