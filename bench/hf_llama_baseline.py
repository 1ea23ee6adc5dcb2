#!/usr/bin/env python3
"""transformers baseline for bench_cuda_forward: LlamaForSequenceClassification, fp16, SDPA,
random weights of the LLaMA-2-7B shape (built on the GPU, no checkpoint), on the TweetEval
token lengths, in length-sorted padded batches (right padding, pad id 0, attention mask).

  python3 bench/hf_llama_baseline.py --lengths bench/tweeteval-lengths.json \
      [--variants bs256x2,tok16384x1]

Variant "bsN" = batches of N sequences; "tokN" = as many sequences as fit N padded tokens;
"xR" = R timed passes (median reported). All batches are built on the GPU before timing. Warm-up
(--warmup): "full" (default) runs one untimed pass over every batch first; "3" only the three
largest batches -- then the first timed pass is ~30% slower (new shapes: kernel selection and
allocator growth), as bench/NOTES.md records. Prints one JSON line per variant:
{"name", "time_s", "times", "peak_alloc_gb", "peak_reserved_gb"} (torch's allocator peaks).
"""
import argparse
import json
import random
import statistics
import sys
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForSequenceClassification


def lengths_from(path):
    hist = json.load(open(path))["histogram"]
    lens = [int(k) for k, v in hist.items() for _ in range(int(v))]
    random.Random(12345).shuffle(lens)
    return lens


def build_model():
    config = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                         max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
                         num_labels=3, pad_token_id=0)
    torch.manual_seed(0)
    with torch.device("cuda"):
        try:
            model = LlamaForSequenceClassification._from_config(
                config, attn_implementation="sdpa", dtype=torch.float16)
        except TypeError:
            model = LlamaForSequenceClassification._from_config(
                config, attn_implementation="sdpa", torch_dtype=torch.float16)
    model = model.half().eval()
    return model


def batches(lens, ids, spec):
    order = sorted(range(len(lens)), key=lambda i: -lens[i])
    groups, cur = [], []
    for i in order:
        if spec.startswith("bs"):
            full = len(cur) == int(spec[2:])
        else:
            full = cur and (len(cur) + 1) * lens[cur[0]] > int(spec[3:])
        if full:
            groups.append(cur)
            cur = []
        cur.append(i)
    if cur:
        groups.append(cur)
    out = []
    for g in groups:
        width = max(lens[i] for i in g)
        inp = torch.zeros(len(g), width, dtype=torch.long)
        mask = torch.zeros(len(g), width, dtype=torch.long)
        for r, i in enumerate(g):
            inp[r, :lens[i]] = ids[i]
            mask[r, :lens[i]] = 1
        out.append((inp.cuda(), mask.cuda()))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="bench/tweeteval-lengths.json")
    ap.add_argument("--variants", default="bs256x2,tok16384x1")
    ap.add_argument("--warmup", default="full", help="full, or a number of batches")
    a = ap.parse_args()
    lens = lengths_from(a.lengths)
    g = torch.Generator().manual_seed(99)
    ids = [torch.randint(3, 32000, (n,), generator=g) for n in lens]
    t0 = time.time()
    model = build_model()
    torch.cuda.synchronize()
    print(f"# transformers {transformers.__version__}, torch {torch.__version__}, "
          f"attention {model.config._attn_implementation}, dtype {next(model.parameters()).dtype}, "
          f"model built in {time.time() - t0:.1f} s, {torch.cuda.memory_allocated() / 1e9:.2f} GB",
          flush=True)
    for v in a.variants.split(","):
        spec, _, reps = v.partition("x")
        reps = int(reps or 1)
        bl = batches(lens, ids, spec)
        with torch.inference_mode():
            for inp, mask in (bl if a.warmup == "full" else bl[:int(a.warmup)]):
                model(input_ids=inp, attention_mask=mask).logits.float().sum().item()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(reps):
                torch.cuda.synchronize()
                start = time.perf_counter()
                outs = [model(input_ids=inp, attention_mask=mask).logits for inp, mask in bl]
                torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
                del outs
        name = (f"fp16 SDPA, length-sorted, batch {spec[2:]}" if spec.startswith("bs")
                else f"fp16 SDPA, length-sorted, <= {spec[3:]} padded tokens")
        print(json.dumps({"name": name, "time_s": statistics.median(times), "times": times,
                          "batches": len(bl),
                          "peak_alloc_gb": torch.cuda.max_memory_allocated() / 1e9,
                          "peak_reserved_gb": torch.cuda.max_memory_reserved() / 1e9}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
