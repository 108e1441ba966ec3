#!/usr/bin/env bash
# Copy wheels this machine already has into infra/docker/wheels/ so the image build reuses them instead of
# compiling or downloading them again:
#   llama/  the llama-cpp-python wheel `make install` built (CORRAL_LLAMA_WHEEL_DIR, default
#           ~/.cache/corral/wheels/cpu): the build then takes LLAMA_WHEEL=prebuilt (minutes saved on 2 cores)
#   torch/  a CPU torch wheel from pip's find-links folders (PIP_FIND_LINKS, pip config), for the registry
# Prints the build args to use: `--build-arg LLAMA_WHEEL=prebuilt` when a llama wheel was staged.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VERSION=$(sed -n 's/^ARG LLAMA_CPP_VERSION=//p' "$HERE/Dockerfile" | head -1)
LLAMA_DIR=${CORRAL_LLAMA_WHEEL_DIR:-$HOME/.cache/corral/wheels/cpu}
OUT="$HERE/wheels"

stage() {  # stage FOLDER GLOB SOURCE_DIRS...: copy the newest match (if any) into wheels/FOLDER, alone
  local folder=$1 glob=$2 found=""
  shift 2
  for dir in "$@"; do
    [ -d "$dir" ] || continue
    found=$(ls -t "$dir"/$glob 2>/dev/null | head -1 || true)
    [ -n "$found" ] && break
  done
  rm -f "$OUT/$folder"/*.whl
  [ -n "$found" ] || return 1
  cp -p "$found" "$OUT/$folder/"
  echo "[wheels] $folder: $(basename "$found")" >&2
}

find_links() {
  local listed
  listed=$(python3 -m pip config get global.find-links 2>/dev/null || true)
  printf '%s\n' ${PIP_FIND_LINKS:-} $listed | sed 's|^file://||' | awk 'NF && !seen[$0]++'
}

mkdir -p "$OUT/llama" "$OUT/torch"
mapfile -t links < <(find_links)
stage torch 'torch-*+cpu-*.whl' "${links[@]}" || echo "[wheels] torch: none here; the build downloads the CPU build" >&2
if stage llama "llama_cpp_python-$VERSION-*.whl" "$LLAMA_DIR"; then
  echo "--build-arg LLAMA_WHEEL=prebuilt"
else
  echo "[wheels] llama-cpp-python $VERSION: none in $LLAMA_DIR; the build compiles it (about 10 minutes on 2 cores)" >&2
fi
