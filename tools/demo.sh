#!/usr/bin/env bash
# make demo: transcribe sample speech with the small real checkpoint `make models` installed, on the
# CPU path, and print the transcripts. Sample speech: ../shared/data/speech/jfk.wav when present,
# plus two sentences spoken by espeak-ng.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
MODEL=models-cache/whisper-base
if [ ! -f "$MODEL/model.safetensors" ]; then
  echo "demo: no checkpoint at $MODEL (tools/fetch_whisper_model.sh could not fetch it)" >&2
  exit 1
fi
work=$(mktemp -d /tmp/flurry-demo.XXXXXX)
inputs=()
[ -f ../shared/data/speech/jfk.wav ] && inputs+=("../shared/data/speech/jfk.wav")
if command -v espeak-ng >/dev/null; then
  espeak-ng -v en-us -s 150 -w "$work/sentence1.wav" "flurry transcribes thousands of audio files on many GPUs."
  espeak-ng -v en-us -s 150 -w "$work/sentence2.wav" "The quick brown fox jumps over the lazy dog."
  inputs+=("$work/sentence1.wav" "$work/sentence2.wav")
fi
[ ${#inputs[@]} -gt 0 ] || { echo "demo: no sample speech (no ../shared/data, no espeak-ng)" >&2; exit 1; }
echo "demo: transcribing ${#inputs[@]} file(s) with $MODEL on the CPU" >&2
set +e
"$BUILD/bin/flurry-whisper" --model "$MODEL" --output-dir "$work/out" --output_format txt "${inputs[@]}"
rc=$?
set -e
python3 - "$work/out/results.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["status"] == "ok":
        print(f"{r['id']} [{r['language']}, {r['duration']:.1f} s]:{r['text']}")
    else:
        print(f"{r['id']}: ERROR {r['error']}")
PY
echo "demo: results in $work/out (results.jsonl, manifest.json, outputs/ with one .txt per file)" >&2
exit $rc
