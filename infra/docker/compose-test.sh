#!/usr/bin/env bash
# `make compose-test`: the compose stack built and brought up for real, end to end, then taken down.
#   1. a Docker engine (ensure-dockerd.sh: installs docker.io when missing, starts dockerd when not running)
#   2. the public base images, or local stand-ins built from Debian's packages where they cannot be pulled
#   3. every corral image (build-images.sh, one at a time; the host's llama-cpp-python wheel is reused)
#   4. tests/test_compose_stack.py: up with health gating, the remote-client checks, restarts, down -v
# Prints the wall time of each step and the image sizes. PYTEST (default .venv/bin/python -m pytest).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTEST=${PYTEST:-$ROOT/.venv/bin/python -m pytest}
START=$SECONDS
step() { echo "[compose-test] $* ($((SECONDS - START))s)"; }

cd "$ROOT"
step "docker engine"
bash "$HERE/ensure-dockerd.sh"
step "base images"
CORRAL_COMPOSE_IMAGES_ENV=$(mktemp /tmp/corral-compose-images.XXXXXX)
trap 'rm -f "$CORRAL_COMPOSE_IMAGES_ENV"' EXIT
export CORRAL_COMPOSE_IMAGES_ENV
bash "$HERE/build-local-bases.sh" --env-out "$CORRAL_COMPOSE_IMAGES_ENV"
CORRAL_PYTHON_IMAGE=$(sed -n 's/^CORRAL_PYTHON_IMAGE=//p' "$CORRAL_COMPOSE_IMAGES_ENV")
export CORRAL_PYTHON_IMAGE
step "corral images (base: $CORRAL_PYTHON_IMAGE)"
bash "$HERE/build-images.sh"
step "stack test"
set +e
# shellcheck disable=SC2086
$PYTEST tests/test_compose_stack.py -v -p no:cacheprovider -m compose_stack
status=$?
set -e
step "done"
echo "[compose-test] images:"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
  | grep -E "^(${CORRAL_IMAGE_PREFIX:-corral}|corral-local)/" | sed 's/^/  /' || true
echo "[compose-test] wall time: $((SECONDS - START))s (exit $status)"
exit $status
