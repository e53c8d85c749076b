#!/usr/bin/env bash
# Fetches openai-whisper's shipped mel filter banks (whisper/assets/mel_filters.npz, computed by
# librosa) into models-cache/whisper-assets/ as mel_80.npy and mel_128.npy. They are not part of
# this repository: tests/audio compares runtime/ref/logmel's filters with them when present and
# skips otherwise. Uses pip's ordinary `download` of the openai-whisper source package (no install).
#
#   tools/fetch_whisper_assets.sh            # idempotent; quiet when the files are there
#   PYTHON=.venv-fixtures/bin/python tools/fetch_whisper_assets.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/models-cache/whisper-assets"
version="${WHISPER_VERSION:-20250625}"
if [[ -s "$dest/mel_80.npy" && -s "$dest/mel_128.npy" ]]; then
  exit 0
fi
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$root/.venv-fixtures/bin/python" ]]; then py="$root/.venv-fixtures/bin/python"; else py=python3; fi
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch_whisper_assets: downloading openai-whisper==$version (source package, no install)" >&2
"$py" -m pip download --quiet --no-deps --no-binary :all: "openai-whisper==$version" -d "$tmp" >&2
archive="$(find "$tmp" -maxdepth 1 -name "openai*whisper-*.tar.gz" | head -n1)"
[[ -n "$archive" ]] || { echo "fetch_whisper_assets: no openai-whisper source archive in $tmp" >&2; exit 1; }
tar -xzf "$archive" -C "$tmp" --wildcards '*/whisper/assets/mel_filters.npz'
npz="$(find "$tmp" -name mel_filters.npz | head -n1)"
mkdir -p "$dest"
# An .npz is a zip archive of .npy files; extract the two banks without needing numpy here.
"$py" -m zipfile -e "$npz" "$tmp/npz"
cp "$tmp/npz/mel_80.npy" "$tmp/npz/mel_128.npy" "$dest/"
echo "openai-whisper==$version whisper/assets/mel_filters.npz" > "$dest/SOURCE"
echo "fetch_whisper_assets: wrote $dest/mel_80.npy, mel_128.npy" >&2
