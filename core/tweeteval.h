/* Loader for the TweetEval dataset layout (any task: sentiment, emotion, stance/abortion, ...).
 *
 * A task directory (data/tweeteval/<task>/, see data/README.md) holds
 *   mapping.txt                       "<id>\t<name>" per line, ids 0..K-1, each exactly once
 *   {train,val,test}_text.txt         one tweet per line
 *   {train,val,test}_labels.txt       one integer class id per line, line i labels tweet i
 *
 * Rules, the same for every file:
 *   - lines end in "\n" or "\r\n" (the "\r" is dropped); the last line may lack its newline;
 *   - an empty file is an error, and so is a file larger than QH_TWEETEVAL_MAX_FILE_BYTES,
 *     refused from its size before anything is read;
 *   - tweet text is kept byte for byte (invalid UTF-8 included: the tokenizer's byte fallback
 *     copes with it); an empty line is an empty tweet;
 *   - a tweet longer than QH_TWEET_MAX_BYTES is cut to at most that many bytes (backing off to
 *     the start of a UTF-8 sequence so no character is split) with a warning on stderr naming
 *     the file and line. Real tweets are at most 280 characters (about 1 KB of UTF-8); a
 *     longer line is damage, and truncating it keeps one bad line from costing a run;
 *   - labels: optional blanks around a decimal integer that is an id from mapping.txt.
 *     Anything else (empty, "1.0", "-1", "7" with 4 classes) is QH_EINPUT naming the labels
 *     file and the 1-based line;
 *   - text and labels files of a split must have the same number of lines.
 * Failures return QH_EINPUT (bad files) or QH_ESYS (out of memory) with one line recorded by
 * qh_fail (see error.h), and leave the output struct zeroed: nothing to free. */
#ifndef QHEAD_TWEETEVAL_H
#define QHEAD_TWEETEVAL_H

#include <stddef.h>
#include <stdint.h>

/* Longest tweet kept, in bytes (excluding the line ending); longer lines are truncated. */
#define QH_TWEET_MAX_BYTES ((size_t)64 * 1024)
/* Largest text or labels file read (1 GiB; the largest TweetEval file is a few MB). */
#define QH_TWEETEVAL_MAX_FILE_BYTES ((size_t)1 << 30)
/* Largest mapping.txt accepted, and most classes (TweetEval's emoji task has 20). */
#define QH_TWEETEVAL_MAX_MAPPING_BYTES ((size_t)1 << 20)
#define QH_TWEETEVAL_MAX_CLASSES 4096

typedef struct {
    int num_classes; /* K, from the number of lines of mapping.txt */
    char **names;    /* names[id] for id in 0..K-1, NUL-terminated, owned */
} qh_tweeteval_mapping;

typedef struct {
    size_t count;        /* number of tweets (lines) */
    const char **text;   /* [count] tweet i, NUL-terminated, pointing into buf */
    size_t *text_len;    /* [count] bytes of tweet i; authoritative if a tweet holds a NUL byte */
    int32_t *labels;     /* [count] class ids in 0..K-1, or NULL when loaded without labels */
    size_t truncated;    /* how many tweets were cut to QH_TWEET_MAX_BYTES */
    char *buf;           /* owns every tweet's bytes */
} qh_tweeteval_split;

/* Read <task_dir>/mapping.txt. The class name is the rest of the line after the id and the
 * tab (or run of blanks) that follows it, so the emoji task's "0\t❤\t_red_heart_" names class
 * 0 "❤\t_red_heart_". Errors: a missing file, an empty file, a line without an id or a name,
 * an id that appears twice (naming both lines) or lies outside 0..K-1 for a K-line file (the
 * ids must be contiguous), more than QH_TWEETEVAL_MAX_CLASSES lines. */
int qh_tweeteval_load_mapping(const char *task_dir, qh_tweeteval_mapping *out);
/* Safe on a zeroed or already-freed struct. */
void qh_tweeteval_mapping_free(qh_tweeteval_mapping *m);

/* Load split "train", "val" or "test" of a task: <split>_text.txt and <split>_labels.txt,
 * checking every label against the mapping. A missing file is an error naming its path. */
int qh_tweeteval_load_split(const char *task_dir, const char *split,
                            const qh_tweeteval_mapping *mapping, qh_tweeteval_split *out);
/* Load only the tweets of a split (labels stays NULL; the labels file is not needed), for
 * prediction on data whose labels are unknown. */
int qh_tweeteval_load_split_texts(const char *task_dir, const char *split,
                                  qh_tweeteval_split *out);
/* Read any file of one tweet per line under the rules above (labels stays NULL). */
int qh_tweeteval_read_texts(const char *path, qh_tweeteval_split *out);
/* Safe on a zeroed or already-freed struct. */
void qh_tweeteval_split_free(qh_tweeteval_split *s);

/* counts[k] = number of tweets of class k, for k in 0..num_classes-1 (counts is filled, not
 * added to). QH_EINPUT when the split has no labels or a label lies outside 0..num_classes-1. */
int qh_tweeteval_class_counts(const qh_tweeteval_split *s, int num_classes, size_t *counts);

/* 1 when split is "train", "val" or "test", else 0. */
int qh_tweeteval_is_split_name(const char *split);

#endif
