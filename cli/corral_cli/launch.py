"""Serve one internal service's app on a listening socket that ``corral serve`` bound and handed down.

The supervisor binds every internal port itself (no gap between choosing a free port and a child
binding it), so it can also start a rarely used service only when its first connection arrives:
that connection waits in the socket's backlog until the service accepts it.

    python -P -m corral_cli.launch --lifeline 7 corral_auth.main --fd 5
    python -P -m corral_cli.launch --lifeline 7 celery -A corral_registry.worker:celery_app worker ...

``--lifeline FD`` ties the process's life to the supervisor's (see corral_cli.lifeline). On SIGTERM a service
stops accepting at once and gives running requests CORRAL_SHUTDOWN_GRACE seconds; then the app's waits on other
services are cut (the gateway's streams end with a final ``server shutting down`` line) and, a moment later,
whatever still runs is cancelled.

Nothing is imported from the folder ``corral serve`` was started in: the supervisor starts every
child with ``-P`` (and PYTHONSAFEPATH=1), and Celery's own habit of putting that folder first on
the module path while it imports the app and its tasks is turned off here.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from corral_common.env import env_float
from corral_common.memlimit import apply_memory_limit
from corral_common.shutdown import ENDING_SECONDS, Shutdown, shutdown_grace

from corral_cli import lifeline


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

    from corral_common.tasks import WORKER_IDLE_EXIT_ENV

    celery.utils.imports.cwd_in_path = _no_cwd_in_path  # it puts the cwd first on sys.path for -A imports
    sys.argv = ["celery", *argv]
    idle = env_float(os.environ, WORKER_IDLE_EXIT_ENV, 0.0)
    if idle > 0:
        threading.Thread(target=_exit_when_idle, args=(idle,), name="idle-exit", daemon=True).start()
    celery_main()


def _exit_when_idle(seconds: float) -> None:
    """End this worker once it has run no task for ``seconds`` (a worker serve starts on first use frees its
    memory until the next job). SIGTERM is Celery's warm shutdown: it takes no new message, and one it already
    took runs to its end first; serve starts the worker again when the next job is queued."""
    from celery.worker import state

    idle_since = time.monotonic()
    while True:
        time.sleep(min(1.0, seconds / 4))
        if state.reserved_requests or state.active_requests:  # reserved: taken from the queue, running or not
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= seconds:
            os.kill(os.getpid(), signal.SIGTERM)
            return


class GracefulServer(uvicorn.Server):
    """uvicorn's server, which ends the app's grace period (``app.state.shutdown``) ``grace`` seconds after it
    began to stop; uvicorn itself cancels what still runs ENDING_SECONDS after that."""

    def __init__(self, config: uvicorn.Config, app_shutdown: Shutdown | None, grace: float) -> None:
        super().__init__(config)
        self.app_shutdown = app_shutdown
        self.grace = grace

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.app_shutdown is not None:
            asyncio.get_running_loop().call_later(self.grace, self.app_shutdown.end_grace)
        await super().shutdown(sockets)


def serve_app(module: str, fd: int, app: Any = None) -> None:
    """Serve ``module``'s ``create_app()`` (or ``app``, which serve built with it) on the listening socket ``fd``
    until SIGTERM/SIGINT."""
    sock = socket.socket(fileno=fd)  # family and type are read from the descriptor itself
    app = app if app is not None else importlib.import_module(module).create_app()
    grace = shutdown_grace(os.environ)
    # log_config=None: uvicorn's records go through the service's own log setup (JSON lines stay JSON)
    config = uvicorn.Config(app, access_log=False, log_level="warning", log_config=None,
                            timeout_graceful_shutdown=grace + ENDING_SECONDS)
    GracefulServer(config, getattr(app.state, "shutdown", None), grace).run(sockets=[sock])


def main(argv: list[str] | None = None, app: Any = None) -> None:
    """Run the service's app until SIGTERM/SIGINT, accepting on the inherited socket (or, after
    ``celery``, a Celery command); with ``--lifeline FD`` first, only as long as the supervisor lives.
    ``app``: the service's app already built (by serve, before it forked this process)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [lifeline.OPTION]:
        lifeline.hold(int(argv[1]))
        argv = argv[2:]
    apply_memory_limit(argv[0] if argv else "")  # each service's ceiling on itself (corral_common.memlimit)
    if argv[:1] == ["celery"]:
        run_celery(argv[1:])
        return
    args = parse_args(argv)
    serve_app(args.module, args.fd, app)


if __name__ == "__main__":
    main()
