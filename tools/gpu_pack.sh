#!/usr/bin/env bash
# Packs the GPU suite's binaries, built here, for a bare GPU host, so that device time goes to
# running rather than compiling: .gpu/prebuilt.tar.xz holds
#   bin/      every gpu-labelled test binary and the benchmarks (stripped), from $BUILD/bin
#   bin/lib/  the shared libraries they need that are neither the C/C++ runtime nor CUDA's
#             (libsndfile and its codecs, libsoxr, OpenBLAS, utf8proc, zlib, ...)
#   ctest/    the build tree's CTestTestfile.cmake files (they name the binaries by absolute path)
#   PACK_INFO the source root and build folder those paths use, the CUDA architectures
#   files.txt, tree.sha256  the tracked files and a hash of their contents: the GPU host uses the
#             pack only when its copy of the tree hashes the same (else it builds, as before)
# tools/gpu_prebuilt.sh unpacks it there (make gpu-check and bench/*/run_bench.sh call it).
#   BUILD=build (default; a CUDA build for sm_90, e.g. the one `make test` makes)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
[ -f "$BUILD/CMakeCache.txt" ] || { echo "gpu_pack: no $BUILD/CMakeCache.txt (run make build first)" >&2; exit 1; }
ARCHS=$(sed -n 's/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
grep -q '^FLURRY_CUDA:BOOL=ON' "$BUILD/CMakeCache.txt" || { echo "gpu_pack: $BUILD is not a CUDA build" >&2; exit 1; }
case ";${ARCHS:-90};" in
  *";90;"*|*";90a;"*|*";90-real;"*) ;;
  *) echo "gpu_pack: $BUILD is built for '$ARCHS', not sm_90" >&2; exit 1 ;;
esac
mapfile -t tests < <(ctest --test-dir "$BUILD" -L gpu -N 2>/dev/null | sed -n 's/^ *Test *#[0-9]*: *//p')
[ ${#tests[@]} -gt 0 ] || { echo "gpu_pack: no gpu-labelled tests in $BUILD" >&2; exit 1; }
benches=(gemm_bench copy_bench whisper_bench dlrm_bench embed_bench)
for f in bench/kernels/*_bench.cu bench/kernels/*_bench.cpp; do
  [ -f "$f" ] && benches+=("$(basename "${f%.*}")")
done
echo "gpu_pack: building ${#tests[@]} tests and the benchmarks in $BUILD (up to date: quick)"
cmake --build "$BUILD" -j "$(nproc)" --target "${tests[@]}" >/dev/null
# A benchmark this build does not define (or cannot build) is left out, as run_bench.sh tolerates.
found=()
for b in "${benches[@]}"; do
  if cmake --build "$BUILD" -j "$(nproc)" --target "$b" >/dev/null 2>&1; then found+=("$b"); else echo "  (no $b)"; fi
done
mapfile -t benches < <(printf "%s\n" "${found[@]}" | sort -u)

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin/lib" "$STAGE/ctest"
for t in "${tests[@]}" "${benches[@]}"; do
  [ -x "$BUILD/bin/$t" ] || { echo "gpu_pack: $BUILD/bin/$t missing" >&2; exit 1; }
  strip -o "$STAGE/bin/$t" "$BUILD/bin/$t"
done
# Shared libraries: everything ldd resolves except the C/C++ runtime (the host has its own, newer)
# and CUDA's (the host's driver-matched toolkit and Python wheels provide them).
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libstdc\+\+|libgcc_s|libpthread|libdl\.|librt\.|libcuda\.|libcudart|libcublas|libcufft|libcudnn|libnccl|libnvrtc|libnvJitLink|libcurand|libcusparse|libcusolver)'
for t in "${tests[@]}" "${benches[@]}"; do
  ldd "$BUILD/bin/$t" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $skip ]] && continue
  cp -L "$path" "$STAGE/bin/lib/$name"
done
(cd "$BUILD" && find . -name CTestTestfile.cmake -print0) | while IFS= read -r -d '' f; do
  mkdir -p "$STAGE/ctest/$(dirname "$f")"
  cp "$BUILD/$f" "$STAGE/ctest/$f"
done
git ls-files >"$STAGE/files.txt"
xargs -d '\n' sha256sum <"$STAGE/files.txt" | sha256sum | cut -d' ' -f1 >"$STAGE/tree.sha256"
{
  echo "root=$ROOT"
  echo "build=$BUILD"
  echo "archs=${ARCHS:-90}"
  echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
  echo "tests=${tests[*]}"
  echo "benches=${benches[*]}"
} >"$STAGE/PACK_INFO"
mkdir -p .gpu
tar -C "$STAGE" -cf - . | xz -6 -T2 >.gpu/prebuilt.tar.xz
echo "gpu_pack: .gpu/prebuilt.tar.xz $(du -h .gpu/prebuilt.tar.xz | cut -f1): ${#tests[@]} tests, ${#benches[@]} benchmarks," \
     "$(ls "$STAGE/bin/lib" | wc -l) libraries; tree $(cut -c1-12 "$STAGE/tree.sha256")"
