"""The embedded default's services forked from ``corral serve`` itself, which imported their common modules once.

A fresh interpreter per service imports the same fastapi, pydantic, uvicorn, starlette, sqlalchemy, celery,
structlog, httpx and corral_common again, each copy its own private memory (about 40 MiB a service). Here
serve imports them, and the services that start with it, once; freezes the garbage collector's view of those
objects (``gc.freeze``, so that no collection in a service writes to their pages); and forks each service from
that state: the pages stay shared between serve and every service until one of them writes to them.

Each service is still a process of its own, started in a session of its own: a crash or a ``kill -9`` takes
that service only, and the supervisor forks it again from the same clean state. It runs exactly what
``python -P -m corral_cli.launch ARGS`` would run, with its own environment, only the descriptors it is
handed (its listening socket, the lifeline's read end) and stdio unbuffered, and takes that command line as
its process title (``ps``, ``/proc/PID/cmdline``). Like a spawned service it dies with serve: it holds the
lifeline (``corral_cli.lifeline``) and serve is its parent. Serve forks only from its main thread, and runs
no other threads that could hold a lock at the moment of a fork.

CORRAL_FORK_SERVICES=0 starts each service in a fresh interpreter instead (the distributed mode always does:
there each service is started on its own).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from corral_common.env import env_bool

FORK_ENV = "CORRAL_FORK_SERVICES"
# What every service that starts with serve imports (the gateway, the model store, inference): their web stack,
# their clients. The rarely used ones (auth, websearch, the job workers) import what else they need after their
# fork, so an idle corral does not hold it.
COMMON = ("uvicorn", "uvicorn.lifespan.on", "uvicorn.protocols.http.h11_impl", "uvicorn.protocols.http.httptools_impl",
          "uvicorn.protocols.websockets.auto", "fastapi", "anyio", "httpx", "httpcore", "corral_cli.launch",
          "anyio._core._sockets", "anyio._core._streams")  # what each service's first request imports
# What each of those services imports besides, loaded just before its first fork (corral_cli.supervisor forks the
# gateway first): a client waits on the gateway's port while serve imports the model store's database and job
# queue, and a request to a service not yet forked waits in its socket's backlog.
SERVICE_PRELOAD = {
    "corral_api.main": ("corral_api.main",),
    "corral_registry.main": ("corral_registry.main",
                             "celery.app.base", "celery.app.task", "celery.result"),  # the job queue's sending side
    "corral_inference.main": ("corral_inference.main",
                              "corral_inference.completion", "corral_inference.vision"),  # but llama_cpp and numpy
}
STDIO = (0, 1, 2)


def forking_enabled(environ: Mapping[str, str]) -> bool:
    """Whether serve forks its services from itself (CORRAL_FORK_SERVICES, default on; Linux and macOS)."""
    return hasattr(os, "fork") and env_bool(environ, FORK_ENV, default=True)


class ForkedProcess:
    """A forked service as the supervisor sees it: the part of ``subprocess.Popen`` it uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code (negative: the signal that ended it) once it has ended, else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: it has ended, how is not known
                self.returncode = 255
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end, at most ``timeout`` seconds (then subprocess.TimeoutExpired, as Popen.wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def preload(modules: Iterable[str]) -> None:
    """Import what the services share, then freeze it: later collections, here or in a service, leave those
    objects' pages alone. The collector is off while importing, so freed objects leave no holes in them."""
    from corral_common.tls import tls_context

    _claim_title_room()
    gc.disable()
    try:
        for name in modules:
            try:
                importlib.import_module(name)
            except ImportError:  # an optional part not installed: the service that needs it reports it
                continue
        tls_context()  # the CA store every HTTPS client verifies with, parsed once for all
    finally:
        gc.freeze()
        gc.enable()


def prepare_service(module: str, env: Mapping[str, str]) -> Any:
    """Before ``module``'s first fork: import what it alone needs (``SERVICE_PRELOAD``), migrate its databases and
    build its app (None for a service that imports and builds it itself after its fork)."""
    if module in SERVICE_PRELOAD:
        preload(SERVICE_PRELOAD[module])
    migrate_databases(module, env)
    return build_app(module, env)


def build_app(module: str, env: Mapping[str, str]) -> Any:
    """``module``'s ``create_app()`` built here, in serve, with the service's environment (its settings are read from
    it), for the service to run after the fork: what building it allocates is then shared, and a restarted service
    gets the same app, never started. None when ``module`` was not preloaded or building fails (the service builds
    it itself then, and reports what is wrong)."""
    if module not in sys.modules:
        return None
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return sys.modules[module].create_app()
    except Exception as exc:  # noqa: BLE001 - the service builds it again, and fails in its own log if it must
        structlog.get_logger("corral.serve").warning("service app not built before the fork", module=module,
                                                     error=repr(exc))
        return None
    finally:
        os.environ.clear()
        os.environ.update(saved)


def migrate_databases(module: str, env: Mapping[str, str]) -> None:
    """Run ``module``'s ``migrate_databases()`` (its schema upgrades) with the service's environment in a process
    forked for it alone, which ends with it: Alembic and the migration scripts (~15-25 MiB a service) are loaded
    there, never in serve or the service, which then finds its databases current. Nothing when ``module`` was
    not preloaded or has no such function; a failure is the service's to report (it migrates itself then)."""
    target = getattr(sys.modules.get(module), "migrate_databases", None)
    if target is None:
        return
    _flush_stdio()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.environ.clear()
            os.environ.update(env)
            target()
            code = 0
        except BaseException:  # noqa: BLE001 - never returns into serve's code
            traceback.print_exc()
        finally:
            _flush_stdio()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        structlog.get_logger("corral.serve").warning("databases not migrated before the fork", module=module)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
        if stream is not None:
            stream.flush()


def fork_service(launch_args: list[str], env: Mapping[str, str], keep_fds: Iterable[int], title: str,
                 app: Any = None) -> ForkedProcess:
    """Fork a process that runs ``corral_cli.launch`` with ``launch_args`` (and ``app``, built by ``build_app``), as
    ``title``; call from the main thread."""
    _flush_stdio()
    gc.freeze()  # what serve made since the last fork stays shared too
    pid = os.fork()
    if pid:
        return ForkedProcess(pid)
    code = 1
    try:
        _become_service(env, set(keep_fds), title, launch_args)
        from corral_cli import launch

        launch.main(launch_args, app)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - the child never returns into serve's code
        traceback.print_exc()
    finally:
        _exit(code)
    raise AssertionError("unreachable")


def _become_service(env: Mapping[str, str], keep_fds: set[int], title: str, argv: list[str]) -> None:
    """What a fresh ``python -P`` in a new session would have: default signals, its own environment and
    descriptors, unbuffered stdio (PYTHONUNBUFFERED), its own argv and title."""
    _set_title(title)
    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    _close_fds_except(keep_fds)
    os.environ.clear()
    os.environ.update(env)
    sys.stdout, sys.stderr = _unbuffered(1, sys.stdout), _unbuffered(2, sys.stderr)
    sys.argv = [sys.argv[0], *argv]


def _close_fds_except(keep: set[int]) -> None:
    """Close every inherited descriptor but stdio and ``keep`` (serve's other sockets, the lifeline's write end)."""
    low = 3
    for fd in sorted(keep | set(STDIO)):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536)


def _unbuffered(fd: int, like: io.TextIOBase | None) -> io.TextIOWrapper:
    encoding = getattr(like, "encoding", None) or "utf-8"
    errors = getattr(like, "errors", None) or "backslashreplace"
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding=encoding, errors=errors, write_through=True)


def _claim_title_room() -> None:
    """setproctitle takes the room for a title from the environment block the kernel laid out after argv: let it
    do so now, before serve changes its environment (build_app), so that each forked service can set its own."""
    try:
        from setproctitle import getproctitle
    except ImportError:
        return
    getproctitle()


def _set_title(title: str) -> None:
    try:
        from setproctitle import setproctitle
    except ImportError:  # the title stays serve's; the service runs all the same
        return
    setproctitle(title)


def _exit(code: int) -> None:
    """End the service as the interpreter would (its threads joined, atexit handlers run, stdio flushed),
    without ever returning into serve's frames."""
    try:
        threading._shutdown()  # type: ignore[attr-defined] - what Py_FinalizeEx calls first
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    except BaseException:  # noqa: BLE001
        pass
    os._exit(code)
