#!/usr/bin/env bash
# The DLRM benchmark in one command, for a GPU host (bench/dlrm/README.md):
#
#   bench/dlrm/run_bench.sh                  # MLPerf Terabyte + the seed, batches 4096,16384,65536
#   bench/dlrm/run_bench.sh --quick          # smoke run: small tables, small batches, seconds
#
# Builds nothing: it runs build/bin/dlrm_bench (or --bin PATH), made beforehand with
#   cmake -S . -B build -DCMAKE_CUDA_ARCHITECTURES=90 && cmake --build build --target dlrm_bench
# then, on the same GPU in the same run, 1. flurry's dlrm_bench, 2. the PyTorch peer
# (bench/peers/torch_dlrm_peer.py: eager, then torch.compile within its own budget), 3. the report
# (bench/dlrm/report.py): pairs/s side by side, the ratios and the targets. Results go to
# bench/dlrm/out/ (flurry.jsonl, peer.jsonl, report.txt, summary.json, *.log), and to $OUT when set.
#
# A deadline (--budget-s, default 540 s from the start, under a 10-minute call) bounds the run:
# flurry gets at most what is left minus the peer's reserve (--peer-reserve-s, default 240 s), the
# peer what is left then, and the report is always written. Environment: PYTHON (default python3),
# OUT (the device tool's folder), FLURRY_COMMIT (the commit to record when the tree has no .git).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
START=$SECONDS
CMDLINE="bench/dlrm/run_bench.sh $*"

BIN=build/bin/dlrm_bench
MODELS=terabyte,seed
BATCHES=""
MAX_ROWS=""
BUDGET=540
PEER_RESERVE=240
COMPILE_BUDGET=180
QUICK=0
RUN_FLURRY=1
RUN_PEER=1
MODES=eager,compile
RES=bench/dlrm/out
PY=${PYTHON:-python3}

usage() {
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

flags:
  --bin PATH            dlrm_bench to run (default build/bin/dlrm_bench)
  --models L            terabyte, seed, dcnv2 (default terabyte,seed; dcnv2 writes and loads another
                        52 GB of tables: give it its own call, e.g. --models dcnv2)
  --batch-sizes L       batch sweep for both sides (default 4096,16384,65536)
  --max-rows N          cap on any table's rows, both sides (default 40000000: the full MLPerf tables)
  --budget-s S          deadline for the whole run (default 540)
  --peer-reserve-s S    seconds kept for the peer when flurry runs (default 240)
  --compile-budget-s S  seconds torch.compile may spend compiling in all (default 180)
  --no-compile          the peer in eager mode only
  --no-flurry | --no-peer
  --out DIR             results folder (default bench/dlrm/out; its *.jsonl are replaced)
  --quick               smoke run of both sides (small tables and batches)
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift ;;
    --models) MODELS=$2; shift ;;
    --batch-sizes) BATCHES=$2; shift ;;
    --max-rows) MAX_ROWS=$2; shift ;;
    --budget-s) BUDGET=$2; shift ;;
    --peer-reserve-s) PEER_RESERVE=$2; shift ;;
    --compile-budget-s) COMPILE_BUDGET=$2; shift ;;
    --no-compile) MODES=eager ;;
    --no-flurry) RUN_FLURRY=0 ;;
    --no-peer) RUN_PEER=0 ;;
    --out) RES=$2; shift ;;
    --quick) QUICK=1 ;;
    -h|--help) usage; exit 0 ;;
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

# The GPU and torch must be there; dlrm_bench must exist (this script builds nothing).
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  fail "no GPU visible (nvidia-smi missing or failing): this benchmark needs one"
fi
GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n 1)
if [ "$RUN_PEER" = 1 ]; then
  TORCH=$("$PY" -c 'import torch; assert torch.cuda.is_available(), "torch sees no CUDA device"; print(torch.__version__)' 2>&1) \
    || fail "the peer needs PyTorch with CUDA ($PY: $(echo "$TORCH" | tail -n 1)); or run with --no-peer"
else
  TORCH="(peer not run)"
