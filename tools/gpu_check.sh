#!/usr/bin/env bash
# make gpu-check: on a GPU host, build for sm_90 into build-gpu, run every test labelled gpu, print
# a table (test, result, time). Exits non-zero when a test fails, when the build fails, or when no
# GPU test actually ran (all skipped: no usable GPU).
#
# Works on a bare host with only nvcc, cmake, ninja (or make) and python3: OpenBLAS, MPI and audio
# are optional in CMake, and nlohmann/json + GoogleTest come from .gpu/ (tools/gpu_prepare.sh).
# Environment: BUILD_GPU (default build-gpu), CUDA_ARCH (default 90), JOBS, FLURRY_SEED,
# FLURRY_SYNC_LAUNCHES=1, FLURRY_DUMP_DIR, CMAKE_ARGS (extra configure flags).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD_GPU:-build-gpu}
ARCH=${CUDA_ARCH:-90}
JOBS=${JOBS:-$(nproc)}

echo "== GPU"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/  /'
else
  echo "  nvidia-smi not found"
fi
command -v nvcc >/dev/null 2>&1 && echo "  nvcc: $(nvcc --version | tail -n 2 | head -n 1)"

echo "== libraries"
for lib in libcudnn.so libnccl.so libcublasLt.so; do
  hit=$(ldconfig -p 2>/dev/null | grep -m1 " $lib" | sed 's/.*=> //')
  [ -z "$hit" ] && for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    f=$(ls "$d"/$lib* 2>/dev/null | head -n 1) && [ -n "$f" ] && hit="$f (not in ldconfig)" && break
  done
  echo "  $lib: ${hit:-not found}"
done
python3 - <<'PY' 2>/dev/null || true
import importlib.util, os
for mod in ("nvidia.cudnn", "nvidia.nccl", "nvidia.cublas"):
    try:
        spec = importlib.util.find_spec(mod)
    except Exception:
        spec = None
    if spec and spec.submodule_search_locations:
        print(f"  python {mod}: {list(spec.submodule_search_locations)[0]}")
PY

# Binaries built on the development machine (tools/gpu_pack.sh -> .gpu/prebuilt.tar.xz) when they
# were made from this tree: no compiling here. Otherwise configure and build as below.
# shellcheck source=tools/gpu_prebuilt.sh
source tools/gpu_prebuilt.sh
echo "== prebuilt binaries"
if use_prebuilt; then
  BUILD=$PREBUILT_BUILD
  mapfile -t targets < <(ctest --test-dir "$BUILD" -L gpu -N 2>/dev/null | sed -n 's/^ *Test *#[0-9]*: *//p')
else
  echo "== configure ($BUILD, sm_$ARCH)"
  args=(-S . -B "$BUILD" -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DFLURRY_CUDA=ON -DFLURRY_BENCH=ON
        -DFLURRY_TESTS=ON)
  command -v ninja >/dev/null 2>&1 && [ ! -f "$BUILD/Makefile" ] && args+=(-G Ninja)
  [ -f .gpu/include/nlohmann/json.hpp ] && args+=(-DFLURRY_JSON_INCLUDE="$ROOT/.gpu/include")
  [ -f .gpu/googletest/CMakeLists.txt ] && args+=(-DFLURRY_GTEST_SOURCE_DIR="$ROOT/.gpu/googletest")
  # zlib headers are rarely on a bare GPU host; use the carried copy unless the host has its own.
  [ ! -f /usr/include/zlib.h ] && [ -f .gpu/zlib/zlib.h ] && \
    args+=(-DZLIB_INCLUDE_DIR="$ROOT/.gpu/zlib" -DZLIB_LIBRARY="$ROOT/.gpu/zlib/libz.a")
  # utf8proc likewise (the tokenizers need it; flurry_io refuses to build without it).
  [ ! -f /usr/include/utf8proc.h ] && [ -f .gpu/utf8proc/utf8proc.h ] && \
    args+=(-DFLURRY_UTF8PROC_ROOT="$ROOT/.gpu/utf8proc")
  # shellcheck disable=SC2206
  [ -n "${CMAKE_ARGS:-}" ] && args+=(${CMAKE_ARGS})
  if ! cmake "${args[@]}" >"$BUILD.configure.log" 2>&1; then
    tail -n 30 "$BUILD.configure.log"
    echo "gpu-check: configure failed (log: $BUILD.configure.log)" >&2
    exit 1
  fi
  grep -- "-- flurry:" "$BUILD.configure.log" | sed 's/^/  /'

  # Build only what the GPU suite needs: the gpu-labelled tests and the benchmarks.
  mapfile -t targets < <(ctest --test-dir "$BUILD" -L gpu -N 2>/dev/null | sed -n 's/^ *Test *#[0-9]*: *//p')
  if [ ${#targets[@]} -eq 0 ]; then
    echo "gpu-check: no tests labelled gpu are defined" >&2
    exit 1
  fi
  mapfile -t benches < <(ls bench/kernels/*_bench.cu bench/kernels/*_bench.cpp 2>/dev/null | xargs -r -n1 basename | sed 's/\.[^.]*$//')
  echo "== build: ${targets[*]} ${benches[*]}"
  if ! cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}" "${benches[@]}" >"$BUILD.build.log" 2>&1; then
    grep -E "error|FAILED" "$BUILD.build.log" | head -n 40
    echo "gpu-check: build failed (log: $BUILD.build.log)" >&2
    exit 1
  fi
fi
ldd "$BUILD/bin/${targets[0]}" 2>/dev/null | grep -E "cublas|cudart|cudnn|nccl" | sed 's/^/  /'

echo "== run (ctest -L gpu)"
log="$BUILD.ctest.log"
ctest --test-dir "$BUILD" -L gpu --output-on-failure -j 1 2>&1 | tee "$log" | grep -E "Test +#|tests passed|FAILED|Failure|error" | head -n 200
python3 - "$log" <<'PY'
import re, sys
rows, ran, failed = [], 0, 0
pat = re.compile(r"Test\s+#\d+:\s+(\S+)\s+\.*\s*(\*\*\*)?([A-Za-z][A-Za-z :]*?)\s+([\d.]+)\s+sec")
for line in open(sys.argv[1], errors="replace"):
    m = pat.search(line)
    if not m:
        continue
    name, status, secs = m.group(1), m.group(3).strip(), m.group(4)
    if status == "Passed":
        ran += 1
    elif status != "Skipped":
        failed += 1
    rows.append((name, status, secs))
w = max([len(r[0]) for r in rows] + [4])
print("\n| %-*s | %-12s | %8s |" % (w, "test", "result", "time (s)"))
print("|-%s-|--------------|----------|" % ("-" * w))
for name, status, secs in rows:
    print("| %-*s | %-12s | %8s |" % (w, name, status, secs))
print(f"\n{ran} passed, {failed} failed, {len(rows) - ran - failed} skipped")
if failed:
    sys.exit(1)
if ran == 0:
    print("gpu-check: no GPU test ran (all skipped: is a GPU visible?)", file=sys.stderr)
    sys.exit(2)
PY
