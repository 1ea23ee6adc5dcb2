#!/usr/bin/env bash
# The whole test suite, as CI runs it: a warnings-as-errors build with its ctest run, then the
# same tests built with AddressSanitizer + UndefinedBehaviorSanitizer (leaks are errors).
# GPU tests (label "gpu") skip themselves where no GPU exists. Last, every libFuzzer target runs
# for 30 s on its committed corpus (fuzz/run.sh), where clang and its libFuzzer runtime are
# installed (CI installs them); QHEAD_SKIP_FUZZ=1 leaves that step out.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DQHEAD_WERROR=ON
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DQHEAD_WERROR=ON -DQHEAD_SANITIZE=ON -DQHEAD_CUDA=OFF
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE gpu
if [ "${QHEAD_SKIP_FUZZ:-0}" = 1 ]; then
  echo "tests/run-all.sh: fuzzing skipped (QHEAD_SKIP_FUZZ=1)"
elif ! command -v clang >/dev/null; then
  echo "tests/run-all.sh: fuzzing skipped: clang not found (apt-get install clang libclang-rt-14-dev)"
else
  fuzz/run.sh 30
fi