fi
# Prebuilt binaries (tools/gpu_pack.sh) when they were made from this tree: unpacked into their
# build folder with their libraries on LD_LIBRARY_PATH (tools/gpu_prebuilt.sh).
if [ -f .gpu/prebuilt.tar.xz ] && [ -f tools/gpu_prebuilt.sh ]; then
  # shellcheck source=tools/gpu_prebuilt.sh
  source tools/gpu_prebuilt.sh
  if use_prebuilt && [ "$BIN" = build/bin/dlrm_bench ]; then BIN=$PREBUILT_BUILD/bin/dlrm_bench; fi
fi
if [ "$RUN_FLURRY" = 1 ] && [ ! -x "$BIN" ]; then
  fail "$BIN not found: build it first (cmake -S . -B build -DCMAKE_CUDA_ARCHITECTURES=90 && cmake --build build --target dlrm_bench) or give --bin PATH"
fi
COMMIT=${FLURRY_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
if [ "$COMMIT" != unknown ] && git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet 2>/dev/null; then
  COMMIT="$COMMIT (dirty)"
fi
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
say "dlrm bench: $GPU; torch $TORCH; commit $COMMIT; models $MODELS; budget ${BUDGET} s; results in $RES"

common=(--models "$MODELS")
[ -n "$BATCHES" ] && common+=(--batch-sizes "$BATCHES")
[ -n "$MAX_ROWS" ] && common+=(--max-rows "$MAX_ROWS")
[ "$QUICK" = 1 ] && common+=(--quick)

# 1. flurry first: it is the product; the peer gets what is left.
rm -f "$RES/flurry.jsonl" "$RES/peer.jsonl"
if [ "$RUN_FLURRY" = 1 ]; then
  t=$(( $(left) - PEER_RESERVE )); [ "$RUN_PEER" = 0 ] && t=$(( $(left) - 10 ))
  [ $t -lt 30 ] && t=30
  say "flurry: $BIN ${common[*]} (limit ${t} s)"
  timeout "$t" "$BIN" "${common[@]}" >"$RES/flurry.jsonl" 2>"$RES/flurry.log"
  rc=$?
  tail -n 20 "$RES/flurry.log" | tee -a "$LOG"
  [ $rc = 0 ] || say "flurry: exit $rc (124: past its time limit; 3: a CPU reference check failed; $RES/flurry.log)"
fi

# 2. The peer with the time left (it skips what would overrun; its lines are written as it goes).
if [ "$RUN_PEER" = 1 ]; then
  t=$(( $(left) - 15 )); [ $t -lt 30 ] && t=30
  pargs=("${common[@]}" --modes "$MODES" --budget-s "$(( t - 20 ))" --compile-budget-s "$COMPILE_BUDGET"
         --json-out "$RES/peer.jsonl")
  say "peer: bench/peers/torch_dlrm_peer.py ${pargs[*]} (limit ${t} s)"
  PYTHONUNBUFFERED=1 timeout "$t" "$PY" bench/peers/torch_dlrm_peer.py "${pargs[@]}" >/dev/null 2>"$RES/peer.log"
  rc=$?
  tail -n 20 "$RES/peer.log" | tee -a "$LOG"
  [ $rc = 0 ] || say "peer: exit $rc ($RES/peer.log)"
fi

# 3. The report.
say "report"
"$PY" bench/dlrm/report.py --flurry "$RES/flurry.jsonl" --peer "$RES/peer.jsonl" \
  --meta "date=$DATE" --meta "gpu=$GPU" --meta "commit=$COMMIT" --meta "torch=$TORCH" \
  --meta "command=$CMDLINE" --summary-json "$RES/summary.json" | tee "$RES/report.txt" | tee -a "$LOG"

if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  cp "$RES"/report.txt "$RES"/summary.json "$RES"/flurry.jsonl "$RES"/peer.jsonl "$RES"/flurry.log \
     "$RES"/peer.log "$RES"/run.log "$OUT"/ 2>/dev/null
fi
say "done in $((SECONDS - START)) s"
