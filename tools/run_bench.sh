#!/usr/bin/env bash
# make bench: run every micro-benchmark in BUILD/bin (*_bench) on the GPU and keep the output in
# BUILD/bench-<date>.txt, headed by what bench/RESULTS.md records: date, GPU, commit, command.
# Copy the numbers into bench/RESULTS.md by hand. Extra flags go to every benchmark: BENCH_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "run_bench: no GPU visible (nvidia-smi); benchmarks need one" >&2
  exit 1
fi
mapfile -t benches < <(ls bench/kernels/*_bench.cu bench/kernels/*_bench.cpp 2>/dev/null | xargs -r -n1 basename | sed 's/\.[^.]*$//')
cmake --build "$BUILD" -j "$(nproc)" --target "${benches[@]}" >/dev/null
out="$BUILD/bench-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "gpu:     $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -n 1)"
  echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  for b in "${benches[@]}"; do
    echo
    echo "command: $BUILD/bin/$b ${BENCH_ARGS:-}"
    # shellcheck disable=SC2086
    "$BUILD/bin/$b" ${BENCH_ARGS:-}
  done
} 2>&1 | tee "$out"
echo "run_bench: saved $out"
