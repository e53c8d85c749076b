#!/usr/bin/env bash
# Installs the Debian packages flurry needs when any is missing. Idempotent; prints nothing when all
# are present; when not root, prints the exact command to run instead.
set -euo pipefail

PACKAGES=(
  cmake ninja-build g++ pkg-config          # build
  libgtest-dev                              # tests
  clang libclang-rt-14-dev                  # libFuzzer target (make fuzz)
  libopenblas-dev                           # CPU reference GEMM
  nlohmann-json3-dev libcli11-dev           # config/header JSON, command lines
  libsndfile1-dev libsoxr-dev               # audio decode + resample
  libopenmpi-dev openmpi-bin                # distributed runner
  espeak-ng sox                             # synthesized speech in tests
  zlib1g-dev                                # compression ratio (Whisper temperature fallback)
  libutf8proc-dev                           # Unicode: NFD/NFKC, categories, case (tokenizers, WER)
  libsqlite3-dev                            # flurry-dlrm recommend: the SQLite table
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "flurry: missing Debian packages: ${missing[*]}" >&2
  echo "run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "flurry: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
