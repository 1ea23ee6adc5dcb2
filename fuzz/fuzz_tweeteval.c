/* libFuzzer target: the TweetEval loader (core/tweeteval.c). The input holds three files
 * separated by lines "@@\n": mapping.txt, train_text.txt, train_labels.txt (missing parts are
 * missing files). A split that loads must hold count tweets of the stated lengths, NUL-ended,
 * with labels inside the mapping. */
#include "fuzz_util.h"

#include "tweeteval.h"

#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Truncation warnings go to stderr: silenced while the loader runs (not around libFuzzer's
     * own reports); a crash still leaves its artifact, rerun it with QHEAD_FUZZ_VERBOSE=1. */
    static int devnull = -2, saved = -1;
    if (devnull == -2) devnull = getenv("QHEAD_FUZZ_VERBOSE") ? -1 : open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull >= 0) {
        fflush(stderr);
        saved = dup(2);
        dup2(devnull, 2);
    }
    const uint8_t *part[3];
    size_t len[3];
    int k = fz_split(data, size, "@@\n", 3, part, len);
    const char *names[3] = {"mapping.txt", "train_text.txt", "train_labels.txt"};
    for (int i = 0; i < 3; i++) {
        if (i < k) fz_write(i, names[i], part[i], len[i]);
        else unlink(fz_path(i, names[i]));
    }
    const char *dir = fz_dir();
    qh_tweeteval_mapping map;
    int rc = qh_tweeteval_load_mapping(dir, &map);
    fz_check_error(rc);
    if (!rc) {
        if (map.num_classes < 1 || map.num_classes > QH_TWEETEVAL_MAX_CLASSES) abort();
        for (int c = 0; c < map.num_classes; c++)
            if (!map.names[c] || !map.names[c][0]) abort();
    }
    qh_tweeteval_split s;
    int src = qh_tweeteval_load_split(dir, "train", rc ? NULL : &map, &s);
    fz_check_error(src);
    if (!src) {
        size_t *counts = calloc((size_t)map.num_classes, sizeof *counts);
        if (!counts || qh_tweeteval_class_counts(&s, map.num_classes, counts) != QH_OK) abort();
        size_t total = 0;
        for (int c = 0; c < map.num_classes; c++) total += counts[c];
        if (total != s.count) abort();
        free(counts);
        qh_tweeteval_split_free(&s);
    }
    int trc = qh_tweeteval_load_split_texts(dir, "train", &s);
    fz_check_error(trc);
    if (!trc) {
        volatile char sink = 0;
        for (size_t i = 0; i < s.count; i++) {
            if (s.text_len[i] > QH_TWEET_MAX_BYTES || s.text[i][s.text_len[i]] != '\0') abort();
            for (size_t b = 0; b < s.text_len[i]; b++) sink ^= s.text[i][b];
        }
        (void)sink;
        qh_tweeteval_split_free(&s);
    }
    qh_tweeteval_mapping_free(&map);
    qh_tweeteval_mapping_free(&map); /* documented safe on a freed struct */
    if (devnull >= 0) {
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
    }
    return 0;
}
