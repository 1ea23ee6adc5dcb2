/* qhead-tokenize: text lines in, SentencePiece token ids out (or back with --decode). */
#include "error.h"
#include "tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const PROG = "qhead-tokenize";

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: %s --tokenizer FILE [--no-bos]\n"
            "       %s --tokenizer FILE --decode\n"
            "       %s --tokenizer FILE --info\n"
            "\n"
            "Reads UTF-8 text lines on stdin (a trailing CR is dropped) and writes, for each, one line\n"
            "of space-separated token ids, BOS first unless --no-bos. Ids match SentencePiece's exactly.\n"
            "\n"
            "  --tokenizer FILE  SentencePiece BPE model (tokenizer.model)\n"
            "  --no-bos          do not prepend the BOS id\n"
            "  --decode          read lines of ids, write the decoded text\n"
            "  --info            print vocabulary size, special ids and the model's sha256\n"
            "  --help            this text\n",
            PROG, PROG, PROG);
}

/* Drop the line end: "\n", and a "\r" before it (files written on Windows). */
static size_t chomp(char *line, size_t n)
{
    if (n && line[n - 1] == '\n') n--;
    if (n && line[n - 1] == '\r') n--;
    line[n] = '\0';
    return n;
}

static int encode_lines(const qh_tokenizer *t, int add_bos)
{
    char *line = NULL, num[16];
    size_t cap = 0;
    ssize_t got;
    qh_ids ids;
    qh_ids_init(&ids);
    int rc = QH_OK;
    while ((got = getline(&line, &cap, stdin)) >= 0) {
        size_t n = chomp(line, (size_t)got);
        if ((rc = qh_tokenizer_encode(t, line, n, add_bos, &ids))) break;
        for (size_t i = 0; i < ids.len; i++) {
            int len = snprintf(num, sizeof num, i ? " %d" : "%d", (int)ids.data[i]);
            fwrite(num, 1, (size_t)len, stdout);
        }
        putchar('\n');
    }
    if (!rc && ferror(stdin)) rc = qh_fail_errno(QH_ESYS, "reading stdin");
    free(line);
    qh_ids_free(&ids);
    return rc;
}

static int decode_lines(const qh_tokenizer *t)
{
    char *line = NULL;
    size_t cap = 0, lineno = 0, ids_cap = 0;
    ssize_t got;
    int32_t *ids = NULL;
    qh_text text;
    qh_text_init(&text);
    int rc = QH_OK;
    while (!rc && (got = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        chomp(line, (size_t)got);
        size_t n = 0;
        for (char *p = line, *tok; (tok = strtok(p, " \t")); p = NULL) {
            char *end;
            errno = 0;
            long v = strtol(tok, &end, 10);
            if (*end || errno || v < 0 || v > INT32_MAX) {
                rc = qh_fail(QH_EINPUT, "stdin line %zu: '%.40s' is not a token id", lineno, tok);
                break;
            }
            if (n == ids_cap) {
                size_t c = ids_cap ? 2 * ids_cap : 256;
                int32_t *p2 = realloc(ids, c * sizeof *ids);
                if (!p2) {
                    rc = qh_fail(QH_ESYS, "out of memory");
                    break;
                }
                ids = p2, ids_cap = c;
            }
            ids[n++] = (int32_t)v;
        }
        if (rc) break;
        if ((rc = qh_tokenizer_decode(t, ids, n, &text))) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", qh_last_error());
            rc = qh_fail(rc, "stdin line %zu: %s", lineno, msg);
            break;
        }
        fwrite(text.data, 1, text.len, stdout);
        putchar('\n');
    }
    if (!rc && ferror(stdin)) rc = qh_fail_errno(QH_ESYS, "reading stdin");
    free(line);
    free(ids);
    qh_text_free(&text);
    return rc;
}

int main(int argc, char **argv)
{
    const char *model = NULL;
    int add_bos = 1, decode = 0, info = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--tokenizer")) {
            if (i + 1 >= argc) return qh_report(PROG, qh_fail(QH_EINPUT, "--tokenizer needs a file"));
            model = argv[++i];
        } else if (!strncmp(a, "--tokenizer=", 12)) {
            model = a + 12;
        } else if (!strcmp(a, "--no-bos")) {
            add_bos = 0;
        } else if (!strcmp(a, "--decode")) {
            decode = 1;
        } else if (!strcmp(a, "--info")) {
            info = 1;
        } else {
            return qh_report(PROG, qh_fail(QH_EINPUT, "unknown argument '%s' (see --help)", a));
        }
    }
    if (!model) return qh_report(PROG, qh_fail(QH_EINPUT, "--tokenizer FILE is required (see --help)"));
    if (decode && info) return qh_report(PROG, qh_fail(QH_EINPUT, "--decode and --info exclude each other"));

    qh_tokenizer *t;
    int rc = qh_tokenizer_load(model, &t);
    if (rc) return qh_report(PROG, rc);
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    if (info) {
        printf("vocab_size %d\nbos_id %d\neos_id %d\nunk_id %d\npad_id %d\nsha256 %s\n", qh_tokenizer_vocab_size(t),
               qh_tokenizer_bos_id(t), qh_tokenizer_eos_id(t), qh_tokenizer_unk_id(t), qh_tokenizer_pad_id(t),
               qh_tokenizer_sha256(t));
    } else {
        rc = decode ? decode_lines(t) : encode_lines(t, add_bos);
    }
    qh_tokenizer_free(t);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (!rc) rc = qh_fail_errno(QH_ESYS, "writing stdout");
    }
    return rc ? qh_report(PROG, rc) : 0;
}
