/* The TweetEval loader (core/tweeteval.c) on task directories generated here, good and broken,
 * and data/fetch-tweeteval.sh installing from a file:// mirror or failing on an unreachable
 * host. Nothing here reads /work/shared or the network, or writes into the real data/. */
#include "testutil.h"

#include "error.h"
#include "fileio.h"
#include "tweeteval.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FETCH_SCRIPT QHEAD_FIXTURES "/../../data/fetch-tweeteval.sh"

/* A good 3-class task with the awkward but legal bits: CRLF everywhere in train and mapping,
 * no final newline, invalid UTF-8, an empty tweet, blanks around a label. */
static const char GOOD_MAPPING[] = "0\tnegative\r\n1\tneutral\r\n2\tpositive";
static const char GOOD_TRAIN_TEXT[] = "I love it\r\nmeh\r\n\xff\xfe bad bytes \x80\r\n\r\nno newline";
static const char GOOD_TRAIN_LABELS[] = "2\r\n1\r\n0\r\n 1 \r\n2";

static void put(const char *dir, const char *name, const char *content)
{
    free(tu_write_file(dir, name, content, strlen(content)));
}

static char *make_task(const char *root, const char *name)
{
    char *dir = tu_path(root, name);
    assert_int_equal(mkdir(dir, 0755), 0);
    put(dir, "mapping.txt", GOOD_MAPPING);
    put(dir, "train_text.txt", GOOD_TRAIN_TEXT);
    put(dir, "train_labels.txt", GOOD_TRAIN_LABELS);
    put(dir, "val_text.txt", "ok then\n");
    put(dir, "val_labels.txt", "1\n");
    put(dir, "test_text.txt", "a\nb\n");
    put(dir, "test_labels.txt", "0\n2\n");
    return dir;
}

static int setup(void **state)
{
    *state = tu_mkdtemp("tweeteval");
    return 0;
}

static int teardown(void **state)
{
    tu_rmtree(*state);
    free(*state);
    return 0;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle)) fail_msg("expected \"%s\" in \"%s\"", needle, haystack);
}

static void test_good_task(void **state)
{
    char *dir = make_task(*state, "good");
    qh_tweeteval_mapping m;
    assert_int_equal(qh_tweeteval_load_mapping(dir, &m), QH_OK);
    assert_int_equal(m.num_classes, 3);
    assert_string_equal(m.names[0], "negative");
    assert_string_equal(m.names[1], "neutral");
    assert_string_equal(m.names[2], "positive");

    qh_tweeteval_split s;
    assert_int_equal(qh_tweeteval_load_split(dir, "train", &m, &s), QH_OK);
    assert_int_equal(s.count, 5);
    assert_int_equal(s.truncated, 0);
    assert_string_equal(s.text[0], "I love it");
    assert_string_equal(s.text[1], "meh");
    const char bad_utf8[] = "\xff\xfe bad bytes \x80";
    assert_int_equal(s.text_len[2], sizeof bad_utf8 - 1);
    assert_memory_equal(s.text[2], bad_utf8, sizeof bad_utf8); /* with the NUL */
    assert_int_equal(s.text_len[3], 0);
    assert_string_equal(s.text[3], "");
    assert_string_equal(s.text[4], "no newline");
    const int32_t labels[] = {2, 1, 0, 1, 2};
    assert_memory_equal(s.labels, labels, sizeof labels);
    size_t counts[3];
    assert_int_equal(qh_tweeteval_class_counts(&s, m.num_classes, counts), QH_OK);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 2);
    assert_int_equal(counts[2], 2);
    qh_tweeteval_split_free(&s);
    qh_tweeteval_split_free(&s); /* twice is harmless */

    assert_int_equal(qh_tweeteval_load_split(dir, "val", &m, &s), QH_OK);
    assert_int_equal(s.count, 1);
    assert_string_equal(s.text[0], "ok then");
    qh_tweeteval_split_free(&s);

    /* Texts only: the labels file is not needed, and class counts are refused. */
    char *labels_path = tu_path(dir, "test_labels.txt");
    assert_int_equal(unlink(labels_path), 0);
    assert_int_equal(qh_tweeteval_load_split_texts(dir, "test", &s), QH_OK);
    assert_int_equal(s.count, 2);
    assert_null(s.labels);
    assert_string_equal(s.text[1], "b");
    assert_int_equal(qh_tweeteval_class_counts(&s, 3, counts), QH_EINPUT);
    qh_tweeteval_split_free(&s);

    qh_tweeteval_mapping_free(&m);
    qh_tweeteval_mapping_free(&m);
    free(labels_path);
    free(dir);
}

