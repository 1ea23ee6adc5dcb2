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

#endif
