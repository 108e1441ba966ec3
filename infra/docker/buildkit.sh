#!/usr/bin/env bash
# `docker build` through BuildKit with whichever client this machine has: `docker buildx build --load`
# where the buildx plugin is installed, else a docker CLI older than 23 with DOCKER_BUILDKIT=1 (its
# BuildKit client is built in; Debian's docker.io 20.10 is one). Newer CLIs without buildx would fall
# back to the legacy builder, which cannot read the Dockerfile's RUN --mount.
#   infra/docker/buildkit.sh build [docker build flags] CONTEXT
set -euo pipefail
[ "${1:-}" = build ] || { echo "usage: $0 build [docker build flags] CONTEXT" >&2; exit 2; }
shift

if docker buildx version >/dev/null 2>&1; then
  exec docker buildx build --load --progress=plain "$@"
fi
while read -r client; do
  version=$("$client" version --format '{{.Client.Version}}' 2>/dev/null || true)
  major=${version%%.*}
  if [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -lt 23 ]; then
    DOCKER_BUILDKIT=1 exec "$client" build --progress=plain "$@"
  fi
done < <(type -ap docker | awk '!seen[$0]++')
echo "no BuildKit-capable docker client: install the buildx plugin (Debian: docker-buildx)" >&2
exit 1
