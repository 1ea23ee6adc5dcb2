#include "demo_data.h"

#include "error.h"
#include "fileio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const qh_demo_class_names[QH_DEMO_NUM_CLASSES] = {"negative", "neutral", "positive"};
/* TweetEval sentiment's train split: 7,093 / 20,673 / 17,849 of 45,615. */
const double qh_demo_class_share[QH_DEMO_NUM_CLASSES] = {0.16, 0.45, 0.39};

void qh_demo_opts_default(qh_demo_opts *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->n_train = 3000, o->n_val = 300, o->n_test = 1200;
    o->label_noise = 0.12;
}

/* ---- the inventory ------------------------------------------------------------------------- */

/* Openings: class-neutral context. The class comes from the cue word that follows. */
static const char *const PHRASES[] = {
    "just watched the new episode and it was", "the game last night was", "can't believe the concert on friday was",
    "the new iphone update is", "my first day at the new job was", "watching the debate tonight and it is",
    "apple announced the new ipad and it looks", "the weather in london this weekend is",
    "saw the new star wars movie and it was", "the season finale of game of thrones was",
    "going to the beach tomorrow with friends", "the traffic on the way to work was",
    "heard the new album by taylor swift and it is", "the speech about the economy was",
    "the lakers game on sunday was", "reading the news about the election and it is", "my coffee this morning was",
    "the new netflix series is", "just got back from the gym and feeling", "the customer service at the airport was",
    "dinner with my family tonight was", "the ending of the book was", "our trip to paris next month will be",
    "the new phone from samsung is", "the match against madrid on saturday was",
    "the band played the new song live and it was", "my sister's birthday party was", "the meeting at work today was",
    "the pizza from that place downtown is", "the 3rd quarter of the game was", "the new update for my laptop is",
    "the premiere of the show on may 5th was", "the lecture this afternoon was", "the stadium on thursday was",
    "the interview with the coach was", "this year's festival lineup is", "the new stadium in dallas looks",
    "the 2nd half of the match was", "the new video from the band is", "the trailer for the sequel is",
};
static const char *const CUES[QH_DEMO_NUM_CLASSES][20] = {
    {"awful", "terrible", "horrible", "disappointing", "boring", "annoying", "pathetic", "disgusting", "ruined",
     "broken", "sad", "depressing", "frustrating", "ugly", "useless", "worst", "stupid", "overrated", "painful",
     "gross"},
    {"okay", "fine", "average", "ordinary", "scheduled", "announced", "normal", "alright", "typical", "live",
     "available", "confirmed", "expected", "underway", "standard", "updated", "unchanged", "official", "ongoing",
     "usual"},
    {"amazing", "awesome", "great", "wonderful", "perfect", "fantastic", "beautiful", "brilliant", "incredible",
     "lovely", "fun", "excellent", "exciting", "best", "cool", "adorable", "epic", "hilarious", "gorgeous",
     "delightful"},
};
/* Emoji after the cue word agree with it. U+1F624 and U+1F4F0 are left out of the tokenizer, so
 * they become byte pieces (byte fallback) as rare emoji do in LLaMA-2's vocabulary. */
#define NOT_IN_VOCAB_1 "\xF0\x9F\x98\xA4" /* 😤 */
#define NOT_IN_VOCAB_2 "\xF0\x9F\x93\xB0" /* 📰 */
static const char *const EMOJI[QH_DEMO_NUM_CLASSES][6] = {
    {"\xF0\x9F\x98\xA1", "\xF0\x9F\x98\xA2", "\xF0\x9F\x92\x94", ":(", NOT_IN_VOCAB_1, "\xF0\x9F\x91\x8E"},
    {"\xF0\x9F\x91\x80", "\xF0\x9F\x93\xBA", NOT_IN_VOCAB_2, "\xF0\x9F\x8F\x88", "\xF0\x9F\x93\x85", "\xF0\x9F\x93\xA2"},
    {"\xF0\x9F\x98\x8D", "\xF0\x9F\x98\x8A", "\xE2\x9D\xA4", "\xF0\x9F\x8E\x89", ":)", "\xF0\x9F\x91\x8D"},
};
static const char *const INTENSIFIERS[] = {"so", "really", "very", "pretty", "totally", "absolutely", "kinda"};
static const char *const HASHTAGS[] = {"#tbt", "#nfl", "#music", "#news", "#gameofthrones", "#starwars", "#apple",
                                       "#london", "#friday", "#netflix", "#election", "#travel", "#food", "#work",
                                       "#mondaymotivation"};
#define COUNT(a) (sizeof(a) / sizeof *(a))
#define MENTION "@user"

