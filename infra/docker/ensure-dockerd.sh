#!/usr/bin/env bash
# Make sure a Docker engine answers: nothing when `docker info` already works; otherwise install the
# engine from the distribution's packages when it is missing (Debian/Ubuntu: docker.io) and start
# dockerd in the background, its log in ${CORRAL_DOCKERD_LOG:-/tmp/corral-dockerd.log}.
# Idempotent; used by `make compose-test` and .ci/run. Starting dockerd needs root.
set -euo pipefail

LOG=${CORRAL_DOCKERD_LOG:-/tmp/corral-dockerd.log}
WAIT_SECONDS=${CORRAL_DOCKERD_WAIT:-90}

engine_answers() { docker info >/dev/null 2>&1; }

install_engine() {
  if command -v dockerd >/dev/null 2>&1; then return 0; fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "no dockerd and no apt-get: install a Docker engine (https://docs.docker.com/engine/install/)" >&2
    return 1
  fi
  echo "installing docker.io and debootstrap from the distribution's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io debootstrap >/dev/null
}

start_engine() {
  if [ "$(id -u)" != 0 ]; then
    echo "dockerd is not running and starting it needs root: start the Docker service, then retry" >&2
    return 1
  fi
  if [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    echo "dockerd (pid $(cat /var/run/docker.pid)) is starting; waiting for it"
  else
    echo "starting dockerd (log: $LOG)"
    # setsid + nohup: the engine outlives the shell (and the test) that started it.
    setsid nohup dockerd >"$LOG" 2>&1 < /dev/null &
  fi
  for _ in $(seq "$WAIT_SECONDS"); do
    engine_answers && return 0
    sleep 1
  done
  echo "dockerd did not answer within ${WAIT_SECONDS}s; its log ($LOG) ends with:" >&2
  tail -20 "$LOG" >&2 || true
  return 1
}

if engine_answers; then exit 0; fi
if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then install_engine; fi
start_engine
echo "docker engine $(docker version --format '{{.Server.Version}}' 2>/dev/null) is up"
