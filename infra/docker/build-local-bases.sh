#!/usr/bin/env bash
# Pick the images the compose stack starts from: each public image (python:3.11-slim, PostgreSQL,
# Redis, MinIO and mc) when it is present or can be pulled, else a local stand-in built here from
# Debian's packages (and, for S3, moto's server from PyPI behind `minio`/`mc` shims):
#
#   corral-local/python:3.11-bookworm   debootstrap --variant=minbase bookworm + python3 (3.11), python3-venv
#   corral-local/postgres:15-bookworm   Debian's postgresql, with the official image's POSTGRES_* contract
#   corral-local/redis:7-bookworm       Debian's redis-server
#   corral-local/s3:moto-5.2.1          moto's S3 server that keeps its state on /data, as `minio` and `mc`
#
# Prints (or writes to --env-out FILE) the compose variables naming the chosen images:
#   CORRAL_PYTHON_IMAGE, CORRAL_POSTGRES_IMAGE, CORRAL_REDIS_IMAGE, CORRAL_MINIO_IMAGE, CORRAL_MC_IMAGE
# --local builds and names the stand-ins without trying the public images.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# The public defaults are said once: PYTHON_IMAGE in the Dockerfile, the others in docker-compose.yml.
PYTHON_IMAGE=$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$HERE/Dockerfile")
compose_default() {  # the default of ${VAR:-default} in docker-compose.yml
  local found
  found=$(grep -o "\${$1:-[^}]*}" "$ROOT/docker-compose.yml" | head -1 || true)
  [ -n "$found" ] || { echo "docker-compose.yml has no \${$1:-...}" >&2; exit 1; }
  found=${found#*:-}
  echo "${found%\}}"
}
POSTGRES_IMAGE=$(compose_default CORRAL_POSTGRES_IMAGE)
REDIS_IMAGE=$(compose_default CORRAL_REDIS_IMAGE)
MINIO_IMAGE=$(compose_default CORRAL_MINIO_IMAGE)
MC_IMAGE=$(compose_default CORRAL_MC_IMAGE)

LOCAL_PYTHON=corral-local/python:3.11-bookworm
LOCAL_POSTGRES=corral-local/postgres:15-bookworm
LOCAL_REDIS=corral-local/redis:7-bookworm
LOCAL_S3=corral-local/s3:moto-5.2.1
SUITE=bookworm   # Debian 12: python3 is 3.11, as in python:3.11-slim

ENV_OUT=""
FORCE_LOCAL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --env-out) ENV_OUT=$2; shift 2 ;;
    --local) FORCE_LOCAL=1; shift ;;
    *) echo "usage: $0 [--env-out FILE] [--local]" >&2; exit 2 ;;
  esac
done

log() { echo "[bases] $*" >&2; }

have() { docker image inspect "$1" >/dev/null 2>&1; }

# A public image is usable when it is here already or a pull succeeds.
usable() {
  [ "$FORCE_LOCAL" = 1 ] && return 1
  have "$1" && return 0
  docker pull --quiet "$1" >/dev/null 2>&1
}

# The Debian mirror the machine's apt already uses (no other host is assumed reachable).
debian_mirror() {
  local url
  url=$(apt-cache policy 2>/dev/null | awk '$3 ~ /^(bookworm|trixie|bullseye)\/main$/ && $2 ~ /^https?:\/\// {print $2; exit}')
  echo "${url:-http://deb.debian.org/debian}"
}

build_python_base() {
  have "$LOCAL_PYTHON" && return 0
  command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install -y debootstrap"; exit 1; }
  local rootfs mirror
  rootfs=$(mktemp -d /tmp/corral-rootfs.XXXXXX)
  mirror=$(debian_mirror)
  log "debootstrap $SUITE from $mirror (about a minute)"
  nice -n 10 debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
    "$SUITE" "$rootfs" "$mirror" >/tmp/corral-debootstrap.log 2>&1 \
    || { tail -20 /tmp/corral-debootstrap.log >&2; rm -rf "$rootfs"; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$LOCAL_PYTHON" >/dev/null
  rm -rf "$rootfs"
  log "built $LOCAL_PYTHON"
}

# One target of infra/docker/local/Dockerfile, on the local Python base; pip's index and CA travel as secrets.
build_local() {
  local target=$1 tag=$2
  have "$tag" && return 0
  log "building $tag"
  # shellcheck disable=SC2046
  nice -n 10 "$ROOT/infra/docker/buildkit.sh" build --target "$target" --tag "$tag" \
    --build-arg "BASE_IMAGE=$LOCAL_PYTHON" $(python3 "$HERE/build_secrets.py") \
    -f "$HERE/local/Dockerfile" "$HERE/local" >&2
}

choose() {  # choose VAR PUBLIC LOCAL TARGET
  local var=$1 public=$2 local_tag=$3 target=$4
  if usable "$public"; then
    log "$var: $public"
    printf '%s=%s\n' "$var" "$public"
    return
  fi
  build_python_base
  [ -n "$target" ] && build_local "$target" "$local_tag"
  log "$var: $local_tag (the public $public cannot be pulled)"
  printf '%s=%s\n' "$var" "$local_tag"
}

main() {
  local out
  out=$(
    choose CORRAL_PYTHON_IMAGE "$PYTHON_IMAGE" "$LOCAL_PYTHON" ""
    choose CORRAL_POSTGRES_IMAGE "$POSTGRES_IMAGE" "$LOCAL_POSTGRES" postgres
    choose CORRAL_REDIS_IMAGE "$REDIS_IMAGE" "$LOCAL_REDIS" redis
    choose CORRAL_MINIO_IMAGE "$MINIO_IMAGE" "$LOCAL_S3" s3
    choose CORRAL_MC_IMAGE "$MC_IMAGE" "$LOCAL_S3" s3
  )
  if [ -n "$ENV_OUT" ]; then printf '%s\n' "$out" >"$ENV_OUT"; else printf '%s\n' "$out"; fi
}

main