static int word_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int inv_add(qh_demo_inventory *inv, const char *w, size_t len, size_t *cap)
{
    if (inv->n == *cap) {
        size_t c = *cap ? 2 * *cap : 256;
        char **p = realloc(inv->words, c * sizeof *p);
        if (!p) return qh_fail(QH_ESYS, "demo: out of memory");
        inv->words = p, *cap = c;
    }
    char *s = malloc(len + 1);
    if (!s) return qh_fail(QH_ESYS, "demo: out of memory");
    memcpy(s, w, len);
    s[len] = '\0';
    inv->words[inv->n++] = s;
    return QH_OK;
}

/* Every space-separated word of s. */
static int inv_add_words(qh_demo_inventory *inv, const char *s, size_t *cap)
{
    while (*s) {
        size_t len = strcspn(s, " ");
        int rc = len ? inv_add(inv, s, len, cap) : QH_OK;
        if (rc) return rc;
        s += len + (s[len] == ' ');
    }
    return QH_OK;
}

int qh_demo_inventory_build(qh_demo_inventory *inv)
{
    memset(inv, 0, sizeof *inv);
    size_t cap = 0;
    int rc = inv_add_words(inv, MENTION " " QH_DEMO_URL_PREFIX, &cap);
    for (size_t i = 0; !rc && i < COUNT(PHRASES); i++) rc = inv_add_words(inv, PHRASES[i], &cap);
    for (size_t i = 0; !rc && i < COUNT(INTENSIFIERS); i++) rc = inv_add_words(inv, INTENSIFIERS[i], &cap);
    for (size_t i = 0; !rc && i < COUNT(HASHTAGS); i++) rc = inv_add_words(inv, HASHTAGS[i], &cap);
    for (int c = 0; c < QH_DEMO_NUM_CLASSES; c++) {
        for (size_t i = 0; !rc && i < COUNT(CUES[c]); i++) rc = inv_add_words(inv, CUES[c][i], &cap);
        for (size_t i = 0; !rc && i < COUNT(EMOJI[c]); i++)
            if (strcmp(EMOJI[c][i], NOT_IN_VOCAB_1) && strcmp(EMOJI[c][i], NOT_IN_VOCAB_2))
                rc = inv_add_words(inv, EMOJI[c][i], &cap);
    }
    if (rc) {
        qh_demo_inventory_free(inv);
        return rc;
    }
    /* Sorted and unique, so the vocabulary built from it does not depend on the tables' order. */
    qsort(inv->words, inv->n, sizeof *inv->words, word_cmp);
    size_t k = 0;
    for (size_t i = 0; i < inv->n; i++) {
        if (k && !strcmp(inv->words[k - 1], inv->words[i])) free(inv->words[i]);
        else inv->words[k++] = inv->words[i];
    }
    inv->n = k;
    inv->byte_fallback_words[0] = NOT_IN_VOCAB_1;
    inv->byte_fallback_words[1] = NOT_IN_VOCAB_2;
    return QH_OK;
}

void qh_demo_inventory_free(qh_demo_inventory *inv)
{
    for (size_t i = 0; i < inv->n; i++) free(inv->words[i]);
    free(inv->words);
    memset(inv, 0, sizeof *inv);
}

/* ---- generation ---------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) /* splitmix64: tiny, and the same everywhere */
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unif(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }
static size_t rng_below(uint64_t *s, size_t n) { return (size_t)(rng_unif(s) * (double)n); }
#define PICK(s, a) ((a)[rng_below(s, COUNT(a))])

typedef struct {
    char buf[512];
    size_t len;
} line_buf;

static void put_word(line_buf *l, const char *w)
{
    size_t n = strlen(w);
    if (l->len + n + 2 > sizeof l->buf) return; /* cannot happen with the tables above */
    if (l->len) l->buf[l->len++] = ' ';
    memcpy(l->buf + l->len, w, n + 1);
    l->len += n;
}

static void put_url(line_buf *l, uint64_t *s)
{
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    char url[32] = QH_DEMO_URL_PREFIX;
    size_t n = strlen(url);
    for (int i = 0; i < 10; i++) url[n++] = alnum[rng_below(s, sizeof alnum - 1)];
    url[n] = '\0';
    put_word(l, url);
}

/* One tweet whose words say class c. Most end in the cue word (or an emoji agreeing with it);
 * about a fifth trail off into a URL, hashtag or mention, which the last token cannot tell. */
