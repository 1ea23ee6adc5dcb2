#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention, one backend at a time (cuDNN's fused attention, the
flash and memory-efficient kernels), causal, fp16, on the shapes bench_attention times for
qhead's own kernels: batches of equal-length sequences, [batch, heads, len, head_dim] as strided
views of [batch, len, heads, head_dim] (the packed token-major layout of q, k and v; no copy).

  python3 bench/torch_sdpa_attention.py --tokens 12288 --lens 16,30,48,64,88 --heads 32 \
      --head-dim 128 --reps 50

For each length L: batch tokens // L (and batch 1). Times R back-to-back calls with CUDA events
after 5 warm-up calls; prints one JSON line per (backend, L, batch): {"backend", "len", "batch",
"us", "cudnn"} (microseconds per call; cudnn: the cuDNN version torch runs), or {"backend", "len",
"batch", "error"} where the backend refuses the shape.
"""
import argparse
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def time_call(fn, reps):
    for _ in range(5):
        fn()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        fn()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) * 1e3 / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=12288)
    ap.add_argument("--lens", default="16,30,48,64,88")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=50)
    a = ap.parse_args()
    backends = [("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
                ("efficient", SDPBackend.EFFICIENT_ATTENTION)]
    torch.manual_seed(0)
    for L in [int(x) for x in a.lens.split(",")]:
        for batch in (max(1, a.tokens // L), 1):
            q, k, v = (torch.randn(batch, L, a.heads, a.head_dim, device="cuda", dtype=torch.float16).transpose(1, 2)
                       for _ in range(3))
            for name, be in backends:
                rec = {"backend": name, "len": L, "batch": batch}
                try:
                    with sdpa_kernel([be]):
                        us = time_call(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), a.reps)
                    rec.update(us=us, cudnn=torch.backends.cudnn.version())
                except RuntimeError as e:
                    rec["error"] = str(e).splitlines()[0][:200]
                print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
