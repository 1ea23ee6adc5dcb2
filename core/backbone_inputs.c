#include "backbone_inputs.h"

#include "error.h"

int qh_backbone_inputs_open(const char *model_dir, const char *tok_path, qh_checkpoint **ck, qh_tokenizer **tok)
{
    *ck = NULL, *tok = NULL;
    int rc = qh_checkpoint_open(model_dir, ck);
    if (!rc) rc = qh_tokenizer_load(tok_path, tok);
    if (!rc && qh_tokenizer_vocab_size(*tok) > (*ck)->cfg.vocab_size)
        rc = qh_fail(QH_EINPUT, "%s has %d pieces but %s/config.json has vocab_size %d: not this model's tokenizer",
                     tok_path, qh_tokenizer_vocab_size(*tok), model_dir, (*ck)->cfg.vocab_size);
    if (rc) {
        qh_tokenizer_free(*tok);
        qh_checkpoint_close(*ck);
        *ck = NULL, *tok = NULL;
    }
    return rc;
}
