"""Services forked from serve (corral_cli.forkserver): restarted when killed, dead when serve dies, holding only
their own descriptors, and named by the command line a spawned one would have."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from corral_common.testing.waiting import wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# A service app for corral_cli.launch: it says which process answered, which built it, and with what setting.
APP = """
import os, sys
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

def migrate_databases():
    import xml.dom.minidom  # stands for Alembic: what only the migration needs
    with open(os.environ["MARKER"], "w") as marker:
        marker.write(f"{os.getpid()} {os.environ['GREETING']}")

def create_app():
    built_by, greeting = os.getpid(), os.environ.get("GREETING")

    async def hello(request):
        migration_modules = "xml.dom.minidom" in sys.modules
        return PlainTextResponse(f"{os.getpid()} {built_by} {greeting} {migration_modules}")

    return Starlette(routes=[Route("/", hello)])
"""
# A stand-in for `corral serve`: one forked service on its socket, supervised, and a second socket it holds for
# another service (which the forked one must not inherit). Prints the port, the other socket's inode, then runs.
SERVE = """
import os, sys
from corral_cli.forkserver import build_app, migrate_databases, preload
from corral_cli.lifeline import Lifeline
from corral_cli.supervisor import Launcher, Supervisor, listening_socket, port_of
line, sock, other = Lifeline.open(), listening_socket(), listening_socket()
child = Launcher(line, fork=True).service("hello", "hello_app", dict(os.environ, GREETING="hi"), sock)
preload(("starlette.applications", "uvicorn", "hello_app"))
migrate_databases(child.module, child.env)
child.app = build_app(child.module, child.env)
assert "GREETING" not in os.environ  # built with the service's environment; serve's own is as it was
print(port_of(sock), os.fstat(other.fileno()).st_ino, flush=True)
Supervisor([child]).run()
"""




def _runs(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _answer(port: int) -> int | None:
    """The pid of the process that answered GET / (None while nothing answers)."""
    try:
        return int(_hello(port)[0])
    except (httpx.HTTPError, ValueError):
        return None


def _hello(port: int) -> list[str]:
    """The answering pid, the pid that built the app, and the setting it was built with."""
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=5, trust_env=False).text.split()


@pytest.fixture
def serve(tmp_path: Path):
    (tmp_path / "hello_app.py").write_text(APP)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "CORRAL_MEMORY_LIMIT": "0", "MARKER": str(tmp_path / "migrated")}
    process = subprocess.Popen([sys.executable, "-c", SERVE], stdout=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    port, other_inode = (int(x) for x in process.stdout.readline().split())  # type: ignore[union-attr]
    try:
        yield process, port, other_inode, tmp_path / "migrated"
    finally:
        process.kill()  # its forked service dies with it
        process.wait(30)


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _socket_inodes(pid: int) -> set[int]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def test_a_forked_service_is_a_child_of_serve_named_by_its_command_and_holding_only_its_own_socket(serve) -> None:
    process, port, other_inode, _ = serve
    pid = wait_for(lambda: _answer(port), 60.0)
    assert pid and _ppid(pid) == process.pid
    title = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert "corral_cli.launch" in title and "hello_app --fd" in title
    assert other_inode not in _socket_inodes(pid)  # serve's socket for another service stays serve's alone
    shared = next(line for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                  if line.startswith("Shared_Dirty:"))
    assert int(shared.split()[1]) > 1024  # KiB of serve's own memory (imports) it shares: forked, not spawned
    # the app serve built, with the service's settings; the migration's modules were never loaded in either
    assert _hello(port) == [str(pid), str(process.pid), "hi", "False"]


def test_the_databases_are_migrated_before_the_fork_in_a_process_of_their_own(serve) -> None:
    process, port, _, marker = serve
    pid = wait_for(lambda: _answer(port), 60.0)
    migrator, greeting = marker.read_text().split()
    assert greeting == "hi" and int(migrator) not in (pid, process.pid)


def test_a_killed_forked_service_is_forked_again_and_the_next_request_succeeds(serve) -> None:
    process, port, _, _ = serve
    first = wait_for(lambda: _answer(port), 60.0)
    assert first
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: not _runs(first), 10)
    # serve keeps the listening socket: the next request waits in its backlog for the new process
    second = _answer(port)
    assert second and second != first and _ppid(second) == process.pid


def test_a_forked_service_dies_with_serve(serve) -> None:
    process, port, _, _ = serve
    pid = wait_for(lambda: _answer(port), 60.0)
    assert pid
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert wait_for(lambda: not _runs(pid), 30), "the forked service outlived serve"
