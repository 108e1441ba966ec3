"""The embedded runtime: request ids across services, a crashed service restarted, the bundled models."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import ollama
import pytest

pytestmark = pytest.mark.e2e


def _children(parent: int) -> dict[int, str]:
    """Direct children of a process, with their command lines (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def _log(server) -> str:
    return (server.home.parent / "serve.log").read_text(errors="replace")


def test_request_id_follows_the_request_across_services(server) -> None:
    response = httpx.post(f"{server.url}/api/show", json={"model": "smollm2:135m"},
                          headers={"X-Request-ID": "trace-me-4242"}, timeout=60)
    assert response.status_code == 200
    time.sleep(0.5)
    lines = [line for line in _log(server).splitlines() if "trace-me-4242" in line]
    services = {json.loads(line)["service"] for line in lines}  # logs to a file are JSON lines
    assert {"api", "registry"} <= services, lines


def test_a_crashed_service_is_restarted(server) -> None:
    children = _children(server.process.pid)
    inference = [pid for pid, cmd in children.items() if "corral_inference.main" in cmd]
    assert len(inference) == 1, children
    os.kill(inference[0], signal.SIGKILL)
    client = ollama.Client(host=server.url)
    deadline = time.monotonic() + 60
    while True:
        try:
            result = client.generate("smollm2:135m", "Hi", options={"num_predict": 3})
            break
        except ollama.ResponseError as exc:
            assert exc.status_code == 502, exc
            assert time.monotonic() < deadline, "inference did not come back"
            time.sleep(0.5)
    assert result.done
    assert "service exited, restarting" in _log(server)
    new = [pid for pid, cmd in _children(server.process.pid).items() if "corral_inference.main" in cmd]
    assert new and new[0] != inference[0]


def test_gemma3_bundled_model_imports_and_runs(server) -> None:
    from corral_cli.bundled import import_bundled

    import_bundled(server.url, only=("gemma3:270m",))
    client = ollama.Client(host=server.url)
    shown = client.show("gemma3:270m")
    assert shown.details.family == "gemma3" and shown.details.quantization_level == "Q4_K_M"
    result = client.chat("gemma3:270m", messages=[{"role": "user", "content": "Say hello."}],
                         options={"temperature": 0, "num_predict": 8})
    assert result.message.content.strip()
    client.generate("gemma3:270m", "", keep_alive=0)
