"""Serve one internal service's app on a listening socket that ``corral serve`` bound and handed down.

The supervisor binds every internal port itself (no gap between choosing a free port and a child
binding it), so it can also start a rarely used service only when its first connection arrives:
that connection waits in the socket's backlog until the service accepts it.

    python -P -m corral_cli.launch corral_auth.main --fd 5
    python -P -m corral_cli.launch celery -A corral_registry.worker:celery_app worker ...

Nothing is imported from the folder ``corral serve`` was started in: the supervisor starts every
child with ``-P`` (and PYTHONSAFEPATH=1), and Celery's own habit of putting that folder first on
the module path while it imports the app and its tasks is turned off here.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m corral_cli.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("module", help="the service's module with a create_app() factory, e.g. corral_auth.main")
    parser.add_argument("--fd", type=int, required=True, help="inherited file descriptor of a listening TCP socket")
    return parser.parse_args(argv)


@contextmanager
def _no_cwd_in_path() -> Iterator[None]:
    """Stands in for celery.utils.imports.cwd_in_path: the module path stays as it is."""
    yield


def run_celery(argv: list[str]) -> None:
    """Run the ``celery`` command with argv, importing the app and its tasks from installed packages only."""
    import celery.utils.imports
    from celery.__main__ import main as celery_main

    celery.utils.imports.cwd_in_path = _no_cwd_in_path  # it puts the cwd first on sys.path for -A imports
    sys.argv = ["celery", *argv]
    celery_main()


def main(argv: list[str] | None = None) -> None:
    """Run the service's app until SIGTERM/SIGINT, accepting on the inherited socket (or, after
    ``celery``, a Celery command)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["celery"]:
        run_celery(argv[1:])
        return
    args = parse_args(argv)
    sock = socket.socket(fileno=args.fd)  # family and type are read from the descriptor itself
    # log_config=None: uvicorn's records go through the service's own log setup (JSON lines stay JSON)
    config = uvicorn.Config(f"{args.module}:create_app", factory=True, access_log=False, log_level="warning",
                            log_config=None, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
