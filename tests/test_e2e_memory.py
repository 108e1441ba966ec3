"""The embedded default's memory (issue 17 item 1) against a real ``corral serve``: the services are forked from
serve and share its memory; one killed with ``kill -9`` is forked again and the next request succeeds; the job
worker runs only while there are jobs."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serverproc import Server, start_server, stop_server

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"
SERVICES = {"api": "corral_api.main", "registry": "corral_registry.main", "inference": "corral_inference.main"}
WORKER = "corral_registry.worker"
SHARED_MIN_KIB = 8 * 1024  # a forked service shares tens of MiB of serve's imports; a spawned one next to none


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A corral of its own, with an empty store (nothing has asked for a job yet), whose job worker ends after
    two idle seconds."""
    srv = start_server(tmp_path_factory.mktemp("memory"), {"CORRAL_WORKER_IDLE_EXIT": "2"})
    try:
        yield srv
    finally:
        stop_server(srv.process)


def _children(server: Server) -> dict[int, str]:
    """serve's running children, each with its command line (a forked service's is its title)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == server.process.pid and fields[0] != "Z":
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def _pid(server: Server, module: str, timeout: float = 60) -> int:
    """The pid of serve's child running ``module``, waiting for it to be there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [pid for pid, cmdline in _children(server).items() if module in cmdline]
        if pids:
            return pids[0]
        time.sleep(0.1)
    raise AssertionError(f"no {module} process under corral serve: {_children(server)}")


def _shared_kib(pid: int) -> int:
    """Anonymous memory the process shares with others: only a fork shares it (with serve and its siblings)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Shared_Dirty:"):
            return int(line.split()[1])
    return 0


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _no_worker(server: Server) -> bool:
    return not [cmd for cmd in _children(server).values() if WORKER in cmd]


def test_the_job_worker_runs_only_while_there_are_jobs(fresh: Server) -> None:
    time.sleep(1)  # a supervision round or two: nothing is queued, so nothing starts
    assert _no_worker(fresh), _children(fresh)
    from corral_cli.bundled import import_bundled

    assert import_bundled(fresh.url, only=(MODEL,)) == [MODEL]  # `corral create`: a job the worker runs
    deadline = time.monotonic() + 60
    while not _no_worker(fresh) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _no_worker(fresh), "the job worker did not end once idle"
    time.sleep(1.5)
    assert _no_worker(fresh), "a job worker that ended cleanly was started again without a job"
    copy = httpx.post(f"{fresh.url}/api/create", json={"model": "again", "from": MODEL, "stream": False},
                      timeout=300)  # the next job starts it again
    assert copy.status_code == 200 and copy.json() == {"status": "success"}, copy.text
    names = [m["name"] for m in httpx.get(f"{fresh.url}/api/tags", timeout=30).json()["models"]]
    assert {MODEL, "again:latest"} <= set(names)


def test_services_are_forked_from_serve_and_share_its_memory(fresh: Server) -> None:
    for name, module in SERVICES.items():
        pid = _pid(fresh, module)
        assert _shared_kib(pid) >= SHARED_MIN_KIB, f"{name} shares only {_shared_kib(pid)} KiB"


def _generate(server: Server) -> httpx.Response:
    return httpx.post(f"{server.url}/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                                          "options": {"num_predict": 3}}, timeout=180)


@pytest.mark.parametrize("service", ["inference", "api", "registry"])
def test_a_killed_service_is_forked_again_and_the_next_request_succeeds(fresh: Server, service: str) -> None:
    from corral_cli.bundled import import_bundled

    import_bundled(fresh.url, only=(MODEL,))
    assert _generate(fresh).status_code == 200
    killed = _pid(fresh, SERVICES[service])
    os.kill(killed, signal.SIGKILL)
    assert _gone(killed)
    again = _pid(fresh, SERVICES[service])  # serve forks it again (the socket stays serve's meanwhile)
    assert again != killed and _shared_kib(again) >= SHARED_MIN_KIB  # forked again, from the same shared state
    answer = _generate(fresh)
    assert answer.status_code == 200, answer.text
    assert answer.json()["done"] is True