static void make_tweet(uint64_t *s, int c, line_buf *l)
{
    l->len = 0, l->buf[0] = '\0';
    double r = rng_unif(s);
    if (r < 0.35) put_word(l, MENTION);
    if (r < 0.08) put_word(l, MENTION);
    if (rng_unif(s) < 0.08) put_word(l, PICK(s, HASHTAGS));
    put_word(l, PICK(s, PHRASES));
    if (rng_unif(s) < 0.3) put_word(l, PICK(s, INTENSIFIERS));
    put_word(l, CUES[c][rng_below(s, COUNT(CUES[c]))]);
    r = rng_unif(s);
    if (r < 0.12) put_word(l, EMOJI[c][rng_below(s, COUNT(EMOJI[c]))]);
    else if (r < 0.21) put_url(l, s);
    else if (r < 0.29) put_word(l, PICK(s, HASHTAGS));
    else if (r < 0.33) put_word(l, MENTION);
}

int qh_demo_make_split(const qh_demo_opts *o, int split, size_t n, qh_demo_split *out)
{
    memset(out, 0, sizeof *out);
    if (split < 0 || split > 2) return qh_fail(QH_EINPUT, "demo: split %d is not 0, 1 or 2", split);
    out->text = calloc(n ? n : 1, sizeof *out->text);
    out->labels = calloc(n ? n : 1, sizeof *out->labels);
    if (!out->text || !out->labels) {
        qh_demo_split_free(out);
        return qh_fail(QH_ESYS, "demo: out of memory");
    }
    out->n = n;
    /* Exact class counts, then a Fisher-Yates shuffle: small splits keep TweetEval's balance. */
    size_t neg = (size_t)llround(qh_demo_class_share[0] * (double)n);
    size_t pos = (size_t)llround(qh_demo_class_share[2] * (double)n);
    if (neg + pos > n) pos = n - neg;
    for (size_t i = 0; i < n; i++) out->labels[i] = i < neg ? 0 : i < neg + pos ? 2 : 1;
    uint64_t s = o->seed * 0xD1B54A32D192ED03ull + (uint64_t)split * 0x8CB92BA72F3D8DD7ull + 1;
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_below(&s, i);
        int32_t t = out->labels[i - 1];
        out->labels[i - 1] = out->labels[j], out->labels[j] = t;
    }
    line_buf l;
    for (size_t i = 0; i < n; i++) {
        int c = out->labels[i];
        if (rng_unif(&s) < o->label_noise) c = (c + 1 + (int)rng_below(&s, 2)) % QH_DEMO_NUM_CLASSES;
        make_tweet(&s, c, &l);
        out->text[i] = malloc(l.len + 1);
        if (!out->text[i]) {
            qh_demo_split_free(out);
            return qh_fail(QH_ESYS, "demo: out of memory");
        }
        memcpy(out->text[i], l.buf, l.len + 1);
    }
    return QH_OK;
}

void qh_demo_split_free(qh_demo_split *s)
{
    if (s->text)
        for (size_t i = 0; i < s->n; i++) free(s->text[i]);
    free(s->text);
    free(s->labels);
    memset(s, 0, sizeof *s);
}

/* ---- writing ------------------------------------------------------------------------------- */

static int write_lines(const char *dir, const char *name, const qh_demo_split *sp, int labels)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    qh_atomic_file af;
    int rc = qh_atomic_begin(&af, path);
    if (rc) return rc;
    for (size_t i = 0; i < sp->n; i++) {
        if (labels) fprintf(af.fp, "%d\n", (int)sp->labels[i]);
        else fprintf(af.fp, "%s\n", sp->text[i]);
    }
    return qh_atomic_commit(&af); /* checks ferror: a full disk fails here */
}

int qh_demo_write_task(const qh_demo_opts *o, const char *dir)
{
    static const char *const names[3] = {"train", "val", "test"};
    const size_t sizes[3] = {o->n_train, o->n_val, o->n_test};
    int rc = qh_mkdirs(dir);
    for (int k = 0; !rc && k < 3; k++) {
        qh_demo_split sp;
        char file[64];
        if ((rc = qh_demo_make_split(o, k, sizes[k], &sp))) break;
        snprintf(file, sizeof file, "%s_text.txt", names[k]);
        rc = write_lines(dir, file, &sp, 0);
        snprintf(file, sizeof file, "%s_labels.txt", names[k]);
        if (!rc) rc = write_lines(dir, file, &sp, 1);
        qh_demo_split_free(&sp);
    }
    if (rc) return rc;
    /* mapping.txt last: a task directory that has it is complete. */
    char path[4200];
    snprintf(path, sizeof path, "%s/mapping.txt", dir);
    qh_atomic_file af;
    if ((rc = qh_atomic_begin(&af, path))) return rc;
    for (int c = 0; c < QH_DEMO_NUM_CLASSES; c++) fprintf(af.fp, "%d\t%s\n", c, qh_demo_class_names[c]);
    return qh_atomic_commit(&af);
}
