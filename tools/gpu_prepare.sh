#!/usr/bin/env bash
# Run on the development machine before shipping the tree to a bare GPU host (no network, no
# Debian packages; only nvcc, cmake, ninja and python3 there). Copies the two header/source-only
# dependencies the GPU build needs into the gitignored folder .gpu/, which tools/gpu_check.sh
# passes to CMake when present:
#   .gpu/include/nlohmann   <- /usr/include/nlohmann   (nlohmann-json3-dev)
#   .gpu/googletest         <- /usr/src/googletest     (googletest)
#   .gpu/zlib               <- zlib.h, zconf.h, libz.a  (zlib1g-dev; Whisper's decoding uses zlib)
#   .gpu/utf8proc           <- utf8proc.h, libutf8proc.a (libutf8proc-dev; the tokenizers' Unicode)
#   .gpu/whisper-large-v3-tokenizer <- models-cache/ (tools/fetch_tokenizer.sh, when it has run):
#                              bench/whisper/run_bench.sh runs the product pipeline with it
#   .gpu/prebuilt.tar.xz    <- tools/gpu_pack.sh over ${BUILD:-build} (a CUDA build for sm_90)
set -euo pipefail
cd "$(dirname "$0")/.."
JSON_SRC=${JSON_SRC:-/usr/include/nlohmann}
GTEST_SRC=${GTEST_SRC:-/usr/src/googletest}
for src in "$JSON_SRC" "$GTEST_SRC"; do
  if [ ! -d "$src" ]; then
    echo "gpu_prepare: $src not found; run 'make deps' first" >&2
    exit 1
  fi
done
mkdir -p .gpu/include
rm -rf .gpu/include/nlohmann .gpu/googletest
cp -rL "$JSON_SRC" .gpu/include/nlohmann
cp -rL "$GTEST_SRC" .gpu/googletest
mkdir -p .gpu/zlib
cp /usr/include/zlib.h /usr/include/zconf.h /usr/lib/x86_64-linux-gnu/libz.a .gpu/zlib/
mkdir -p .gpu/utf8proc
cp /usr/include/utf8proc.h /usr/lib/x86_64-linux-gnu/libutf8proc.a .gpu/utf8proc/
rm -rf .gpu/whisper-large-v3-tokenizer
if [ -d models-cache/whisper-large-v3-tokenizer ]; then
  cp -r models-cache/whisper-large-v3-tokenizer .gpu/
else
  echo "gpu_prepare: no models-cache/whisper-large-v3-tokenizer (tools/fetch_tokenizer.sh): the Whisper bench" \
       "will run the engine alone, not the product pipeline" >&2
fi
# The suite's binaries, prebuilt here for sm_90 from this tree (tools/gpu_pack.sh), so that the GPU
# host runs them instead of compiling (it builds when the pack is stale). NO_PACK=1 skips this.
if [ "${NO_PACK:-0}" != 1 ] && [ -f "${BUILD:-build}/CMakeCache.txt" ]; then
  tools/gpu_pack.sh || echo "gpu_prepare: no prebuilt pack (tools/gpu_pack.sh failed); the GPU host will build" >&2
fi
echo "gpu_prepare: .gpu/ ready ($(du -sh .gpu | cut -f1)): include/nlohmann, googletest, zlib, utf8proc"
