/* Helpers shared by the cmocka tests. */
#ifndef QHEAD_TESTUTIL_H
#define QHEAD_TESTUTIL_H

#include <setjmp.h> /* cmocka needs these before cmocka.h */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* A fresh empty directory under $TMPDIR (or /tmp); removed by tu_rmtree. */
char *tu_mkdtemp(const char *tag);
void tu_rmtree(const char *path);
/* Write bytes to dir/name; returns the malloc'd full path. */
char *tu_write_file(const char *dir, const char *name, const void *data, size_t len);
char *tu_path(const char *dir, const char *name);

/* Run a shell command line; capture stdout and stderr (malloc'd, NUL-terminated) and return
 * the exit status (or -1 if it died from a signal: a crash is never an acceptable answer). */
int tu_run(const char *cmdline, char **out, char **err);

/* Count lines in a NUL-terminated string (a final line without newline counts). */
int tu_count_lines(const char *s);

/* Deterministic pseudo-random numbers for test data (splitmix64). */
uint64_t tu_rand_u64(uint64_t *state);
double tu_rand_uniform(uint64_t *state); /* [0, 1) */
double tu_rand_normal(uint64_t *state);

/* A 3-class TweetEval-layout task in dir (created): class = the tweet's last word, 10% label
 * noise; train/val/test with the given sizes (0: that split is not written). */
void tu_write_sentiment_task(const char *dir, int n_train, int n_val, int n_test);

/* ---- for tests that compare backends (core/backend.h) ---- */
#include "backend.h"

/* The CPU backend and the CUDA one: the cmocka group state of tu_cpu_cuda_setup (which prints
 * why and fails when either cannot be made) and tu_cpu_cuda_teardown. */
typedef struct {
    qh_backend *cpu, *gpu;
} tu_backends;
int tu_cpu_cuda_setup(void **state);
int tu_cpu_cuda_teardown(void **state);
/* n random normals times scale (never zero) rounded to fp16, so that an fp16 and an fp32
 * backend see the same numbers (malloc'd). */
float *tu_rand_f16_values(uint64_t *rng, size_t n, double scale);
/* A [rows, cols] tensor on be holding the host values as dt (F16 or F32); fails the test on error. */
qh_tensor tu_to_backend(qh_backend *be, const float *host, int64_t rows, int64_t cols, qh_dtype dt);
/* All of t as fp32 (malloc'd); fails the test on error. */
float *tu_from_backend(qh_backend *be, const qh_tensor *t);
/* tests/fixtures: $QHEAD_FIXTURES (the GPU machine has the tree at another path), else the
 * directory this test was built with. */
const char *tu_fixtures(void);

/* ---- forward passes (core/llama_model.h) ---- */
#include "llama_model.h"

/* One forward pass of n_seqs sequences of len random token ids (below vocab) through both
 * contexts (same model or not); returns how many of the hidden values differ bit for bit
 * (h: hidden size). Fails the test on an error. */
long tu_forward_pair_diff(qh_llama_ctx *a, qh_llama_ctx *b, int n_seqs, int len, int vocab, int h, uint64_t *rng);
/* The same for one pass of m through `on` (graphs on) and `off` (graphs off): no value may
 * differ, and on's recording counts (qh_llama_ctx_graph_counts) must then be the ones given. */
void tu_graph_step(qh_llama_ctx *on, qh_llama_ctx *off, const qh_llama_model *m, int n_seqs, int len, uint64_t *rng,
                   long want_recorded, long want_replayed);

#endif
