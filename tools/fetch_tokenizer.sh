#!/usr/bin/env bash
# Puts the Whisper large-v3 tokenizer, in Hugging Face layout, into
# models-cache/whisper-large-v3-tokenizer/ (gitignored). Source: the openai-whisper package on
# PyPI, whose whisper/assets/multilingual.tiktoken defines the vocabulary;
# weights/tiktoken_to_hf.py turns it into tokenizer.json / vocab.json + merges.txt.
# Tests that need it (tests/tokenizer) skip when it is absent. Idempotent.
#   PYTHON=path/to/python (default .venv-fixtures/bin/python: needs tokenizers + transformers)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv-fixtures/bin/python}
OUT=$ROOT/models-cache/whisper-large-v3-tokenizer
PKG=openai-whisper==20250625
if [[ -f $OUT/tokenizer.json && -f $OUT/merges.txt ]]; then
  echo "fetch_tokenizer: $OUT already there"
  exit 0
fi
WORK=$ROOT/models-cache/openai-whisper
mkdir -p "$WORK"
if ! ls "$WORK"/openai_whisper-*.tar.gz >/dev/null 2>&1; then
  "$PY" -m pip download --quiet --no-deps --no-binary :all: "$PKG" -d "$WORK"
fi
SDIST=$(ls "$WORK"/openai_whisper-*.tar.gz | head -n1)
TOP=$(basename "$SDIST" .tar.gz)
tar -xzf "$SDIST" -C "$WORK" "$TOP/whisper/assets/multilingual.tiktoken" "$TOP/whisper/tokenizer.py"
"$PY" "$ROOT/weights/tiktoken_to_hf.py" --tiktoken "$WORK/$TOP/whisper/assets/multilingual.tiktoken" \
  --tokenizer-py "$WORK/$TOP/whisper/tokenizer.py" --num-languages 100 --out "$OUT"
echo "fetch_tokenizer: wrote $OUT"
