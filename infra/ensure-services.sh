#!/usr/bin/env bash
# Start the local PostgreSQL and Redis that the distributed-mode tests use, if they are not running.
# On machines without them installed this prints a note and carries on (those tests then skip).
set -uo pipefail

if command -v redis-cli >/dev/null 2>&1; then
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "starting redis on 127.0.0.1:6379"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  fi
else
  echo "redis is not installed: distributed-mode tests will be skipped"
fi

if command -v pg_isready >/dev/null 2>&1; then
  if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
    echo "starting postgresql on 127.0.0.1:5432"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
else
  echo "postgresql is not installed: distributed-mode tests will be skipped"
fi
exit 0
