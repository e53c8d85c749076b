#!/usr/bin/env bash
# The Whisper benchmark in one command, for a GPU host (bench/whisper/README.md):
#
#   bench/whisper/run_bench.sh                 # 640-clip subset, HF sweep 32,64,128,192
#   bench/whisper/run_bench.sh --full          # all 2,620 clips (see the README for the time)
#
# 1. builds gemm_bench and whisper_bench into $BUILD_GPU (default build-gpu, as make gpu-check) when
#    nvcc is there and a binary is missing, 2. writes the workload (WAV + manifest), 3. measures the
#    ceilings (gemm_bench f16 at the encoder's shapes; torch's device copy and GEMM), 4. runs
#    flurry's whisper_bench when it exists: the product pipeline (--pipeline, what flurry-whisper
#    runs) when a large-v3 tokenizer folder is at hand (--tokenizer, or .gpu/ or models-cache/
#    whisper-large-v3-tokenizer from tools/fetch_tokenizer.sh), then the engine alone (the
#    token-level scheduler) on the same workload, and the product again under --max-gpu-memory
#    (default 20GiB, an A10G-class card; --cap-gib), 5. runs the Hugging Face peer with what time is left,
#    6. prints the table, the ratio and the physical limit, and writes a draft bench/RESULTS.md
#    entry. Everything goes to build-whisper-bench/run-<time>/, and to $OUT when it is set.
#
# A deadline (--budget-s, default 540 s from the start) bounds the whole run: each step gets what
# is left, the peer skips batch sizes that would end past it, and the report is always written.
# Environment: PYTHON (default python3), BUILD_GPU, CUDA_ARCH (default 90), BUILD_LIMIT_S (default
# 300), FLURRY_COMMIT (the commit to record when the tree has no .git), FLURRY_ARGS (extra
# whisper_bench flags), OUT (the device tool's folder: the report and logs are copied there).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
START=$SECONDS
CMDLINE="bench/whisper/run_bench.sh $*"

SCALE=640
BATCH_SIZES=""
FLURRY_BATCH=""
BUILD=${BUILD_GPU:-build-gpu}
ARCH=${CUDA_ARCH:-90}
DO_BUILD=auto
RUN_PEER=1
RUN_FLURRY=1
BUDGET=540
SEED=2620
APPEND=0
CPU_TEST=0
SAVE_WEIGHTS=""
TOKENIZER=""
RUN_ENGINE=1
CAP_GIB=20
PY=${PYTHON:-python3}
WORKDIR=build-whisper-bench

usage() {
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

flags:
  --full               all 2,620 clips (default: --scale 640)
  --scale N            N clips of the full workload, spread over its durations
  --batch-sizes L      HF batch sizes to sweep (default 32,64,128,192; with --full 192,128)
  --flurry-batch N     whisper_bench --batch-size N (default: whisper_bench's own choice)
  --budget-s S         deadline for the whole run in seconds (default 540)
  --build | --no-build build the binaries even if present | never build
  --no-peer | --no-flurry
  --tokenizer DIR      large-v3 tokenizer folder for the product pipeline (default: .gpu/ or
                       models-cache/whisper-large-v3-tokenizer when present; none: engine only)
  --no-engine          with the pipeline, skip the engine-only (scheduler) row
  --cap-gib N          also run the product with --max-gpu-memory NGiB (default 20; 0: skip)
  --save-weights DIR   the peer saves its random weights there (3.1 GB) for whisper_bench --weights
  --seed N             workload seed (default 2620)
  --append-results     also append the draft entry to bench/RESULTS.md
  --cpu-test           check the script without a GPU: tiny model on the CPU, no build, no ceilings
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --full) SCALE=2620 ;;
    --scale) SCALE=$2; shift ;;
    --batch-sizes) BATCH_SIZES=$2; shift ;;
    --flurry-batch) FLURRY_BATCH=$2; shift ;;
    --budget-s) BUDGET=$2; shift ;;
    --build) DO_BUILD=yes ;;
    --no-build) DO_BUILD=no ;;
    --no-peer) RUN_PEER=0 ;;
    --no-flurry) RUN_FLURRY=0 ;;
    --tokenizer) TOKENIZER=$2; shift ;;
    --no-engine) RUN_ENGINE=0 ;;
    --cap-gib) CAP_GIB=$2; shift ;;
    --save-weights) SAVE_WEIGHTS=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --append-results) APPEND=1 ;;
    --cpu-test) CPU_TEST=1; DO_BUILD=no ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_bench: unknown flag $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$BATCH_SIZES" ]; then
  if [ "$SCALE" -ge 2620 ]; then BATCH_SIZES=192,128; else BATCH_SIZES=32,64,128,192; fi
  [ "$CPU_TEST" = 1 ] && BATCH_SIZES=8
