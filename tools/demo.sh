#!/usr/bin/env bash
# make demo: transcribe sample speech and embed a few passages with the small real checkpoints
# `make models` installed, and recommend food-truck items with the trained DLRM, on the CPU path;
# prints the transcripts, each question's nearest passage and a few customers' recommendations. Sample speech: ../shared/data/speech/jfk.wav when present, plus two sentences spoken by
# espeak-ng.
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

# Embeddings: a few passages with all-MiniLM-L6-v2, then the nearest passage for two questions.
EMB=models-cache/all-MiniLM-L6-v2
if [ -f "$EMB/model.safetensors" ]; then
  cat > "$work/passages.txt" <<'TXT'
Paris is the capital and most populous city of France.
The horse is a domesticated, one-toed, hoofed mammal.
A graphics processing unit accelerates matrix multiplication.
Whisper transcribes speech in many languages.
TXT
  printf 'Which city is the capital of France?\nWhat hardware speeds up neural networks?\n' > "$work/questions.txt"
  echo "demo: embedding 4 passages with $EMB on the CPU" >&2
  "$BUILD/bin/flurry-embed" --device cpu --model "$EMB" --output-dir "$work/emb" "$work/passages.txt" --log-level warn
  "$BUILD/bin/flurry-embed" search --device cpu --model "$EMB" --corpus "$work/emb" --top-k 1 \
    --output-dir "$work/hits" "$work/questions.txt" --log-level warn
  python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
passages = open(f"{w}/passages.txt").read().splitlines()
questions = open(f"{w}/questions.txt").read().splitlines()
for line, q in zip(open(f"{w}/hits/search.jsonl"), questions):
    best = json.loads(line)["results"][0]
    print(f"{q} -> {passages[best['row']]} (cosine {best['score']:.3f})")
PY
  echo "demo: embeddings in $work/emb (embeddings.npy, ids.jsonl, manifest.json)" >&2
fi

# Recommendations: the food-truck DLRM (trained with PyTorch on generated data, tests/fixtures/dlrm)
# ranks the items of each customer's own country that the customer has not ordered yet.
FT=tests/fixtures/dlrm/foodtruck
echo "demo: recommending 3 items to each of 300 customers with the DLRM in $FT/model on the CPU" >&2
"$BUILD/bin/flurry-dlrm" recommend --device cpu --model "$FT/model" --customers "$FT/customers.csv" \
  --items "$FT/items.csv" --orders "$FT/orders.csv" --match country=country --items-not-ordered --top-k 3 \
  --output-dir "$work/recs" --log-level warn
python3 - "$work/recs/recommendations.jsonl" <<'PY'
import json, sys
for line in list(open(sys.argv[1]))[:3]:
    r = json.loads(line)
    items = ", ".join(f"{x['menu_item']} ({x['truck_brand']}, p={x['probability']:.2f})" for x in r["recommendations"])
    print(f"customer {r['customer_id']} in {r['city']}: {items}")
PY
echo "demo: recommendations in $work/recs (recommendations.jsonl, .csv, and the table RECOMMENDATIONS in recommendations.sqlite)" >&2
exit $rc
