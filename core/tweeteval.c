/* TweetEval task directories: mapping.txt plus one text and one labels file per split.
 * The rules (line endings, caps, what is an error) are documented in tweeteval.h. */
#include "tweeteval.h"

#include "error.h"
#include "fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per file, only the first few truncations are reported line by line; a file of a million
 * oversized lines would otherwise bury the terminal. The rest are summed up in one line. */
#define MAX_TRUNCATION_WARNINGS 5

static const char *const SPLIT_NAMES[] = {"train", "val", "test"};

int qh_tweeteval_is_split_name(const char *split)
{
    if (!split) return 0;
    for (size_t i = 0; i < sizeof SPLIT_NAMES / sizeof SPLIT_NAMES[0]; i++)
        if (strcmp(split, SPLIT_NAMES[i]) == 0) return 1;
    return 0;
}

static int join_path(char *dst, size_t dst_size, const char *dir, const char *name)
{
    int n = snprintf(dst, dst_size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= dst_size) return qh_fail(QH_EINPUT, "%s/%s: path too long", dir, name);
    return QH_OK;
}

static int check_task_dir(const char *task_dir)
{
    if (!task_dir || !*task_dir) return qh_fail(QH_EINPUT, "no TweetEval task directory given");
    if (!qh_is_dir(task_dir))
        return qh_fail(QH_EINPUT,
                       "%s: not a directory (expected a TweetEval task directory such as "
                       "data/tweeteval/sentiment; data/fetch-tweeteval.sh downloads one)",
                       task_dir);
    return QH_OK;
}

static int fail_missing(const char *path)
{
    return qh_fail(QH_EINPUT, "%s: no such file (a TweetEval task directory holds mapping.txt "
                   "and {train,val,test}_{text,labels}.txt)", path);
}

/* Read a whole data file, refusing a missing or empty one with a message that says which. */
static int read_data_file(const char *path, size_t max_bytes, char **buf, size_t *len)
{
    if (!qh_path_exists(path)) return fail_missing(path);
    int rc = qh_read_file(path, max_bytes, buf, len);
    if (rc != QH_OK) return rc;
    if (*len == 0) {
        free(*buf);
        *buf = NULL;
        return qh_fail(QH_EINPUT, "%s: file is empty", path);
    }
    return QH_OK;
}

/* Lines in buf: every "\n" ends one, and bytes after the last "\n" form one more. */
static size_t count_lines(const char *buf, size_t len)
{
    size_t n = 0;
    for (const char *p = buf, *end = buf + len; (p = memchr(p, '\n', (size_t)(end - p))); p++) n++;
    if (len > 0 && buf[len - 1] != '\n') n++;
    return n;
}

/* Step over one line starting at *pos: returns its first byte and sets *line_len to its length
 * without the "\n" and without a "\r" just before it (CRLF files, and a final "...\r"). */
static const char *next_line(const char *buf, size_t len, size_t *pos, size_t *line_len)
{
    const char *start = buf + *pos;
    const char *nl = memchr(start, '\n', len - *pos);
    size_t n = nl ? (size_t)(nl - start) : len - *pos;
    *pos += n + (nl ? 1 : 0);
    if (n > 0 && start[n - 1] == '\r') n--;
    *line_len = n;
    return start;
}

/* Copy up to a few bytes of s into out for an error message, with control bytes shown as '?'
 * so the message stays one readable line. */