/* The emoji task's mapping has a third column; the name keeps everything after the id. */
static void test_mapping_with_extra_column(void **state)
{
    char *dir = make_task(*state, "emoji");
    put(dir, "mapping.txt", "0\t\xe2\x9d\xa4\t_red_heart_\n1\t\xf0\x9f\x98\x8d\t_smiling_face_\n2\tx\n");
    qh_tweeteval_mapping m;
    assert_int_equal(qh_tweeteval_load_mapping(dir, &m), QH_OK);
    assert_int_equal(m.num_classes, 3);
    assert_string_equal(m.names[0], "\xe2\x9d\xa4\t_red_heart_");
    qh_tweeteval_mapping_free(&m);
    free(dir);
}

/* Write `content` over one file of a fresh good task, load the mapping and the train split,
 * and check the load fails with QH_EINPUT and a message holding each of the needles. */
static void expect_broken(const char *root, const char *task, const char *file,
                          const char *content, const char *needle1, const char *needle2)
{
    char *dir = make_task(root, task);
    if (content) {
        put(dir, file, content);
    } else {
        char *p = tu_path(dir, file);
        assert_int_equal(unlink(p), 0);
        free(p);
    }
    qh_tweeteval_mapping m;
    qh_tweeteval_split s;
    qh_clear_error();
    int rc = qh_tweeteval_load_mapping(dir, &m);
    if (rc == QH_OK) {
        rc = qh_tweeteval_load_split(dir, "train", &m, &s);
        qh_tweeteval_mapping_free(&m);
        if (rc == QH_OK) qh_tweeteval_split_free(&s);
    } else {
        assert_null(m.names); /* nothing to free after a failure */
    }
    if (rc != QH_EINPUT) fail_msg("%s/%s: expected QH_EINPUT, got %d", task, file, rc);
    assert_null(strchr(qh_last_error(), '\n')); /* one line */
    assert_contains(qh_last_error(), needle1);
    if (needle2) assert_contains(qh_last_error(), needle2);
    free(dir);
}

static void test_bad_labels(void **state)
{
    const char *r = *state;
    expect_broken(r, "mismatch", "train_labels.txt", "2\n1\n0\n1\n",
                  "train_text.txt has 5 lines", "train_labels.txt has 4");
    expect_broken(r, "mismatch2", "train_labels.txt", "2\n1\n0\n1\n2\n0\n",
                  "train_text.txt has 5 lines", "train_labels.txt has 6");
    expect_broken(r, "notinmap", "train_labels.txt", "2\n3\n0\n1\n2\n", "train_labels.txt:2:",
                  "not a class id");
    expect_broken(r, "negative", "train_labels.txt", "2\n1\n-1\n1\n2\n", "train_labels.txt:3:",
                  "not a class id");
    expect_broken(r, "float", "train_labels.txt", "2\n1\n0\n1.0\n2\n", "train_labels.txt:4:",
                  "not an integer");
    expect_broken(r, "word", "train_labels.txt", "2\n1\n0\n1\npositive\n", "train_labels.txt:5:",
                  "not an integer");
    expect_broken(r, "emptyline", "train_labels.txt", "2\n\n0\n1\n2\n", "train_labels.txt:2:",
                  "empty line");
    expect_broken(r, "huge", "train_labels.txt", "99999999999999999999999\n1\n0\n1\n2\n",
                  "train_labels.txt:1:", "not a class id");
    expect_broken(r, "ctrl", "train_labels.txt", "2\n1\n0\n1\n\x1b[1m\n", "train_labels.txt:5:",
                  "\"?[1m\"");
}

