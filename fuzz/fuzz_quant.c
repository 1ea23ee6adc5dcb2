/* libFuzzer target: quantized backbones (core/quant_model.c qh_quant_open / qh_quant_weight via
 * qh_llama_load_variant). The input is the quantized safetensors file; config.json is fixed
 * (fuzz/quant_config.json: hidden 16, 1 layer, vocab 32), and the seeds were quantized with it
 * so their config_sha256 matches. A backbone that loads runs one forward pass on the CPU. */
#include "fuzz_util.h"

#include "backend.h"
#include "fileio.h"
#include "llama_model.h"

#ifndef QHEAD_FUZZ_DIR
#error "QHEAD_FUZZ_DIR must name the fuzz/ source directory"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static qh_backend *be;
    if (!be) {
        char *cfg;
        size_t len;
        if (qh_read_file(QHEAD_FUZZ_DIR "/quant_config.json", 1 << 20, &cfg, &len) != QH_OK ||
            qh_cpu_backend_create(&be) != QH_OK) {
            fprintf(stderr, "%s\n", qh_last_error());
            abort();
        }
        fz_write(1, "config.json", cfg, len);
        free(cfg);
    }
    const char *path = fz_write(0, "q.safetensors", data, size);
    static const char *const variants[] = {"int8", "nf4"};
    int loaded = 0;
    for (int v = 0; v < 2; v++) {
        qh_llama_model *m = NULL;
        int rc = qh_llama_load_variant(fz_dir(), variants[v], path, be, &m);
        fz_check_error(rc);
        if (rc) {
            if (m) abort();
            continue;
        }
        if (loaded++) abort(); /* a file holds one variant */
        qh_llama_ctx *ctx;
        if (qh_llama_ctx_create(m, 64, &ctx) != QH_OK) abort();
        const int32_t ids[3] = {1, 7, 2};
        const int32_t lengths[2] = {2, 1};
        float hidden[2 * 16];
        int frc = qh_llama_forward(ctx, ids, lengths, 2, hidden);
        fz_check_error(frc);
        qh_llama_ctx_free(ctx);
        qh_llama_free(m);
    }
    return 0;
}
