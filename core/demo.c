#include "demo.h"

#include "clock.h"

#include "error.h"
#include "fileio.h"
#include "spm_model.h"
#include "spm_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SPACE "\xE2\x96\x81" /* U+2581 "▁": SentencePiece's escaped space */

typedef struct {
    char *s;
    size_t len, chars;
} piece_str;

typedef struct {
    piece_str *v;
    size_t n, cap;
} piece_list;

/* Byte length of the UTF-8 character starting with c (the inventory is valid UTF-8). */
static size_t utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

static int list_add(piece_list *l, const char *s, size_t len, size_t chars)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        piece_str *p = realloc(l->v, cap * sizeof *p);
        if (!p) return qh_fail(QH_ESYS, "demo tokenizer: out of memory");
        l->v = p, l->cap = cap;
    }
    char *d = malloc(len + 1);
    if (!d) return qh_fail(QH_ESYS, "demo tokenizer: out of memory");
    memcpy(d, s, len);
    d[len] = '\0';
    l->v[l->n++] = (piece_str){d, len, chars};
    return QH_OK;
}

static void list_free(piece_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i].s);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Shorter pieces first (a BPE trainer merges a word's prefixes before the word), then bytes:
 * a fixed order whatever order the words came in. */
static int piece_cmp(const void *a, const void *b)
{
    const piece_str *x = a, *y = b;
    if (x->chars != y->chars) return x->chars < y->chars ? -1 : 1;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static void list_sort_unique(piece_list *l)
{
    qsort(l->v, l->n, sizeof *l->v, piece_cmp);
    size_t k = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (k && !piece_cmp(&l->v[k - 1], &l->v[i])) free(l->v[i].s);
        else l->v[k++] = l->v[i];
    }
    l->n = k;
}

/* For "▁word": the merged pieces "▁w", "▁wo", ..., "▁word", and the characters w, o, r, d.
 * Only pieces beginning with "▁" and at most one "▁" each can merge, so inside a word the
 * merges have no rival and BPE reaches the whole word whatever the scores. */
static int add_word(piece_list *merged, piece_list *chars, const char *w)
{
    char buf[512];
    size_t n = strlen(w), nch = 0;
    if (n + sizeof SPACE > sizeof buf) return qh_fail(QH_EINPUT, "demo tokenizer: word '%.40s...' too long", w);
    memcpy(buf, SPACE, 3);
    memcpy(buf + 3, w, n);
    for (size_t i = 0; i < n;) {
        size_t cl = utf8_len((unsigned char)w[i]);
        if (i + cl > n) cl = n - i;
        int rc = list_add(chars, w + i, cl, 1);
        i += cl, nch++;
        if (!rc) rc = list_add(merged, buf, 3 + i, 1 + nch);
        if (rc) return rc;
    }
    return QH_OK;
}

int qh_demo_build_tokenizer(uint8_t **bytes, size_t *len, int32_t *n_pieces)
{
    *bytes = NULL, *len = 0, *n_pieces = 0;
    qh_demo_inventory inv;
    int rc = qh_demo_inventory_build(&inv);
    if (rc) return rc;
    piece_list merged = {0}, chars = {0};
    for (size_t i = 0; !rc && i < inv.n; i++) rc = add_word(&merged, &chars, inv.words[i]);
    /* Printable ASCII and "▁" too, so any ASCII text (say, a URL's random tail) needs no bytes. */
    for (char c = 0x21; !rc && c < 0x7F; c++) rc = list_add(&chars, &c, 1, 1);
    if (!rc) rc = list_add(&chars, SPACE, 3, 1);
    qh_demo_inventory_free(&inv);
    list_sort_unique(&merged);
    list_sort_unique(&chars);

    /* LLaMA-2's order: <unk>, <s>, </s>, the 256 bytes, merged pieces by decreasing score
     * (0, -1, -2, ...), then the single characters below every merge. */
    qh_spm_builder b;
    qh_spm_builder_init(&b);
    b.model_prefix = "qhead-demo";
    if (!rc) rc = qh_spm_add_piece(&b, "<unk>", 5, 0.0f, QH_SPM_UNKNOWN);
    if (!rc) rc = qh_spm_add_piece(&b, "<s>", 3, 0.0f, QH_SPM_CONTROL);
    if (!rc) rc = qh_spm_add_piece(&b, "</s>", 4, 0.0f, QH_SPM_CONTROL);
    if (!rc) rc = qh_spm_add_byte_pieces(&b);
    float score = 0.0f;
    for (size_t i = 0; !rc && i < merged.n; i++, score -= 1.0f)
        rc = qh_spm_add_piece(&b, merged.v[i].s, merged.v[i].len, score, QH_SPM_NORMAL);
    for (size_t i = 0; !rc && i < chars.n; i++, score -= 1.0f)
        rc = qh_spm_add_piece(&b, chars.v[i].s, chars.v[i].len, score, QH_SPM_NORMAL);
    list_free(&merged);
    list_free(&chars);
    if (!rc) rc = qh_spm_serialize(&b, bytes, len);
    if (!rc) *n_pieces = b.n_pieces;
    qh_spm_builder_free(&b);
    return rc;
}

void qh_demo_model_spec(int32_t vocab_size, uint64_t seed, qh_model_spec *s)
{
    qh_model_spec_preset("tiny", s);
    s->hidden_size = 128, s->intermediate_size = 344, s->num_layers = 4;
    s->num_heads = 4, s->num_kv_heads = 4;
    s->vocab_size = vocab_size;
    /* Each layer adds about init_range * hidden_size times the embedding's magnitude to the
     * residual stream (0.64 here), so the last token's own embedding still dominates its final
     * hidden state and a linear head can read the last word. With transformers' 0.02 (2.6x) the
     * layers mix the tweet's tokens: a head reaches 57% val accuracy in 3 epochs, not 72%. */
    s->init_range = 0.005;
    s->seed = seed;
}

int qh_make_demo(const char *dir, const qh_demo_opts *o, qh_demo_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    char task[4200], model[4200], path[4300];
    if (snprintf(task, sizeof task, "%s/sentiment", dir) >= (int)sizeof task - 64 ||
        snprintf(model, sizeof model, "%s/model", dir) >= (int)sizeof model - 64)
        return qh_fail(QH_EINPUT, "--out %s: path too long", dir);
    double t0 = qh_now_s();
    int rc = qh_demo_write_task(o, task);
    if (rc) return rc;
    double t1 = qh_now_s();
    uint8_t *tok;
    size_t tok_len;
    if ((rc = qh_demo_build_tokenizer(&tok, &tok_len, &sum->vocab_size))) return rc;
    if (!(rc = qh_mkdirs(model))) {
        snprintf(path, sizeof path, "%s/tokenizer.model", model);
        rc = qh_spm_write_bytes(path, tok, tok_len);
    }
    free(tok);
    if (rc) return rc;
    double t2 = qh_now_s();
    /* The demo model is one model.safetensors; an index left by an earlier sharded model in
     * the same directory would make loaders look for shards instead. */
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", model);
    if (qh_path_exists(path) && unlink(path) != 0) return qh_fail_errno(QH_EINPUT, "%s: cannot remove", path);
    qh_model_spec spec;
    qh_demo_model_spec(sum->vocab_size, o->seed, &spec);
    rc = qh_generate_llama(&spec, model);
    double t3 = qh_now_s();
    sum->seconds_data = t1 - t0, sum->seconds_tokenizer = t2 - t1, sum->seconds_model = t3 - t2;
    return rc;
}
