#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan + UBSan, in build-fuzz/) and run each one for
# SECONDS (default 30) on the committed corpus in fuzz/corpus/<name>/, one target at a time.
#   fuzz/run.sh [SECONDS] [TARGET...]       e.g. fuzz/run.sh 600 safetensors config
# New inputs go to build-fuzz/fuzz-work/<name>/ (the committed corpus is only read); crashes,
# leaks, timeouts and OOMs are saved as build-fuzz/fuzz-artifacts/<name>-* and fail the run.
# The HDF5 targets (head, features) run in fork mode and go on past failures, which
# fuzz/triage.sh then sorts: those inside libhdf5 itself are counted (see README.md), any other
# fails the run. Environment: FUZZ_NICE (default 19), FUZZ_JOBS for the build (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
nice_level=${FUZZ_NICE:-19}
if ! command -v clang >/dev/null; then
  echo "fuzz/run.sh: clang not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQHEAD_FUZZ=ON \
  -DQHEAD_CUDA=OFF -DQHEAD_WERROR=ON >/dev/null
nice -n "$nice_level" cmake --build build-fuzz -j"$jobs" --target fuzz_all >/dev/null

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for d in fuzz/corpus/*/; do targets+=("$(basename "$d")"); done
fi
# One thread: the numbers say what one core does, and the fuzzer shares the machine.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/fuzz/lsan.supp}
mkdir -p build-fuzz/fuzz-artifacts build-fuzz/fuzz-logs
# The targets' scratch files (on tmpfs when there is one), removed at the end even after crashes.
QHEAD_FUZZ_TMPDIR=$(mktemp -d /dev/shm/qhead-fuzz-run.XXXXXX 2>/dev/null || mktemp -d)
export QHEAD_FUZZ_TMPDIR
trap 'rm -rf "$QHEAD_FUZZ_TMPDIR"' EXIT
failed=0
printf '%-17s %11s %6s %6s %6s  %s\n' target executions cov ft corpus result
for t in "${targets[@]}"; do
  bin=build-fuzz/fuzz/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz/run.sh: no target $t" >&2; exit 2; }
  work=build-fuzz/fuzz-work/$t
  log=build-fuzz/fuzz-logs/$t.log
  art=build-fuzz/fuzz-artifacts/$t-
  mkdir -p "$work"
  rm -f "$art"*
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a 2 GB process is an OOM;
  # -malloc_limit_mb: so is a single allocation past 1 GB.
  opts=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1
        -artifact_prefix="$art")
  hdf5=0 env=()
  # HDF5 targets: full malloc stacks (libhdf5 has no frame pointers), so that lsan.supp matches
  case $t in head|features)
    hdf5=1 opts+=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
    env=(ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0") ;;
  esac
  set +e
  env "${env[@]}" nice -n "$nice_level" "$bin" "${opts[@]}" "$work" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  # Last status line: "#N DONE cov: C ft: F corp: K/..." (fork mode: "#N: cov: C ft: F corp: K ...").
  line=$(grep -aE '^#[0-9]+' "$log" | tail -1 || true)
  execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$line")
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$line")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$line")
  corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$line")
  result=ok
  if [ $hdf5 = 1 ]; then
    n_art=$(find build-fuzz/fuzz-artifacts -name "$(basename "$art")*" | wc -l)
    if [ "$n_art" -gt 0 ]; then
      set +e
      fuzz/triage.sh "$bin" "$art"* >"$log.triage" 2>&1
      trc=$?
      set -e
      n_hdf5=$(grep -c ' libhdf5 ' "$log.triage" || true)
      n_gone=$(grep -c ' gone ' "$log.triage" || true)
      result="ok; $n_hdf5 failures inside libhdf5, $n_gone not reproducible (see $log.triage)"
      [ $trc -ne 0 ] && { result="FAILED in qhead code (see $log.triage)"; failed=1; }
    fi
    [ $rc -ne 0 ] && ! grep -q 'INFO: fuzzed for' "$log" && { result="FAILED (exit $rc, see $log)"; failed=1; }
  elif [ $rc -ne 0 ]; then
    result="FAILED (exit $rc, see $log)"
    failed=1
  fi
  printf '%-17s %11s %6s %6s %6s  %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done
exit $failed