static void test_missing_and_empty_files(void **state)
{
    const char *r = *state;
    expect_broken(r, "notext", "train_text.txt", NULL, "notext/train_text.txt", "no such file");
    expect_broken(r, "nolabels", "train_labels.txt", NULL, "nolabels/train_labels.txt",
                  "no such file");
    expect_broken(r, "nomapping", "mapping.txt", NULL, "nomapping/mapping.txt", "no such file");
    expect_broken(r, "emptytext", "train_text.txt", "", "emptytext/train_text.txt", "empty");
    expect_broken(r, "emptylabels", "train_labels.txt", "", "emptylabels/train_labels.txt",
                  "empty");
    expect_broken(r, "emptymap", "mapping.txt", "", "emptymap/mapping.txt", "empty");

    qh_tweeteval_mapping m;
    qh_tweeteval_split s;
    char *missing = tu_path(r, "no-such-task");
    assert_int_equal(qh_tweeteval_load_mapping(missing, &m), QH_EINPUT);
    assert_contains(qh_last_error(), "not a directory");
    assert_int_equal(qh_tweeteval_load_split_texts(missing, "train", &s), QH_EINPUT);
    free(missing);

    char *dir = make_task(r, "splitname");
    assert_int_equal(qh_tweeteval_load_mapping(dir, &m), QH_OK);
    assert_int_equal(qh_tweeteval_load_split(dir, "validation", &m, &s), QH_EINPUT);
    assert_contains(qh_last_error(), "unknown split \"validation\"");
    assert_int_equal(qh_tweeteval_load_split(dir, "../train", &m, &s), QH_EINPUT);
    qh_tweeteval_mapping_free(&m);
    assert_int_equal(qh_tweeteval_load_split(dir, "train", &m, &s), QH_EINPUT); /* no mapping */
    free(dir);
}

static void test_bad_mapping(void **state)
{
    const char *r = *state;
    expect_broken(r, "dup", "mapping.txt", "0\tnegative\n1\tneutral\n1\tpositive\n",
                  "mapping.txt:3:", "already given on line 2");
    expect_broken(r, "gap", "mapping.txt", "0\tnegative\n1\tneutral\n3\tpositive\n",
                  "mapping.txt:3:", "contiguous");
    expect_broken(r, "noname", "mapping.txt", "0\tnegative\n1\n2\tpositive\n", "mapping.txt:2:",
                  "<id><tab><class name>");
    expect_broken(r, "noid", "mapping.txt", "negative\n", "mapping.txt:1:", "expected");
    expect_broken(r, "blank", "mapping.txt", "0\tnegative\n1\tneutral\n2\tpositive\n\n",
                  "mapping.txt:4:", "expected");
    /* Only two classes: train's label 2 is then out of range. */
    expect_broken(r, "twoclasses", "mapping.txt", "0\tnegative\n1\tpositive\n",
                  "train_labels.txt:1:", "0..1");
}

/* Run f with stderr sent to a file; return what it printed. */
static char *capture_stderr(const char *dir, int (*f)(const char *, qh_tweeteval_split *),
                            const char *path, qh_tweeteval_split *s, int *rc)
{
    char *log = tu_path(dir, "stderr.log");
    fflush(stderr);
    int saved = dup(2);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    *rc = f(path, s);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char *text;
    assert_int_equal(qh_read_file(log, 1 << 20, &text, NULL), QH_OK);
    free(log);
    return text;
}

