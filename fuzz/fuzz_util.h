/* Shared by the libFuzzer targets: the parsers under test take paths, so each input is written
 * to a file in a private directory (on /dev/shm when it exists: no disk I/O per execution). */
#ifndef QHEAD_FUZZ_UTIL_H
#define QHEAD_FUZZ_UTIL_H

#include "error.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fz_dir_name[256];

/* Remove dir and what it holds (files, and directories of files: all the targets make). */
static inline void fz_rm_tree(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                if (unlink(p) != 0 && depth < 2) fz_rm_tree(p, depth + 1);
            }
        closedir(d);
    }
    rmdir(dir);
}

static inline void fz_rm_dir(void) { fz_rm_tree(fz_dir_name, 0); }

/* This process's scratch directory, created on first use and removed at exit (a crash leaves
 * it behind, in $QHEAD_FUZZ_TMPDIR, else /dev/shm). */
static inline const char *fz_dir(void)
{
    char *dir = fz_dir_name;
    if (!dir[0]) {
        const char *base = getenv("QHEAD_FUZZ_TMPDIR"); /* fuzz/run.sh: one it removes afterwards */
        if (!base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(dir, sizeof fz_dir_name, "%s/qhead-fuzz-XXXXXX", base);
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(fz_rm_dir);
    }
    return dir;
}

/* dir/name, in a static buffer per slot (0..3) so a target can hold a few paths at once. */
static inline const char *fz_path(int slot, const char *name)
{
    static char paths[4][512];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", fz_dir(), name);
    return paths[slot];
}

/* Write data[0..n) to dir/name (replacing it); returns the path. Aborts on I/O failure, which
 * would be the harness's fault, not the input's. */
static inline const char *fz_write(int slot, const char *name, const void *data, size_t n)
{
    const char *path = fz_path(slot, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            perror(path);
            abort();
        }
        p += w, n -= (size_t)w;
    }
    close(fd);
    return path;
}

/* A refusal must be one line: no newline inside the recorded message. */
static inline void fz_check_error(int rc)
{
    if (rc == QH_OK) return;
    const char *msg = qh_last_error();
    if (strchr(msg, '\n') || !msg[0]) {
        fprintf(stderr, "error message is not one line: \"%s\"\n", msg);
        abort();
    }
}

/* 1 when the parser refused the input (then it must have left *out NULL), else 0. */
static inline int fz_refused(int rc, const void *out)
{
    fz_check_error(rc);
    if (rc && out) abort();
    return rc != QH_OK;
}

/* HDF5 targets: every file and object our code opened must be closed again. */
#define FZ_CHECK_H5_CLOSED()                                                                 \
    do {                                                                                   \
        ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);                     \
        if (open_ids != 0) {                                                               \
            fprintf(stderr, "%zd HDF5 files or objects left open\n", open_ids);            \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Split data at the separator sep into at most max parts (the last part keeps any further
 * separators). Returns the number of parts; part i is starts[i][0..lens[i]). */
static inline int fz_split(const uint8_t *data, size_t n, const char *sep, int max, const uint8_t **starts,
                           size_t *lens)
{
    size_t sl = strlen(sep);
    int k = 0;
    const uint8_t *p = data, *end = data + n;
    while (k < max - 1) {
        const uint8_t *hit = NULL;
        for (const uint8_t *q = p; q + sl <= end; q++)
            if (memcmp(q, sep, sl) == 0) {
                hit = q;
                break;
            }
        if (!hit) break;
        starts[k] = p, lens[k] = (size_t)(hit - p), k++;
        p = hit + sl;
    }
    starts[k] = p, lens[k] = (size_t)(end - p), k++;
    return k;
}

#endif
