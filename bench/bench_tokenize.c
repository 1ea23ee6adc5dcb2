/* bench_tokenize: single-thread encoding speed of the SentencePiece BPE tokenizer.
 *
 *   bench_tokenize --tokenizer tokenizer.model --text tweets.txt [--lines N] [--repeat R]
 *
 * Takes the file's lines (cycling through them until there are N, default: the file's count),
 * encodes them all R times (default 5) with one reused qh_ids, BOS included, and reports the
 * best pass: lines/s and tokens/s. The target is 60,000 tweets in under 2 s. */
#include "error.h"

#include "clock.h"
#include "fileio.h"
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const PROG = "bench_tokenize";

typedef struct {
    const char *text;
    size_t len;
} line_ref;

int main(int argc, char **argv)
{
    const char *model = NULL, *text_path = NULL;
    long want_lines = 0, repeat = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) {
            printf("usage: %s --tokenizer FILE --text FILE [--lines N] [--repeat R]\n", PROG);
            return 0;
        } else if (!strcmp(a, "--tokenizer") && v) {
            model = v, i++;
        } else if (!strcmp(a, "--text") && v) {
            text_path = v, i++;
        } else if (!strcmp(a, "--lines") && v) {
            want_lines = strtol(v, NULL, 10), i++;
        } else if (!strcmp(a, "--repeat") && v) {
            repeat = strtol(v, NULL, 10), i++;
        } else {
            return qh_report(PROG, qh_fail(QH_EINPUT, "bad argument '%s' (see --help)", a));
        }
    }
    if (!model || !text_path) return qh_report(PROG, qh_fail(QH_EINPUT, "--tokenizer and --text are required"));
    if (want_lines < 0 || repeat < 1) return qh_report(PROG, qh_fail(QH_EINPUT, "--lines and --repeat must be positive"));

    qh_tokenizer *t;
    int rc = qh_tokenizer_load(model, &t);
    if (rc) return qh_report(PROG, rc);
    char *buf;
    size_t len;
    if ((rc = qh_read_file(text_path, (size_t)1 << 30, &buf, &len))) {
        qh_tokenizer_free(t);
        return qh_report(PROG, rc);
    }
    /* Split into lines in place (dropping "\n" and a "\r" before it). */
    size_t n_file = 0, cap = 1024;
    line_ref *file_lines = malloc(cap * sizeof *file_lines);
    for (char *p = buf, *end = buf + len; file_lines && p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n_file == cap) {
            line_ref *q = realloc(file_lines, 2 * cap * sizeof *q);
            if (!q) break;
            file_lines = q, cap *= 2;
        }
        file_lines[n_file++] = (line_ref){p, l && p[l - 1] == '\r' ? l - 1 : l};
        p += l + 1;
    }
    if (!file_lines || n_file == 0) {
        free(file_lines);
        free(buf);
        qh_tokenizer_free(t);
        return qh_report(PROG, qh_fail(QH_EINPUT, "%s: no lines to tokenize", text_path));
    }
    size_t n_lines = want_lines ? (size_t)want_lines : n_file;

    qh_ids ids;
    qh_ids_init(&ids);
    double best = 1e30, total_time = 0;
    size_t tokens = 0, bytes = 0;
    for (long r = 0; r < repeat && !rc; r++) {
        tokens = bytes = 0;
        double t0 = qh_now_s();
        for (size_t i = 0; i < n_lines && !rc; i++) {
            const line_ref *l = &file_lines[i % n_file];
            rc = qh_tokenizer_encode(t, l->text, l->len, 1, &ids);
            tokens += ids.len;
            bytes += l->len;
        }
        double dt = qh_now_s() - t0;
        total_time += dt;
        if (dt < best) best = dt;
    }
    if (!rc)
        printf("%s: %zu lines (%zu distinct, %.2f MB) -> %zu tokens per pass; best of %ld passes: %.3f s "
               "= %.0f lines/s, %.0f tokens/s (mean %.3f s)\n",
               PROG, n_lines, n_file, (double)bytes / 1e6, tokens, repeat, best, (double)n_lines / best,
               (double)tokens / best, total_time / (double)repeat);
    qh_ids_free(&ids);
    free(file_lines);
    free(buf);
    qh_tokenizer_free(t);
    return rc ? qh_report(PROG, rc) : 0;
}
