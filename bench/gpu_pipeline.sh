#!/bin/bash
# The whole pipeline on the GPU machine, timed: a 7B-shape random LLaMA (generated here), the
# real LLaMA-2 tokenizer and real TweetEval emotion tweets (both copied into .device/data/ from
# ../shared/fixtures, which the GPU machine does not have), train-head on the GPU, then evaluate.
#   bench/gpu_pipeline.sh OUTDIR [variants...]     (variants default: fp16)
# Run from the repository root with the staged binaries in .device/bin.
set -euo pipefail
out=${1:?usage: gpu_pipeline.sh OUTDIR [variants...]}
shift
variants=${*:-fp16}
bin=.device/bin
model=/tmp/llama7b
mkdir -p "$out"
t() { local s=$EPOCHREALTIME; "$@"; echo "TIME $(awk "BEGIN{printf \"%.2f\", $EPOCHREALTIME - $s}") s: $*" | tee -a "$out/times.txt"; }
nvidia-smi --query-gpu=name,memory.total,power.limit --format=csv | tee "$out/gpu.txt"
if [ ! -f $model/config.json ]; then t $bin/qhead-make-model --preset 7b --out $model; fi
cp .device/data/llama2-tokenizer.model $model/tokenizer.model
t $bin/train-head --model $model --data .device/data/emotion --out /tmp/ck --epochs 3 2>&1 | tee "$out/train.txt"
t $bin/train-head --model $model --data .device/data/emotion --out /tmp/ck --epochs 3 2>&1 | tee "$out/train-again.txt"
for v in $variants; do
  if [ "$v" != fp16 ]; then bits=$([ "$v" = int8 ] && echo 8 || echo 4); t $bin/quantize --bits $bits --model $model --out /tmp/ck 2>&1 | tee "$out/quantize-$v.txt"; fi
done
args=""; for v in $variants; do args="$args --variant $v"; done
t $bin/evaluate --model $model --data .device/data/emotion --out /tmp/ck $args --latency 50 2>&1 | tee "$out/evaluate.txt"
cp -r /tmp/ck/eval /tmp/ck/train_log.csv /tmp/ck/loss_curve.svg "$out/" 2>/dev/null || true
