#!/usr/bin/env bash
# Sourced on the GPU host by tools/gpu_check.sh and bench/*/run_bench.sh: unpacks
# .gpu/prebuilt.tar.xz (tools/gpu_pack.sh) when it was made from this very tree, so the suite runs
# without compiling. On success `use_prebuilt` sets PREBUILT_BUILD (the build folder, relative to
# the repo root, whose bin/ holds the binaries and whose CTest files ctest can read) and exports
# LD_LIBRARY_PATH; on any doubt (no pack, another tree, a library the loader cannot find, the
# pack's source root taken by something else) it says why and returns 1, and the caller builds.
#   GPU_PREBUILT=0 turns it off.

# The folders that hold CUDA's libraries on such a host: the toolkit's and the Python wheels'.
prebuilt_cuda_dirs() {
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && printf '%s:' "$d"
  done
  python3 - <<'PY' 2>/dev/null || true
import importlib.util, os
for mod in ("nvidia.cu13", "nvidia.cublas", "nvidia.cuda_runtime", "nvidia.cufft", "nvidia.cudnn", "nvidia.nccl",
            "nvidia.nvjitlink"):
    try:
        spec = importlib.util.find_spec(mod)
    except Exception:
        spec = None
    for base in (spec.submodule_search_locations if spec and spec.submodule_search_locations else []):
        lib = os.path.join(base, "lib")
        if os.path.isdir(lib):
            print(lib, end=":")
PY
}

use_prebuilt() {
  PREBUILT_BUILD=""
  local root=$PWD pack=$PWD/.gpu/prebuilt.tar.xz tmp info src build want have missing t
  if [ "${GPU_PREBUILT:-1}" = 0 ] || [ ! -f "$pack" ]; then return 1; fi
  tmp=$(mktemp -d)
  if ! tar -C "$tmp" -xJf "$pack"; then
    echo "prebuilt: cannot unpack $pack; building instead"
    rm -rf "$tmp"
    return 1
  fi
  info=$tmp/PACK_INFO
  src=$(sed -n 's/^root=//p' "$info")
  build=$(sed -n 's/^build=//p' "$info")
  want=$(cat "$tmp/tree.sha256")
  have=$(xargs -d '\n' sha256sum <"$tmp/files.txt" 2>/dev/null | sha256sum | cut -d' ' -f1)
  if [ "$want" != "$have" ]; then
    echo "prebuilt: the pack ($(sed -n 's/^commit=//p' "$info")) was made from another tree; building instead"
    rm -rf "$tmp"
    return 1
  fi
  if [ "$(cd "$src" 2>/dev/null && pwd -P)" = "$(pwd -P)" ]; then
    # The tree the pack was made in, or one an earlier call here already unpacked it into (the
    # link above): its build is there.
    rm -rf "$tmp"
    local libs=""
    [ -d "$root/$build/bin/lib" ] && libs="$root/$build/bin/lib:"
    export LD_LIBRARY_PATH="$libs$(prebuilt_cuda_dirs)${LD_LIBRARY_PATH:-}"
    PREBUILT_BUILD=$build
    echo "prebuilt: the pack's tree is this one (made or unpacked here before); using $build as it is"
    return 0
  fi
  # The CTest files name the binaries as $src/$build/bin/...: make that path lead here.
  if [ -e "$src" ] || [ -L "$src" ]; then
    echo "prebuilt: $src (the pack's source root) exists here and is not this tree; building instead"
    rm -rf "$tmp"
    return 1
  fi
  if ! { mkdir -p "$(dirname "$src")" && ln -s "$root" "$src"; }; then
    echo "prebuilt: cannot link $src to this tree; building instead"
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "${root:?}/$build"
  mkdir -p "$root/$build"
  cp -r "$tmp/ctest/." "$root/$build/"
  mv "$tmp/bin" "$root/$build/bin"
  cp "$info" "$root/$build/PACK_INFO"
  rm -rf "$tmp"
  export LD_LIBRARY_PATH="$root/$build/bin/lib:$(prebuilt_cuda_dirs)${LD_LIBRARY_PATH:-}"
  missing=""
  for t in "$root/$build"/bin/*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    if ldd "$t" 2>&1 | grep -q "not found"; then
      missing="$missing $(basename "$t"):$(ldd "$t" 2>&1 | awk '/not found/ {print $1}' | sort -u | tr '\n' ',')"
    fi
  done
  if [ -n "$missing" ]; then
    echo "prebuilt: libraries not found for$missing; building instead"
    rm -rf "${root:?}/$build"
    return 1
  fi
  PREBUILT_BUILD=$build
  echo "prebuilt: $(sed -n 's/^commit=//p' "$root/$build/PACK_INFO") binaries in $build/bin (no build)"
  return 0
}
