/* Whole-file reads and crash-safe writes.
 *
 * Outputs are never written in place: qh_atomic_begin opens "<path>.tmp.<pid>", and
 * qh_atomic_commit fsyncs it and renames it over <path>, so a crash or a full disk leaves
 * the previous file intact. */
#ifndef QHEAD_FILEIO_H
#define QHEAD_FILEIO_H

#include <stddef.h>
#include <stdio.h>

/* Read a whole file into a NUL-terminated malloc'd buffer. Refuses files over max_bytes. */
int qh_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len);

typedef struct {
    FILE *fp;
    char path[4096];
    char tmp_path[4200];
} qh_atomic_file;

int qh_atomic_begin(qh_atomic_file *af, const char *path);
/* Flush, fsync, close and rename over the final path. On failure the temp file is removed. */
int qh_atomic_commit(qh_atomic_file *af);
/* Give up: close and remove the temporary file. Safe to call twice. */
void qh_atomic_abort(qh_atomic_file *af);

/* Temporary name for writers that need a path rather than a FILE* (HDF5, mmap):
 * fills tmp with "<path>.tmp.<pid>". Commit with qh_commit_tmp (fsync + rename). */
int qh_tmp_name(const char *path, char *tmp, size_t tmp_size);
int qh_commit_tmp(const char *tmp, const char *path);

int qh_path_exists(const char *path);
int qh_is_dir(const char *path);
/* mkdir -p */
int qh_mkdirs(const char *path);

#endif