static const char *quote_snippet(const char *s, size_t n, char *out, size_t out_size)
{
    size_t keep = n < out_size - 4 ? n : out_size - 4;
    for (size_t i = 0; i < keep; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (keep < n) memcpy(out + keep, "...", 4);
    else out[keep] = '\0';
    return out;
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

/* Length to keep of an over-long tweet: QH_TWEET_MAX_BYTES, moved back (by at most 3 bytes)
 * while the first dropped byte is a UTF-8 continuation byte, so no character is cut in two. */
static size_t truncation_point(const char *s)
{
    size_t cut = QH_TWEET_MAX_BYTES;
    while (cut > QH_TWEET_MAX_BYTES - 3 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;
    return cut;
}

void qh_tweeteval_split_free(qh_tweeteval_split *s)
{
    if (!s) return;
    free(s->text);
    free(s->text_len);
    free(s->labels);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

int qh_tweeteval_read_texts(const char *path, qh_tweeteval_split *out)
{
    memset(out, 0, sizeof *out);
    char *buf;
    size_t len;
    int rc = read_data_file(path, QH_TWEETEVAL_MAX_FILE_BYTES, &buf, &len);
    if (rc != QH_OK) return rc;

    size_t n = count_lines(buf, len);
    const char **text = calloc(n, sizeof *text);
    size_t *text_len = calloc(n, sizeof *text_len);
    if (!text || !text_len) {
        free(text);
        free(text_len);
        free(buf);
        return qh_fail(QH_ESYS, "%s: out of memory for %zu tweets", path, n);
    }

    /* Compact the tweets in place, each followed by a NUL where its line ending was. The write
     * offset never passes the read offset: a tweet of L bytes plus its NUL fits in the L bytes
     * plus line ending it came from, and the last line without a newline has the NUL that
     * qh_read_file put after the file's end. */
    size_t pos = 0, written = 0, truncated = 0;
    for (size_t i = 0; i < n; i++) {
        size_t line_len;
        const char *line = next_line(buf, len, &pos, &line_len);
        if (line_len > QH_TWEET_MAX_BYTES) {
            size_t keep = truncation_point(line);
            if (++truncated <= MAX_TRUNCATION_WARNINGS)
                fprintf(stderr, "warning: %s:%zu: tweet of %zu bytes truncated to %zu (limit %zu)\n",
                        path, i + 1, line_len, keep, QH_TWEET_MAX_BYTES);
            line_len = keep;
        }
        memmove(buf + written, line, line_len);
        buf[written + line_len] = '\0';
        text_len[i] = line_len;
        written += line_len + 1;
    }
    if (truncated > MAX_TRUNCATION_WARNINGS)
        fprintf(stderr, "warning: %s: %zu more tweets longer than %zu bytes truncated\n", path,
                truncated - MAX_TRUNCATION_WARNINGS, QH_TWEET_MAX_BYTES);

    /* Give back what truncation freed (a 100 MB line leaves 64 KB of tweet). */
    if (written < len / 2) {
        char *smaller = realloc(buf, written);
        if (smaller) buf = smaller;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        text[i] = buf + off;
        off += text_len[i] + 1;
    }

    out->count = n;
    out->text = text;
    out->text_len = text_len;
    out->truncated = truncated;
    out->buf = buf;
    return QH_OK;
}

/* Parse one label line (blanks around a decimal integer) and check it is an id in 0..K-1. */
static int parse_label(const char *line, size_t n, const char *path, size_t line_no,
                       int num_classes, int32_t *label)
{
    size_t b = 0, e = n;
    while (b < e && is_blank(line[b])) b++;
    while (e > b && is_blank(line[e - 1])) e--;
    char snippet[40];
    if (b == e)
        return qh_fail(QH_EINPUT, "%s:%zu: empty line where a label (a class id 0..%d) belongs",
                       path, line_no, num_classes - 1);
    size_t i = b;
    int negative = line[i] == '-';
    if (line[i] == '-' || line[i] == '+') i++;
    if (i == e)
        return qh_fail(QH_EINPUT, "%s:%zu: label \"%s\" is not an integer", path, line_no,
                       quote_snippet(line + b, e - b, snippet, sizeof snippet));
    /* Stop accumulating past any class id; the digits are still checked to the end so "12x"
     * and "99999999999999999999" get the right complaint. */
    long long value = 0;
    for (; i < e; i++) {
        if (line[i] < '0' || line[i] > '9')
            return qh_fail(QH_EINPUT, "%s:%zu: label \"%s\" is not an integer", path, line_no,
                           quote_snippet(line + b, e - b, snippet, sizeof snippet));
        if (value <= QH_TWEETEVAL_MAX_CLASSES) value = value * 10 + (line[i] - '0');
    }
    if (negative || value >= num_classes)
        return qh_fail(QH_EINPUT, "%s:%zu: label %s is not a class id (mapping.txt has ids 0..%d)",
                       path, line_no, quote_snippet(line + b, e - b, snippet, sizeof snippet),
                       num_classes - 1);
    *label = (int32_t)value;
    return QH_OK;
}

static int read_labels(const char *labels_path, const char *text_path, size_t expected,
                       int num_classes, int32_t **labels_out)
{
    *labels_out = NULL;
    char *buf;
    size_t len;
    int rc = read_data_file(labels_path, QH_TWEETEVAL_MAX_FILE_BYTES, &buf, &len);
    if (rc != QH_OK) return rc;
    size_t n = count_lines(buf, len);
    if (n != expected) {
        free(buf);
        return qh_fail(QH_EINPUT, "%s has %zu lines but %s has %zu: they must match line for line",
                       text_path, expected, labels_path, n);
    }
    int32_t *labels = malloc(n * sizeof *labels);
    if (!labels) {
        free(buf);
        return qh_fail(QH_ESYS, "%s: out of memory for %zu labels", labels_path, n);
    }
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t line_len;
        const char *line = next_line(buf, len, &pos, &line_len);
        rc = parse_label(line, line_len, labels_path, i + 1, num_classes, &labels[i]);
        if (rc != QH_OK) {
            free(labels);
            free(buf);
            return rc;
        }
    }
    free(buf);
    *labels_out = labels;
    return QH_OK;
}

static int split_paths(const char *task_dir, const char *split, char *text_path,
                       char *labels_path, size_t size)
{
    int rc = check_task_dir(task_dir);
    if (rc != QH_OK) return rc;
    if (!qh_tweeteval_is_split_name(split))
        return qh_fail(QH_EINPUT, "unknown split \"%s\" (expected train, val or test)",
                       split ? split : "(null)");
    char name[64];
    snprintf(name, sizeof name, "%s_text.txt", split);
    if ((rc = join_path(text_path, size, task_dir, name)) != QH_OK) return rc;
    snprintf(name, sizeof name, "%s_labels.txt", split);
    return join_path(labels_path, size, task_dir, name);
}

int qh_tweeteval_load_split_texts(const char *task_dir, const char *split,
                                  qh_tweeteval_split *out)
{
    memset(out, 0, sizeof *out);
    char text_path[4096], labels_path[4096];
    int rc = split_paths(task_dir, split, text_path, labels_path, sizeof text_path);
    if (rc != QH_OK) return rc;
    return qh_tweeteval_read_texts(text_path, out);
}

int qh_tweeteval_load_split(const char *task_dir, const char *split,
                            const qh_tweeteval_mapping *mapping, qh_tweeteval_split *out)
{
    memset(out, 0, sizeof *out);
    if (!mapping || mapping->num_classes < 1)
        return qh_fail(QH_EINPUT, "%s: no class mapping loaded for split %s",
                       task_dir ? task_dir : "(null)", split ? split : "(null)");
    char text_path[4096], labels_path[4096];
    int rc = split_paths(task_dir, split, text_path, labels_path, sizeof text_path);
    if (rc != QH_OK) return rc;
    /* Name a missing labels file before spending time on a large text file. */
    if (qh_path_exists(text_path) && !qh_path_exists(labels_path))
        return fail_missing(labels_path);
    qh_tweeteval_split s;
    if ((rc = qh_tweeteval_read_texts(text_path, &s)) != QH_OK) return rc;
    rc = read_labels(labels_path, text_path, s.count, mapping->num_classes, &s.labels);
    if (rc != QH_OK) {
        qh_tweeteval_split_free(&s);
        return rc;
    }
    *out = s;
    return QH_OK;
}

int qh_tweeteval_class_counts(const qh_tweeteval_split *s, int num_classes, size_t *counts)
{
    if (!s->labels) return qh_fail(QH_EINPUT, "class counts need labels, and this split has none");
    if (num_classes < 1) return qh_fail(QH_EINPUT, "class counts need at least one class");
    memset(counts, 0, (size_t)num_classes * sizeof *counts);
    for (size_t i = 0; i < s->count; i++) {
        if (s->labels[i] < 0 || s->labels[i] >= num_classes)
            return qh_fail(QH_EINPUT, "tweet %zu has label %d, outside 0..%d", i + 1,
                           (int)s->labels[i], num_classes - 1);
        counts[s->labels[i]]++;
    }
    return QH_OK;
}

/* ---- mapping.txt ---- */

void qh_tweeteval_mapping_free(qh_tweeteval_mapping *m)
{
    if (!m) return;
    if (m->names)
        for (int k = 0; k < m->num_classes; k++) free(m->names[k]);
    free(m->names);
    memset(m, 0, sizeof *m);
}

/* One mapping line: "<id><tab or blanks><name>". Checks the id against the K-line file and
 * against the ids seen so far (line_of_id[id] is the 1-based line that gave it, 0 if none). */
static int parse_mapping_line(const char *line, size_t n, const char *path, size_t line_no,
                              size_t num_lines, size_t *line_of_id, char **names)
{
    char snippet[40];
    size_t i = 0;
    size_t id = 0;
    while (i < n && line[i] >= '0' && line[i] <= '9') {
        if (id <= num_lines) id = id * 10 + (size_t)(line[i] - '0'); /* saturate past range */
        i++;
    }
    size_t name_start = i;
    while (name_start < n && is_blank(line[name_start])) name_start++;
    size_t name_end = n;
    while (name_end > name_start && is_blank(line[name_end - 1])) name_end--;
    if (i == 0 || name_start == i || name_start == name_end)
        return qh_fail(QH_EINPUT, "%s:%zu: expected \"<id><tab><class name>\", got \"%s\"", path,
                       line_no, quote_snippet(line, n, snippet, sizeof snippet));
    if (memchr(line + name_start, '\0', name_end - name_start))
        return qh_fail(QH_EINPUT, "%s:%zu: class name holds a NUL byte (a damaged file?)", path, line_no);
    if (id >= num_lines)
        return qh_fail(QH_EINPUT, "%s:%zu: class id %s is out of range: ids must be contiguous, "
                       "0..%zu for this %zu-line file", path, line_no,
                       quote_snippet(line, i, snippet, sizeof snippet), num_lines - 1, num_lines);
    if (line_of_id[id])
        return qh_fail(QH_EINPUT, "%s:%zu: class id %zu already given on line %zu", path, line_no,
                       id, line_of_id[id]);
    size_t name_len = name_end - name_start;
    char *name = malloc(name_len + 1);
    if (!name) return qh_fail(QH_ESYS, "%s: out of memory", path);
    memcpy(name, line + name_start, name_len);
    name[name_len] = '\0';
    names[id] = name;
    line_of_id[id] = line_no;
    return QH_OK;
}

int qh_tweeteval_load_mapping(const char *task_dir, qh_tweeteval_mapping *out)
{
    memset(out, 0, sizeof *out);
    int rc = check_task_dir(task_dir);
    if (rc != QH_OK) return rc;
    char path[4096];
    if ((rc = join_path(path, sizeof path, task_dir, "mapping.txt")) != QH_OK) return rc;
    char *buf;
    size_t len;
    if ((rc = read_data_file(path, QH_TWEETEVAL_MAX_MAPPING_BYTES, &buf, &len)) != QH_OK) return rc;

    size_t n = count_lines(buf, len);
    if (n > QH_TWEETEVAL_MAX_CLASSES) {
        free(buf);
        return qh_fail(QH_EINPUT, "%s: %zu classes, more than the %d supported", path, n,
                       QH_TWEETEVAL_MAX_CLASSES);
    }
    char **names = calloc(n, sizeof *names);
    size_t *line_of_id = calloc(n, sizeof *line_of_id);
    if (!names || !line_of_id) {
        rc = qh_fail(QH_ESYS, "%s: out of memory", path);
        goto done;
    }
    size_t pos = 0;
    for (size_t i = 0; i < n && rc == QH_OK; i++) {
        size_t line_len;
        const char *line = next_line(buf, len, &pos, &line_len);
        rc = parse_mapping_line(line, line_len, path, i + 1, n, line_of_id, names);
    }
    /* n lines with distinct ids below n: every id 0..n-1 is present, no gaps to check. */
done:
    if (rc != QH_OK && names)
        for (size_t k = 0; k < n; k++) free(names[k]);
    if (rc == QH_OK) {
        out->num_classes = (int)n;
        out->names = names;
    } else {
        free(names);
    }
    free(line_of_id);
    free(buf);
    return rc;
}
