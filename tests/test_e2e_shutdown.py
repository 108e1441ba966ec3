"""Stopping ``corral serve``: SIGTERM lets running streams end with a final line (FT-7), and no service
outlives the supervisor, however it ends (FT-2: a killed supervisor must not leave unsupervised services
holding the ports)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from serverproc import Server, start_server, stop_server

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"
GRACE = 2
# The format forbids an early end: the model must write 300 numbers, which takes far longer than the grace.
LONG = {"format": {"type": "array", "items": {"type": "integer"}, "minItems": 300}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "numbers", "schema": LONG["format"]}}


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None when the process is gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _tree(root: int) -> dict[int, str]:
    """Every descendant of root, each with its start time (so a reused pid is not taken for it)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields:
            parents[int(entry.name)] = int(fields[1])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                fields = _stat(pid)
                if fields:
                    found[pid] = fields[19]
                    frontier.append(pid)
    return found


def _running(processes: dict[int, str]) -> list[int]:
    """Those of the processes that still run (a zombie holds no port and runs nothing)."""
    alive = []
    for pid, started in processes.items():
        fields = _stat(pid)
        if fields and fields[19] == started and fields[0] != "Z":
            alive.append(pid)
    return alive


def _gone(processes: dict[int, str], timeout: float = 30) -> list[int]:
    """Wait until none of the processes runs; the ones still running after timeout."""
    deadline = time.monotonic() + timeout
    while _running(processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _running(processes)


def _services(srv: Server) -> dict[int, str]:
    """The serve tree below the supervisor: its services and anything they started. The server answers /api/tags
    (gateway and store) before serve has forked inference, so this waits for all three."""
    deadline = time.monotonic() + 30
    tree = _tree(srv.process.pid)
    while len(tree) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
        tree = _tree(srv.process.pid)
    assert len(tree) >= 3, tree  # registry, inference, gateway (the job worker starts with the first job)
    return tree


def _read(url: str, body: dict, out: dict, started: threading.Event) -> None:
    """Stream a response into out["lines"]; a transport error (a cut stream) lands in out["error"]."""
    out["lines"] = []
    try:
        with httpx.stream("POST", url, json=body, timeout=httpx.Timeout(120, read=120)) as response:
            out["status"] = response.status_code
            for line in response.iter_lines():
                if line.strip():
                    out["lines"].append(line)
                    started.set()
    except httpx.HTTPError as exc:
        out["error"] = repr(exc)
    finally:
        started.set()


def _native_end(out: dict) -> dict:
    """The last line of an NDJSON stream, which must be whole."""
    assert "error" not in out, out.get("error")
    assert out["status"] == 200 and len(out["lines"]) > 1, out
    return json.loads(out["lines"][-1])


def _sse_end(out: dict) -> str:
    """The last event of an SSE stream, which must be whole."""
    assert "error" not in out, out.get("error")
    assert out["status"] == 200 and len(out["lines"]) > 1, out
    return out["lines"][-1].removeprefix("data: ")


def _prompt_answer_or_refusal(url: str) -> str:
    """What a new connection gets: an answer or a refusal, quickly; a hang fails the test."""
    try:
        return f"answered {httpx.get(f'{url}/api/version', timeout=5).status_code}"
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
        return f"refused ({type(exc).__name__})"
    except httpx.TimeoutException:
        pytest.fail("a connection made during shutdown hung instead of being refused")


def test_ft7_sigterm_ends_running_streams_with_a_final_line_and_exits(tmp_path) -> None:
    srv = start_server(tmp_path, {"CORRAL_SHUTDOWN_GRACE": str(GRACE)})
    try:
        from corral_cli.bundled import import_bundled

        import_bundled(srv.url, only=(MODEL,))
        native, openai = {}, {}
        bodies = [(f"{srv.url}/api/generate", {"model": MODEL, "prompt": "List numbers.", **LONG,
                                               "options": {"num_predict": 4000}}, native),
                  (f"{srv.url}/v1/chat/completions", {"model": MODEL, "stream": True, "max_tokens": 4000,
                                                      "messages": [{"role": "user", "content": "List numbers."}],
                                                      "response_format": SCHEMA}, openai)]
        events = [threading.Event() for _ in bodies]
        readers = [threading.Thread(target=_read, args=(*body, event)) for body, event in zip(bodies, events)]
        for reader in readers:
            reader.start()
        assert all(event.wait(180) for event in events), "the streams never started"
        services = _services(srv)
        os.kill(srv.process.pid, signal.SIGTERM)
        time.sleep(0.5)
        _prompt_answer_or_refusal(srv.url)
        for reader in readers:
            reader.join(120)
        assert srv.process.wait(GRACE + 30) == 0
    finally:
        stop_server(srv.process)
    last = _native_end(native)
    assert last.get("done") is True or last == {"error": "server shutting down"}, last
    event = _sse_end(openai)
    assert event == "[DONE]" or json.loads(event)["error"]["message"] == "server shutting down", event
    assert _gone(services) == []


def _serve_answers(srv: Server) -> None:
    assert httpx.get(f"{srv.url}/api/tags", timeout=30).status_code == 200


def test_ft2_supervisor_killed_leaves_no_service_and_frees_the_port(tmp_path) -> None:
    first = start_server(tmp_path / "first")
    try:
        services = _services(first)
        first.process.kill()  # kill -9: no chance to stop anything itself
        first.process.wait(30)
    finally:
        stop_server(first.process)  # a failure before the kill must not leave this serve running
    assert _gone(services) == [], "services outlived their supervisor"
    second = start_server(tmp_path / "second", port=int(first.host.rsplit(":", 1)[1]))
    try:
        _serve_answers(second)
        services = _services(second)
        os.kill(second.process.pid, signal.SIGTERM)  # a service manager's stop, then its SIGKILL
        time.sleep(2)
        second.process.kill()
        second.process.wait(30)
        assert _gone(services) == [], "services outlived a supervisor killed while it stopped them"
    finally:
        stop_server(second.process)
