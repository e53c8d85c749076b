#!/usr/bin/env bash
# Fetches openai-whisper's source distribution from PyPI (no dependencies, nothing installed) and
# unpacks the data files flurry's tests and tools compare against into models-cache/openai-whisper/:
# english.json (British->American spellings for WER), mel_filters.npz and its two banks as
# mel_80.npy / mel_128.npy (an .npz is a zip of .npy files), *.tiktoken, tokenizer.py.
# Idempotent. Prints "skipped: <reason>" and exits 0 when it cannot fetch (tests then skip), unless
# --require is given.
set -uo pipefail
cd "$(dirname "$0")/.."
VERSION=20250625
DEST=models-cache/openai-whisper
STAMP=.complete-$VERSION-2
require=0; [ "${1:-}" = "--require" ] && require=1
if [ -f "$DEST/$STAMP" ]; then echo "$DEST"; exit 0; fi
fail() { echo "skipped: $*" >&2; [ $require -eq 1 ] && exit 1; exit 0; }
command -v python3 >/dev/null || fail "python3 not found"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --no-binary :all: "openai-whisper==$VERSION" -d "$tmp" >/dev/null 2>&1 \
  || fail "could not download openai-whisper==$VERSION from the package index"
tar xzf "$tmp"/openai_whisper-*.tar.gz -C "$tmp" || fail "could not unpack the openai-whisper sdist"
src=$(ls -d "$tmp"/openai_whisper-*/whisper)
mkdir -p "$DEST"
cp "$src/normalizers/english.json" "$src/assets/mel_filters.npz" "$src"/assets/*.tiktoken \
  "$src/tokenizer.py" "$DEST/"
python3 -m zipfile -e "$DEST/mel_filters.npz" "$DEST/" || fail "could not unpack mel_filters.npz"
touch "$DEST/$STAMP"
echo "$DEST"