static void test_long_lines(void **state)
{
    const char *r = *state;
    const size_t cap = QH_TWEET_MAX_BYTES, big = (size_t)1 << 20;
    /* line 1: 1 MB of 'x' (CRLF); line 2: exactly the cap (kept whole, no warning);
     * line 3: cap - 1 bytes then a 2-byte character straddling the cap (cut before it);
     * line 4: short; line 5: 1 MB without a final newline. */
    size_t len = big + 2 + cap + 1 + (cap - 1) + 2 + 1 + 6 + big;
    char *data = malloc(len), *p = data;
    memset(p, 'x', big), p += big, *p++ = '\r', *p++ = '\n';
    memset(p, 'y', cap), p += cap, *p++ = '\n';
    memset(p, 'z', cap - 1), p += cap - 1, *p++ = '\xc3', *p++ = '\xa9', *p++ = '\n';
    memcpy(p, "short\n", 6), p += 6;
    memset(p, 'w', big), p += big;
    assert_int_equal((size_t)(p - data), len);
    char *path = tu_write_file(r, "long.txt", data, len);

    qh_tweeteval_split s;
    int rc;
    char *err = capture_stderr(r, qh_tweeteval_read_texts, path, &s, &rc);
    assert_int_equal(rc, QH_OK);
    assert_int_equal(s.count, 5);
    assert_int_equal(s.truncated, 3);
    assert_int_equal(s.text_len[0], cap);
    assert_int_equal(s.text_len[1], cap);
    assert_int_equal(s.text_len[2], cap - 1);
    assert_int_equal(s.text_len[4], cap);
    for (size_t i = 0; i < cap; i++)
        if (s.text[0][i] != 'x' || s.text[1][i] != 'y' || s.text[4][i] != 'w') fail_msg("byte %zu", i);
    assert_int_equal(s.text[0][cap], '\0');
    assert_int_equal(s.text[2][cap - 1], '\0');
    assert_string_equal(s.text[3], "short");
    assert_int_equal(tu_count_lines(err), 3);
    assert_contains(err, "long.txt:1: tweet of 1048576 bytes truncated to 65536");
    assert_contains(err, "long.txt:3: tweet of 65537 bytes truncated to 65535");
    assert_contains(err, "long.txt:5:");
    qh_tweeteval_split_free(&s);
    free(err);
    free(path);
    free(data);

    /* Many long lines: a few warnings, then one summary line. */
    const int lines = 12;
    size_t line_len = cap + 10;
    data = malloc((size_t)lines * (line_len + 1));
    for (int i = 0; i < lines; i++) {
        memset(data + (size_t)i * (line_len + 1), 'a' + i, line_len);
        data[(size_t)i * (line_len + 1) + line_len] = '\n';
    }
    path = tu_write_file(r, "many.txt", data, (size_t)lines * (line_len + 1));
    err = capture_stderr(r, qh_tweeteval_read_texts, path, &s, &rc);
    assert_int_equal(rc, QH_OK);
    assert_int_equal(s.truncated, lines);
    assert_int_equal(s.text[11][0], 'a' + 11);
    assert_int_equal(tu_count_lines(err), 6);
    assert_contains(err, "7 more tweets longer than 65536 bytes truncated");
    qh_tweeteval_split_free(&s);
    free(err);
    free(path);
    free(data);
}

/* A file over the 1 GiB cap is refused from its size; a sparse file costs no disk. */
static void test_file_size_cap(void **state)
{
    char *path = tu_path(*state, "huge_text.txt");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)QH_TWEETEVAL_MAX_FILE_BYTES + 1), 0);
    close(fd);
    qh_tweeteval_split s;
    assert_int_equal(qh_tweeteval_read_texts(path, &s), QH_EINPUT);
    assert_contains(qh_last_error(), "huge_text.txt");
    assert_contains(qh_last_error(), "more than");
    assert_null(s.text);
    free(path);
}

/* ---- data/fetch-tweeteval.sh ---- */

static int run_fetch(const char *root, const char *base_url, const char *task, char **out,
                     char **err)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cd / && TMPDIR='%s/tmp' QHEAD_TWEETEVAL_BASE_URL='%s' QHEAD_TWEETEVAL_DEST='%s/dest' "
             "bash '%s' %s",
             root, base_url, root, FETCH_SCRIPT, task);
    return tu_run(cmd, out, err);
}

/* Nothing but the installed task directories may remain: no temporaries anywhere. */
static void assert_no_leftovers(const char *root, const char *listing_expected)
{
    char cmd[4200], *out;
    /* In a subshell: tu_run appends "</dev/null", which would otherwise feed tr, not find. */
    snprintf(cmd, sizeof cmd, "(cd '%s' && find tmp dest -mindepth 1 | sort | tr '\\n' ' ')", root);
    assert_int_equal(tu_run(cmd, &out, NULL), 0);
    assert_string_equal(out, listing_expected);
    free(out);
}

