#!/usr/bin/env bash
# Build every corral image, one at a time, with the names docker-compose.yml gives them:
#   ${CORRAL_IMAGE_PREFIX:-corral}/{api,auth,websearch,registry,inference-cpu}:${CORRAL_IMAGE_TAG:-latest}
# CORRAL_PYTHON_IMAGE picks the Python base (default: the Dockerfile's python:3.11-slim); wheels the host
# already has are reused (stage-wheels.sh) and pip's settings travel as secrets (build_secrets.py).
#   infra/docker/build-images.sh [TARGET...]      # default: all five
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PREFIX=${CORRAL_IMAGE_PREFIX:-corral}
TAG=${CORRAL_IMAGE_TAG:-latest}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(api auth websearch registry inference)

common=(-f "$HERE/Dockerfile")
[ -n "${CORRAL_PYTHON_IMAGE:-}" ] && common+=(--build-arg "PYTHON_IMAGE=$CORRAL_PYTHON_IMAGE")
# shellcheck disable=SC2207
common+=($(python3 "$HERE/build_secrets.py") $("$HERE/stage-wheels.sh"))

for target in "${TARGETS[@]}"; do
  name=$target
  [ "$target" = inference ] && name=inference-cpu
  echo "[images] $PREFIX/$name:$TAG (target $target)" >&2
  start=$SECONDS
  previous=$(docker image inspect -f '{{.Id}}' "$PREFIX/$name:$TAG" 2>/dev/null || true)
  nice -n 10 "$HERE/buildkit.sh" build "${common[@]}" --target "$target" --tag "$PREFIX/$name:$TAG" "$ROOT"
  # The image this tag named before, now nameless: drop it so rebuilds do not pile up on disk.
  if [ -n "$previous" ] && [ "$(docker image inspect -f '{{.Id}}' "$PREFIX/$name:$TAG")" != "$previous" ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
  fi
  echo "[images] $PREFIX/$name:$TAG built in $((SECONDS - start))s, $(docker image inspect -f '{{.Size}}' "$PREFIX/$name:$TAG" | awk '{printf "%.0f MB", $1/1e6}')" >&2
done
