#!/usr/bin/env bash
# The sentence-embedding benchmark in one command, for a GPU host:
#
#   bench/embed/run_bench.sh            # MiniLM + bert-base shapes, 200k passages, peer sweep
#   bench/embed/run_bench.sh --quick    # smoke run: a few thousand passages, seconds
#
# Builds nothing: it runs build/bin/embed_bench (or --bin PATH), made beforehand with
#   cmake -S . -B build -DCMAKE_CUDA_ARCHITECTURES=90 && cmake --build build --target embed_bench
# then, on the same GPU in the same run, 1. flurry's embed_bench, 2. the sentence-transformers peer
# (bench/peers/st_embed_peer.py, fp16, a batch-size sweep), 3. the report (bench/embed/report.py):
# tokens/s and passages/s, the ratio, flurry's time per stage and the projected time of the
# 9.6M-passage job. Results go to bench/embed/out/ (and to $OUT when set). A deadline (--budget-s,
# default 540 s, under a 10-minute call) bounds the run; the report is always written.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
START=$SECONDS
CMDLINE="bench/embed/run_bench.sh $*"
BIN=build/bin/embed_bench
MODELS=minilm,base
PASSAGES=200000
PEER_PASSAGES=50000
BATCHES=32,64,128,256,512
BUDGET=540
PEER_RESERVE=300
QUICK=0
GRAPHS=on
RUN_PEER=1
RES=bench/embed/out
PY=${PYTHON:-python3}

while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift ;;
    --models) MODELS=$2; shift ;;
    --passages) PASSAGES=$2; shift ;;
    --peer-passages) PEER_PASSAGES=$2; shift ;;
    --batch-sizes) BATCHES=$2; shift ;;
    --budget-s) BUDGET=$2; shift ;;
    --graphs) GRAPHS=$2; shift ;;
    --no-peer) RUN_PEER=0 ;;
    --out) RES=$2; shift ;;
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
               echo "flags: --bin PATH --models L --passages N --peer-passages N --batch-sizes L --budget-s S --graphs on|off|both --no-peer --out DIR --quick"
               exit 0 ;;
    *) echo "run_bench: unknown flag $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

mkdir -p "$RES" || exit 1
LOG=$RES/run.log
: >"$LOG"
left() { echo $((BUDGET - (SECONDS - START))); }
say() { printf '[%4d s] %s\n' "$((SECONDS - START))" "$*" | tee -a "$LOG"; }
fail() { say "run_bench: $*"; exit 1; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  fail "no GPU visible (nvidia-smi missing or failing): this benchmark needs one"
fi
GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n 1)
# Prebuilt binaries (tools/gpu_pack.sh) when they were made from this tree: unpacked into their
# build folder with their libraries on LD_LIBRARY_PATH (tools/gpu_prebuilt.sh).
if [ -f .gpu/prebuilt.tar.xz ] && [ -f tools/gpu_prebuilt.sh ]; then
  # shellcheck source=tools/gpu_prebuilt.sh
  source tools/gpu_prebuilt.sh
  if use_prebuilt && [ "$BIN" = build/bin/embed_bench ]; then BIN=$PREBUILT_BUILD/bin/embed_bench; fi
fi
[ -x "$BIN" ] || fail "$BIN not found: build it first (cmake --build build --target embed_bench) or give --bin PATH"
if [ "$RUN_PEER" = 1 ]; then
  PEERV=$("$PY" -c 'import torch, sentence_transformers as s; assert torch.cuda.is_available(), "no CUDA"; print("torch", torch.__version__, "sentence-transformers", s.__version__)' 2>&1) \
    || { say "peer unavailable ($(echo "$PEERV" | tail -n 1)); flurry only"; RUN_PEER=0; }
fi
COMMIT=${FLURRY_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
say "embed bench: $GPU; commit $COMMIT; models $MODELS; budget ${BUDGET} s; results in $RES"

fargs=(--models "$MODELS" --passages "$PASSAGES" --graphs "$GRAPHS")
pargs=(--models "$MODELS" --passages "$PEER_PASSAGES" --batch-sizes "$BATCHES")
if [ "$QUICK" = 1 ]; then fargs+=(--quick); pargs+=(--quick); fi
rm -f "$RES/flurry.jsonl" "$RES/peer.jsonl"

t=$(( $(left) - PEER_RESERVE )); [ "$RUN_PEER" = 0 ] && t=$(( $(left) - 10 )); [ $t -lt 30 ] && t=30
say "flurry: $BIN ${fargs[*]} (limit ${t} s)"
timeout "$t" "$BIN" "${fargs[@]}" >"$RES/flurry.jsonl" 2>"$RES/flurry.log"
rc=$?
tail -n 20 "$RES/flurry.log" | tee -a "$LOG"
[ $rc = 0 ] || say "flurry: exit $rc (124: past its time limit; $RES/flurry.log)"

if [ "$RUN_PEER" = 1 ]; then
  t=$(( $(left) - 15 )); [ $t -lt 30 ] && t=30
  say "peer: bench/peers/st_embed_peer.py ${pargs[*]} (limit ${t} s)"
  PYTHONUNBUFFERED=1 timeout "$t" "$PY" bench/peers/st_embed_peer.py "${pargs[@]}" --budget-s "$(( t - 20 ))" \
    --json-out "$RES/peer.jsonl" >/dev/null 2>"$RES/peer.log"
  rc=$?
  tail -n 20 "$RES/peer.log" | tee -a "$LOG"
  [ $rc = 0 ] || say "peer: exit $rc ($RES/peer.log)"
fi

say "report"
"$PY" bench/embed/report.py --flurry "$RES/flurry.jsonl" --peer "$RES/peer.jsonl" \
  --meta "date=$DATE" --meta "gpu=$GPU" --meta "commit=$COMMIT" --meta "peer=${PEERV:-not run}" \
  --meta "command=$CMDLINE" --summary-json "$RES/summary.json" | tee "$RES/report.txt" | tee -a "$LOG"
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  cp "$RES"/report.txt "$RES"/summary.json "$RES"/*.jsonl "$RES"/*.log "$OUT"/ 2>/dev/null
fi
say "done in $((SECONDS - START)) s"
