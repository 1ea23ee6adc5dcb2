#include "token_split.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

void qh_token_split_free(qh_token_split *ts)
{
    free(ts->ids);
    free(ts->offsets);
    free(ts->labels);
    memset(ts, 0, sizeof *ts);
}

int qh_tokenize_split(const qh_tokenizer *t, const qh_tweeteval_split *s, int max_tokens, qh_token_split *out)
{
    memset(out, 0, sizeof *out);
    int64_t n = (int64_t)s->count;
    size_t cap = (size_t)n * 32 + 64;
    out->ids = malloc(cap * sizeof(int32_t));
    out->offsets = malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (s->labels) out->labels = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    qh_ids ids;
    qh_ids_init(&ids);
    int rc = (!out->ids || !out->offsets || (s->labels && !out->labels)) ? qh_fail(QH_ESYS, "out of memory tokenizing") : QH_OK;
    out->offsets[0] = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        if ((rc = qh_tokenizer_encode(t, s->text[i], s->text_len[i], 1, &ids))) break;
        size_t len = ids.len;
        if (max_tokens > 0 && len > (size_t)max_tokens) {
            len = (size_t)max_tokens;
            out->truncated++;
        }
        size_t at = (size_t)out->offsets[i];
        if (at + len > cap) {
            size_t ncap = (at + len) * 2;
            int32_t *p = realloc(out->ids, ncap * sizeof(int32_t));
            if (!p) {
                rc = qh_fail(QH_ESYS, "out of memory tokenizing");
                break;
            }
            out->ids = p;
            cap = ncap;
        }
        memcpy(out->ids + at, ids.data, len * sizeof(int32_t));
        out->offsets[i + 1] = (int64_t)(at + len);
        if ((int)len > out->max_len) out->max_len = (int)len;
    }
    qh_ids_free(&ids);
    if (rc) {
        qh_token_split_free(out);
        return rc;
    }
    if (s->labels) memcpy(out->labels, s->labels, sizeof(int32_t) * (size_t)n);
    out->n = n;
    out->n_tokens = out->offsets[n];
    return QH_OK;
}

int32_t *qh_token_split_lengths(const qh_token_split *ts)
{
    int32_t *len = malloc(sizeof(int32_t) * (size_t)(ts->n ? ts->n : 1));
    if (!len) return NULL;
    for (int64_t i = 0; i < ts->n; i++) len[i] = (int32_t)(ts->offsets[i + 1] - ts->offsets[i]);
    return len;
}