static void test_fetch_script(void **state)
{
    const char *r = *state;
    assert_true(qh_path_exists(FETCH_SCRIPT));
    char *mirror = tu_path(r, "mirror"), *stance = tu_path(r, "mirror/stance");
    char *tmp = tu_path(r, "tmp");
    assert_int_equal(mkdir(mirror, 0755), 0);
    assert_int_equal(mkdir(stance, 0755), 0);
    assert_int_equal(mkdir(tmp, 0755), 0);
    free(make_task(mirror, "sentiment"));
    free(make_task(stance, "abortion"));
    char base[4200];
    snprintf(base, sizeof base, "file://%s/", mirror);

    char *out, *err;
    int rc = run_fetch(r, base, "", &out, &err); /* default task: sentiment */
    if (rc != 0) fail_msg("fetch failed (%d): %s", rc, err);
    assert_contains(out, "train        5 tweets");
    assert_contains(out, "val          1 tweets");
    assert_contains(out, "test         2 tweets");
    free(out), free(err);
    char *task = tu_path(r, "dest/sentiment");
    qh_tweeteval_mapping m;
    qh_tweeteval_split s;
    assert_int_equal(qh_tweeteval_load_mapping(task, &m), QH_OK);
    assert_int_equal(qh_tweeteval_load_split(task, "train", &m, &s), QH_OK);
    assert_int_equal(s.count, 5);
    qh_tweeteval_split_free(&s);
    qh_tweeteval_mapping_free(&m);
    free(task);

    /* A nested task; then fetching sentiment again replaces the copy in place. */
    assert_int_equal(run_fetch(r, base, "stance/abortion", &out, &err), 0);
    free(out), free(err);
    char *abortion = tu_path(r, "dest/stance/abortion/test_labels.txt");
    assert_true(qh_path_exists(abortion));
    free(abortion);
    put(mirror, "sentiment/val_text.txt", "changed\n");
    assert_int_equal(run_fetch(r, base, "sentiment", &out, &err), 0);
    free(out), free(err);
    char *val = tu_path(r, "dest/sentiment/val_text.txt"), *text;
    assert_int_equal(qh_read_file(val, 100, &text, NULL), QH_OK);
    assert_string_equal(text, "changed\n");
    free(text), free(val);
    const char *installed =
        "dest/sentiment dest/sentiment/mapping.txt dest/sentiment/test_labels.txt "
        "dest/sentiment/test_text.txt dest/sentiment/train_labels.txt "
        "dest/sentiment/train_text.txt dest/sentiment/val_labels.txt dest/sentiment/val_text.txt "
        "dest/stance dest/stance/abortion dest/stance/abortion/mapping.txt "
        "dest/stance/abortion/test_labels.txt dest/stance/abortion/test_text.txt "
        "dest/stance/abortion/train_labels.txt dest/stance/abortion/train_text.txt "
        "dest/stance/abortion/val_labels.txt dest/stance/abortion/val_text.txt ";
    assert_no_leftovers(r, installed);

    /* Mirror with mismatched line counts: refused, nothing installed. */
    free(make_task(mirror, "irony"));
    put(mirror, "irony/val_labels.txt", "1\n0\n");
    rc = run_fetch(r, base, "irony", &out, &err);
    assert_true(rc > 0);
    assert_contains(err, "val_text.txt has 1 lines but val_labels.txt has 2");
    free(out), free(err);
    /* A missing file on the mirror (hate was never made). */
    rc = run_fetch(r, base, "hate", &out, &err);
    assert_true(rc > 0);
    assert_contains(err, "hate/mapping.txt");
    free(out), free(err);
    /* Unknown task: usage error. */
    assert_int_equal(run_fetch(r, base, "sarcasm", &out, &err), 2);
    assert_contains(err, "unknown task 'sarcasm'");
    free(out), free(err);
    /* Unreachable host (port 9, discard, nothing listens): one clear line, nothing written. */
    rc = run_fetch(r, "http://127.0.0.1:9/", "emotion", &out, &err);
    assert_true(rc > 0);
    assert_contains(err, "http://127.0.0.1:9/emotion/mapping.txt");
    assert_contains(err, "offline");
    assert_int_equal(tu_count_lines(err), 1);
    free(out), free(err);
    assert_no_leftovers(r, installed);

    free(mirror), free(stance), free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_task, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mapping_with_extra_column, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_empty_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_size_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_script, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
