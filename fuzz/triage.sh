#!/usr/bin/env bash
# Classify libFuzzer artifacts by where the failure happens: reruns TARGET on each ARTIFACT and
# prints "<kind> <where> <artifact> <frame>", where is "libhdf5" when the failing frame (the
# crash site, the allocation that leaked or ran out, the code running at a timeout) lies inside
# libhdf5, else "qhead". Exit status 1 when any failure is in qhead's code.
#   fuzz/triage.sh build-fuzz/fuzz/fuzz_head build-fuzz/fuzz-artifacts/head-*
set -uo pipefail
bin=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/fuzz/lsan.supp}
ours=0
for a in "$@"; do
  [ -f "$a" ] || continue
  kind=$(basename "$a" | sed -E 's/^([a-z0-9_]+-)?(crash|leak|oom|timeout|slow-unit)-.*/\2/')
  # A timeout's stack is where the alarm lands. Inside the sanitizer's allocator it cannot be
  # unwound ("<empty stack>"): libhdf5 looping over allocations spent its time in the allocator's
  # fill of each new block, so the reruns skip that fill (max_malloc_fill_size=0), and runs that
  # still show no stack are repeated with other timeouts until the alarm lands where it can.
  for limit in 10 7 13 4; do
    report=$(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
      ASAN_OPTIONS=fast_unwind_on_malloc=0:detect_leaks=1:allocator_may_return_null=1:max_malloc_fill_size=0 \
      timeout 60 "$bin" -timeout=$limit -rss_limit_mb=4096 -malloc_limit_mb=1024 "$a" 2>&1)
    grep -q '<empty stack>' <<<"$report" || break
  done
  # Per report block (a leak report has one per leak), the first frame that is either inside
  # libhdf5 or in qhead's own sources: the sanitizer, libFuzzer, the C library and its
  # interceptors in between are skipped; a crash in another library counts as the qhead code
  # calling it. Every block must be libhdf5's for the artifact to be.
  frames=$(awk -v src="$root/" '
    /ERROR:|Direct leak|Indirect leak|runtime error|SUMMARY/ { want = 1; next }
    want && /^ +#[0-9]+ 0x/ && (/libhdf5/ || index($0, src) && /\.c:[0-9]+/) { print; want = 0 }
  ' <<<"$report")
  if [ -z "$frames" ]; then
    if grep -qE 'ERROR|runtime error' <<<"$report"; then
      echo "$kind qhead $a (no stack frame found)"
      ours=1
    else
      echo "$kind gone $a (does not reproduce)"
    fi
    continue
  fi
  where=libhdf5
  grep -qv 'libhdf5' <<<"$frames" && where=qhead
  [ "$where" = qhead ] && ours=1
  echo "$kind $where $a $(head -1 <<<"$frames" | sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+ in //; s/ \(BuildId.*//')"
done
exit $ours