fi

RES=$WORKDIR/run-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RES"
LOG=$RES/run.log
elapsed() { echo $((SECONDS - START)); }
left() { echo $((BUDGET - (SECONDS - START))); }
say() { printf '[%4d s] %s\n' "$(elapsed)" "$*" | tee -a "$LOG"; }

if [ "$CPU_TEST" = 0 ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "run_bench: no GPU visible (nvidia-smi); use --cpu-test to check the script alone" >&2
    exit 1
  fi
  GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n 1)
else
  GPU="cpu (--cpu-test)"
fi
COMMIT=${FLURRY_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
if [ "$COMMIT" != unknown ] && git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet 2>/dev/null; then
  COMMIT="$COMMIT (dirty)"
fi
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
say "whisper bench: $GPU; commit $COMMIT; scale $SCALE; budget ${BUDGET} s; results in $RES"

# 1. Build (the GPU host is bare: CUDA, cmake, ninja, python3; .gpu/ from tools/gpu_prepare.sh),
# unless prebuilt binaries made from this tree are at hand (tools/gpu_pack.sh; tools/gpu_prebuilt.sh
# unpacks them and puts their libraries on LD_LIBRARY_PATH).
if [ "$CPU_TEST" = 0 ] && [ -z "${BUILD_GPU:-}" ] && [ -f .gpu/prebuilt.tar.xz ]; then
  # shellcheck source=tools/gpu_prebuilt.sh
  source tools/gpu_prebuilt.sh
  use_prebuilt >"$RES/prebuilt.log" 2>&1
  rc=$?
  tee -a "$LOG" <"$RES/prebuilt.log"
  if [ $rc = 0 ]; then BUILD=$PREBUILT_BUILD; DO_BUILD=no; fi
fi
GEMM_BIN=$BUILD/bin/gemm_bench
FLURRY_BIN=$BUILD/bin/whisper_bench
COPY_BIN=$BUILD/bin/copy_bench
need_build=0
if [ "$DO_BUILD" = yes ]; then need_build=1; fi
if [ "$DO_BUILD" = auto ] && { [ ! -x "$GEMM_BIN" ] || [ ! -x "$FLURRY_BIN" ]; }; then need_build=1; fi
if [ $need_build = 1 ] && ! command -v nvcc >/dev/null 2>&1; then
  say "build: nvcc not found; using what $BUILD/bin holds"
  need_build=0
fi
if [ $need_build = 1 ]; then
  say "build: configure $BUILD (sm_$ARCH, tests off)"
  args=(-S . -B "$BUILD" -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DFLURRY_CUDA=ON -DFLURRY_BENCH=ON
        -DFLURRY_TESTS=OFF -DCMAKE_BUILD_TYPE=Release)
  command -v ninja >/dev/null 2>&1 && [ ! -f "$BUILD/Makefile" ] && args+=(-G Ninja)
  [ -f .gpu/include/nlohmann/json.hpp ] && args+=(-DFLURRY_JSON_INCLUDE="$ROOT/.gpu/include")
  if cmake "${args[@]}" >"$RES/build.log" 2>&1; then
    # One target at a time: whisper_bench may not exist yet, and that must not stop gemm_bench.
    # The build gets at most BUILD_LIMIT_S (default 300 s) of the budget.
    build_end=$(( SECONDS + ${BUILD_LIMIT_S:-300} ))
    for t in gemm_bench whisper_bench copy_bench; do
      tl=$(( build_end - SECONDS )); [ $tl -gt $(( $(left) - 60 )) ] && tl=$(( $(left) - 60 ))
      if [ $tl -lt 5 ]; then say "build: no time left for $t"; continue; fi
      if timeout "$tl" cmake --build "$BUILD" -j "$(nproc)" --target "$t" >>"$RES/build.log" 2>&1; then
        say "build: $t ok"
      else
        say "build: $t not built (no such target yet, or failed: $RES/build.log)"
      fi
    done
  else
    say "build: configure failed ($RES/build.log); using what $BUILD/bin holds"
  fi
fi

# 2. Workload (generated here: the full audio is ~620 MB, too much to carry).
WL=$WORKDIR/workload-s$SEED-n$SCALE
say "workload: $WL"
if ! "$PY" bench/whisper/workload.py --out "$WL" --scale "$SCALE" --seed "$SEED" 2>&1 | tee -a "$LOG"; then
  say "workload: failed"; exit 1
fi

# 3. Ceilings measured in this run: cuBLASLt GEMM at the encoder's shapes, and copy bandwidth.
if [ "$CPU_TEST" = 0 ] && [ -x "$GEMM_BIN" ]; then
  say "ceilings: $GEMM_BIN --dtype f16 --filter whisper-l3-enc --csv"
  timeout 120 "$GEMM_BIN" --dtype f16 --filter whisper-l3-enc --csv >"$RES/gemm_bench.csv" 2>&1 \
    || say "ceilings: gemm_bench failed ($RES/gemm_bench.csv)"
else
  say "ceilings: no $GEMM_BIN; the GEMM ceiling comes from torch (the peer's --ceilings)"
fi
if [ "$CPU_TEST" = 0 ] && [ -x "$COPY_BIN" ]; then
  timeout 60 "$COPY_BIN" >"$RES/copy_bench.txt" 2>&1 || say "ceilings: copy_bench failed"
fi

# 4. flurry first: it is the product, and the peer can use whatever time is left. The product
# pipeline needs a tokenizer beside the random weights; without one only the engine runs.
if [ -z "$TOKENIZER" ]; then
  for d in .gpu/whisper-large-v3-tokenizer models-cache/whisper-large-v3-tokenizer; do
    if [ -f "$d/tokenizer.json" ] || [ -f "$d/vocab.json" ]; then TOKENIZER=$d; break; fi
  done
fi
FLURRY_JSON=""
ENGINE_JSON=""
CAP_JSON=""
# run_flurry NAME ARGS...: whisper_bench into $RES/NAME.log and $RES/NAME.json; prints the JSON path.
run_flurry() {
  local name=$1 t rc
  shift
  t=$(( $(left) - 90 )); [ $t -lt 30 ] && t=30
  say "flurry ($name): $FLURRY_BIN $* (limit ${t} s)" >&2
  timeout "$t" "$FLURRY_BIN" "$@" >"$RES/$name.log" 2>&1
  rc=$?
  tail -n 20 "$RES/$name.log" | tee -a "$LOG" >&2
  grep -E '^\s*\{' "$RES/$name.log" | tail -n 1 >"$RES/$name.json"
  if [ -s "$RES/$name.json" ]; then echo "$RES/$name.json"; else say "flurry ($name): no JSON line (exit $rc)" >&2; fi
}
if [ "$RUN_FLURRY" = 1 ] && [ -x "$FLURRY_BIN" ]; then
  fargs=(--workload "$WL/manifest.tsv" --random-weights large-v3 --forced-lengths)
  [ -n "$FLURRY_BATCH" ] && fargs+=(--batch-size "$FLURRY_BATCH")
  [ -n "$SAVE_WEIGHTS" ] && [ -f "$SAVE_WEIGHTS/config.json" ] && fargs=(--workload "$WL/manifest.tsv" --weights "$SAVE_WEIGHTS" --forced-lengths)
  # shellcheck disable=SC2206
  [ -n "${FLURRY_ARGS:-}" ] && fargs+=(${FLURRY_ARGS})
  if [ -n "$TOKENIZER" ] && [ -z "$SAVE_WEIGHTS" ]; then
    FLURRY_JSON=$(run_flurry flurry "${fargs[@]}" --pipeline --tokenizer "$TOKENIZER")
    [ "$RUN_ENGINE" = 1 ] && ENGINE_JSON=$(run_flurry engine "${fargs[@]}" --no-ceilings)
    if [ "$CAP_GIB" != 0 ] && [ -z "$FLURRY_BATCH" ]; then
      CAP_JSON=$(run_flurry capped "${fargs[@]}" --pipeline --tokenizer "$TOKENIZER" --no-ceilings \
                 --max-gpu-memory "${CAP_GIB}GiB")
    fi
  else
    say "flurry: no large-v3 tokenizer (--tokenizer; tools/fetch_tokenizer.sh): the engine alone, not the product pipeline"
    FLURRY_JSON=$(run_flurry flurry "${fargs[@]}")
  fi
elif [ "$RUN_FLURRY" = 1 ]; then
  say "flurry: $FLURRY_BIN not found (not written yet, or not built): peer only"
fi

# 5. The Hugging Face peer with the time left (its own guard skips batch sizes that would overrun).
PEER_JSON=""
if [ "$RUN_PEER" = 1 ]; then
  pargs=(--workload "$WL/manifest.tsv" --batch-sizes "$BATCH_SIZES" --json "$RES/peer.json")
  if [ "$CPU_TEST" = 1 ]; then pargs+=(--tiny --device cpu --threads 1); else pargs+=(--ceilings); fi
  [ -n "$SAVE_WEIGHTS" ] && pargs+=(--save-weights "$SAVE_WEIGHTS")
  t=$(( $(left) - 15 )); [ $t -lt 30 ] && t=30
  pargs+=(--budget-s "$(( t - 10 ))")
  say "peer: bench/peers/hf_whisper_peer.py ${pargs[*]} (limit ${t} s)"
  PYTHONUNBUFFERED=1 timeout "$t" "$PY" bench/peers/hf_whisper_peer.py "${pargs[@]}" >"$RES/peer.log" 2>&1
  rc=$?
  grep -v '^RESULT ' "$RES/peer.log" | tail -n 25 | tee -a "$LOG"
  if [ -s "$RES/peer.json" ]; then PEER_JSON=$RES/peer.json; else say "peer: no result (exit $rc, $RES/peer.log)"; fi
fi

# 6. Report and the draft RESULTS.md entry.
say "report"
"$PY" bench/whisper/report.py --manifest "$WL/manifest.json" ${PEER_JSON:+--peer "$PEER_JSON"} \
  ${FLURRY_JSON:+--flurry "$FLURRY_JSON"} ${ENGINE_JSON:+--engine "$ENGINE_JSON"} \
  ${CAP_JSON:+--capped "$CAP_JSON"} --gemm-csv "$RES/gemm_bench.csv" \
  --meta "date=$DATE" --meta "gpu=$GPU" --meta "commit=$COMMIT" --meta "command=$CMDLINE" \
  --draft "$RES/RESULTS-entry.md" --json "$RES/summary.json" | tee "$RES/report.txt"
if [ "$APPEND" = 1 ]; then
  cat "$RES/RESULTS-entry.md" >>bench/RESULTS.md
  say "appended the entry to bench/RESULTS.md"
fi
if [ -n "${OUT:-}" ] && [ -d "${OUT}" ]; then
  # At most 8 files come back from the device machine.
  for f in report.txt RESULTS-entry.md summary.json run.log peer.log flurry.log engine.log capped.log; do
    [ -f "$RES/$f" ] && tail -c 4000000 "$RES/$f" >"$OUT/$f"
  done
fi
say "done in $(elapsed) s; draft entry: $RES/RESULTS-entry.md"
