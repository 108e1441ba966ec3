"""Every request's work is bounded before it starts (issue 18 items 1 and 11), on a real ``corral serve``:
a format asking for a billion items is a 400 that leaves inference's memory alone, a 200 MB body is a 413 the
gateway never buffers, a 20 MB prompt is never tokenized whole, and every service runs under a memory ceiling
that still lets smollm2 load and generate (security.md LCP-3, OLL-7)."""

from __future__ import annotations

import json
import resource
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psutil
import pytest

from serverproc import Server

MODEL = "smollm2:135m"
TWENTY_MB = 20 << 20


def _service(server: Server, module: str) -> psutil.Process:
    """The process ``corral serve`` runs ``module`` in."""
    for child in psutil.Process(server.process.pid).children(recursive=True):
        if module in " ".join(child.cmdline()):
            return child
    raise AssertionError(f"no {module} process under corral serve")


@contextmanager
def _peak_rss(process: psutil.Process) -> Iterator[Callable[[], int]]:
    """Sample a process's RSS while the block runs; the callable answers the growth over the start."""
    start, peak, done = process.memory_info().rss, [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: max(0, peak[0] - start)
    finally:
        done.set()
        sampler.join()


def _generate(server: Server, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/api/generate", json={"model": MODEL, "stream": False, **body}, timeout=600)


@pytest.fixture(scope="module")
def loaded(server: Server) -> Server:
    """The session server with smollm2 loaded (an ordinary generation, under the default memory ceilings)."""
    answer = _generate(server, prompt="Say hi.", options={"num_predict": 4, "temperature": 0})
    assert answer.status_code == 200 and answer.json()["done"], answer.text
    return server


def test_lcp3_dos_a_billion_min_items_is_a_400_and_inference_memory_stays_put(loaded: Server) -> None:
    inference = _service(loaded, "corral_inference.main")
    fmt = {"type": "array", "items": {"type": "integer"}, "minItems": 1_000_000_000}
    with _peak_rss(inference) as growth:
        answer = _generate(loaded, prompt="Count.", format=fmt)
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid format: minItems is 1000000000 at #, over the limit of 1000 "
                                      "repetitions a grammar may hold; ask for fewer"}
    assert growth() < 16 << 20  # unbounded, the converter grew this process to 21 GB
    fine = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3}
    numbers = _generate(loaded, prompt="Count to three.", format=fine, options={"temperature": 0})
    assert numbers.status_code == 200 and 2 <= len(json.loads(numbers.json()["response"])) <= 3


def _chunked_upload(server: Server, path: str, total: int, chunk: int = 1 << 20) -> tuple[int, bytes, int]:
    """POST ``total`` bytes chunked (no Content-Length), reading the answer as soon as it comes; the status,
    the answer's body and how many bytes were sent by then."""
    host, port = server.host.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=60)
    head = (f"POST {path} HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()
    piece, sent = b"%x\r\n" % chunk + b"[" * chunk + b"\r\n", 0
    try:
        sock.sendall(head)
        while sent < total and not select.select([sock], [], [], 0)[0]:
            sock.sendall(piece)
            sent += chunk
        if sent >= total:
            sock.sendall(b"0\r\n\r\n")
    except OSError:  # the server closed its side after answering: read what it said
        pass
    status, body = _read_answer(sock)
    sock.close()
    return status, body, sent


def _read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of one HTTP/1.1 answer with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data and (more := sock.recv(65536)):
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(body) < length and (more := sock.recv(65536)):
        body += more
    return int(lines[0].split()[1]), body


@pytest.mark.parametrize("path, cap", [("/api/show", 4 << 20), ("/api/chat", 64 << 20)])
def test_oll7_dos_a_200_mb_chunked_body_is_a_413_never_buffered_whole(loaded: Server, path: str, cap: int) -> None:
    gateway = _service(loaded, "corral_api.main")
    with _peak_rss(gateway) as growth:
        status, body, sent = _chunked_upload(loaded, path, 200 << 20)
    assert status == 413
    assert json.loads(body) == {"error": f"request body too large: this endpoint takes at most {cap} bytes "
                                         "(CORRAL_MAX_BODY sets the limit for JSON requests)"}
    assert sent < 200 << 20 and growth() < cap + (32 << 20)  # unbounded: 424 MB for one such body


def test_oll7_dos_a_declared_200_mb_body_is_a_413_before_it_is_sent(loaded: Server) -> None:
    host, port = loaded.host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(f"POST /api/generate HTTP/1.1\r\nHost: {loaded.host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {200 << 20}\r\n\r\n".encode())  # the answer comes before any of the body
        status, body = _read_answer(sock)
    assert status == 413 and "at most 67108864 bytes" in json.loads(body)["error"]


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def test_lcp3_dos_a_20_mb_prompt_is_refused_without_tokenizing_it_when_it_may_not_be_truncated(loaded: Server) -> None:
    inference = _service(loaded, "corral_inference.main")
    before = _cpu_seconds(inference)
    answer = _generate(loaded, prompt="lorem ipsum " * (TWENTY_MB // 12), raw=True, truncate=False)
    assert answer.status_code == 400 and answer.json() == {"error": "the input length exceeds the context length"}
    used = _cpu_seconds(inference) - before
    assert used < 4, used  # CPU work, not waiting: tokenizing all of it took 16 s here (49 s in the issue)


def test_lcp3_dos_a_20_mb_prompt_is_truncated_as_ollama_does_from_its_ends_only(loaded: Server) -> None:
    """Ollama's default (truncate true) keeps num_keep tokens and the most recent ones; only those two ends of the
    prompt are tokenized (services/inference/tests/test_bounds.py counts the bytes)."""
    answer = _generate(loaded, prompt="lorem ipsum " * (TWENTY_MB // 12) + "The end.", raw=True,
                       options={"num_predict": 2, "num_ctx": 2048, "temperature": 0})
    final = answer.json()
    assert answer.status_code == 200 and final["done"], answer.text
    assert final["prompt_eval_count"] <= 2048 and final["truncated_tokens"] > 1_000_000


def test_every_service_runs_under_a_memory_ceiling_and_smollm2_still_generates(loaded: Server) -> None:
    for module in ("corral_api.main", "corral_inference.main", "corral_registry.main"):
        soft, _hard = _service(loaded, module).rlimit(psutil.RLIMIT_DATA)
        assert soft != resource.RLIM_INFINITY and soft > 256 << 20, module
    answer = _generate(loaded, prompt="Say hi.", options={"num_predict": 4, "temperature": 0})
    assert answer.status_code == 200 and answer.json()["eval_count"] > 0
