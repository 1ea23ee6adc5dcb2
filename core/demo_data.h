/* The offline demo's synthetic TweetEval sentiment task (0 negative, 1 neutral, 2 positive).
 *
 * Tweets are assembled from a fixed inventory of words (mentions, hashtags, fillers, emoji,
 * t.co URLs) and carry their class mostly in their last word: the demo backbone's last-token
 * hidden state is dominated by that token's own embedding (see its init_range in demo.c), so a
 * linear head can learn the task. Not perfectly: about a fifth of the tweets end in a URL,
 * mention or hashtag after the cue word, and a fraction of labels disagree with their text
 * (label noise), so validation loss stays well above zero, as on the real task.
 *
 * Class balance follows TweetEval sentiment's train split (about 16% / 45% / 39%): each split
 * holds exactly round(p_k * n) tweets of class k, in shuffled order. Each split has its own
 * random stream derived from the seed, so changing --train leaves val and test unchanged. */
#ifndef QHEAD_DEMO_DATA_H
#define QHEAD_DEMO_DATA_H

#include <stddef.h>
#include <stdint.h>

#define QH_DEMO_NUM_CLASSES 3

typedef struct {
    uint64_t seed;
    size_t n_train, n_val, n_test;
    double label_noise; /* fraction of tweets whose label is another class than their text's */
} qh_demo_opts;

/* seed 1, 3000 / 300 / 1200 tweets, 12% label noise. */
void qh_demo_opts_default(qh_demo_opts *o);

extern const char *const qh_demo_class_names[QH_DEMO_NUM_CLASSES];
extern const double qh_demo_class_share[QH_DEMO_NUM_CLASSES];

/* The inventory: every word a tweet is made of (sorted, unique), except URLs' random tails and
 * the two emoji deliberately left out of the demo tokenizer (byte_fallback_words: they become
 * byte pieces, as rare emoji do with LLaMA-2's). Every word of the inventory becomes one piece
 * "▁word" of the demo tokenizer. */
typedef struct {
    char **words;
    size_t n;
    const char *byte_fallback_words[2];
} qh_demo_inventory;

int qh_demo_inventory_build(qh_demo_inventory *inv);
void qh_demo_inventory_free(qh_demo_inventory *inv);

/* The fixed prefix of every URL: its prefixes are pieces, its random tail is spelled out. */
#define QH_DEMO_URL_PREFIX "http://t.co/"

typedef struct {
    size_t n;
    char **text;     /* [n] NUL-terminated, one space between words, no newline */
    int32_t *labels; /* [n] */
} qh_demo_split;

/* Generate split 0 (train), 1 (val) or 2 (test) with n tweets. */
int qh_demo_make_split(const qh_demo_opts *o, int split, size_t n, qh_demo_split *out);
void qh_demo_split_free(qh_demo_split *s);

/* Write the whole task to dir (created): {train,val,test}_{text,labels}.txt, then mapping.txt
 * last, each file atomically. */
int qh_demo_write_task(const qh_demo_opts *o, const char *dir);

#endif
