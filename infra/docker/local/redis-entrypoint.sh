#!/bin/sh
# As the official redis image: `redis-server ARGS` listens on every address with protected mode off (the
# container network is the boundary) and works in /data.
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  exec redis-server --protected-mode no --dir /data "$@"
fi
exec "$@"
