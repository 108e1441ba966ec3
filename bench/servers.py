"""The three servers under test, each started on a free loopback port and always stopped.

Every server gets the same GGUF, the same thread count and, where it has slots, the same number
of slots with 4096 tokens of context each. Logs go to files in the run's work folder.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import procs

BIN = Path(sys.executable).parent
CTX_PER_SLOT = 4096
CORRAL_MODEL = "corral-bench"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Server:
    """One server process tree: how to start it, how to know it is up, and its base URL."""

    name: str
    label: str
    argv: list[str]
    health_path: str
    model: str
    work: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    start_timeout: float = 180.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.work / f"{self.name}.log"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; log {self.log_path}:\n"
                                   + self.log_tail())
            if _get_ok(self.url + self.health_path):
                self.prepare()
                return
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} did not answer {self.health_path} within {self.start_timeout:.0f} s; "
                           f"log {self.log_path}:\n{self.log_tail()}")

    def prepare(self) -> None:
        """Anything to do once the server answers, before the warm-up request."""

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def memory(self) -> dict:
        if self.process is None or self.process.poll() is not None:
            return {"rss_mib": 0.0, "pss_mib": 0.0, "processes": 0}
        return procs.memory(self.process.pid)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self) -> float:
        """CPU time the server's whole process tree has used so far (0 when it is not running)."""
        return procs.cpu_seconds(self.process.pid) if self.alive() else 0.0

    def stop(self) -> None:
        if self.process is not None:
            procs.stop_tree(self.process.pid, grace=45.0)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                pass


def machine_cpu() -> tuple[float, float]:
    """CPU-seconds the whole machine has been busy, and had stolen by the hypervisor, since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def wait_quiet(servers: list[Server], limit: float = 120.0, window: float = 0.5, busy: float = 0.25) -> float:
    """Wait until the servers together use under ``busy`` CPU-seconds per second over ``window`` seconds.

    So that work a server still does (a stream it keeps generating after its client left, a service
    starting) does not fall on the next measurement. Returns how long they stayed busy (0.0: quiet at
    once), ``limit`` at most."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        before = sum(server.cpu_seconds() for server in servers)
        time.sleep(window)
        if sum(server.cpu_seconds() for server in servers) - before < busy * window:
            return max(0.0, time.monotonic() - began - window)
    return limit


class Corral(Server):
    """``corral serve`` with a temporary model store; smollm2:135m imported, then a raw-prompt alias."""

    def prepare(self) -> None:
        from corral_cli.bundled import BUNDLED

        # What corral_cli.bundled.import_bundled does (`corral create` from the Modelfile), logged to a file.
        modelfile = self.work / "Modelfile"
        modelfile.write_text(BUNDLED[0].modelfile())
        with self.log_path.open("ab") as log:
            subprocess.run([str(BIN / "corral"), "create", BUNDLED[0].name, "-f", str(modelfile)], env=self.env,
                           stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True, timeout=300)
        # The same raw ChatML text reaches all three servers: a copy whose template is the prompt itself.
        response = httpx.post(f"{self.url}/api/create", json={
            "model": CORRAL_MODEL, "from": "smollm2:135m", "template": "{{ .Prompt }}", "stream": False},
            timeout=300, trust_env=False)
        response.raise_for_status()


def corral(work: Path, threads: int, slots: int | None, name: str = "corral") -> Server:
    """``corral serve`` at ``slots`` parallel sequences; ``slots=None`` leaves OLLAMA_NUM_PARALLEL and
    OLLAMA_MAX_QUEUE unset (corral's defaults). Each ``name`` gets its own log and store."""
    home = work / ("corral-home" if name == "corral" else f"{name}-home")
    env = {**os.environ, "OLLAMA_MODELS": str(home / "models"), "CORRAL_HOME": str(home),
           "CORRAL_NUM_THREAD": str(threads),
           "OLLAMA_CONTEXT_LENGTH": str(CTX_PER_SLOT), "OLLAMA_KEEP_ALIVE": "24h", "PYTHONUNBUFFERED": "1"}
    env.pop("CORRAL_IMPORT_BUNDLED", None)
    if slots is None:
        env.pop("OLLAMA_NUM_PARALLEL", None)
        env.pop("OLLAMA_MAX_QUEUE", None)
        label = "corral (default OLLAMA_NUM_PARALLEL and OLLAMA_MAX_QUEUE)"
    else:
        env["OLLAMA_NUM_PARALLEL"] = str(slots)
        label = f"corral (OLLAMA_NUM_PARALLEL={slots})"
    server = Corral(name, label, [str(BIN / "corral"), "serve"], "/api/tags", CORRAL_MODEL, work, env,
                    start_timeout=300)
    server.env["OLLAMA_HOST"] = f"127.0.0.1:{server.port}"
    return server


def llama_server(work: Path, binary: Path, model: Path, threads: int, slots: int, name: str = "llama-server",
                 prompt_cache: bool = False) -> Server:
    """llama-server at ``slots`` x 4096 context; ``prompt_cache`` keeps its host-memory prompt cache
    (its default) instead of ``--cache-ram 0``."""
    argv = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--parallel", str(slots),
            "--threads", str(threads), "--threads-batch", str(threads),
            *([] if prompt_cache else ["--cache-ram", "0"]), "-c", str(slots * CTX_PER_SLOT)]
    label = f"llama-server --parallel {slots}" + ("" if prompt_cache else " --cache-ram 0")
    server = Server(name, label, argv, "/health", "smollm2", work)
    server.argv += ["--port", str(server.port)]
    return server


def llama_cpp_server(work: Path, model: Path, threads: int) -> Server:
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
            "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", str(CTX_PER_SLOT),
            "--interrupt_requests", "False"]
    server = Server("llama-cpp-python", "python -m llama_cpp.server --interrupt_requests False", argv,
                    "/v1/models", "smollm2", work)
    server.argv += ["--port", str(server.port)]
    return server


LLAMA_CPP_SERVER_DEPS = {"sse_starlette": "sse-starlette", "starlette_context": "starlette-context",
                         "pydantic_settings": "pydantic-settings", "fastapi": "fastapi", "uvicorn": "uvicorn"}


def ensure_llama_cpp_server_deps() -> None:
    """The ``[server]`` extra's packages, without touching the compiled llama-cpp-python already installed."""
    missing = [pkg for module, pkg in LLAMA_CPP_SERVER_DEPS.items() if importlib.util.find_spec(module) is None]
    if missing:
        print(f"installing the llama_cpp.server dependencies: {' '.join(missing)}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "-q", *missing],
                       check=True, timeout=600)


def accounted(server: Server, work: Callable[[], dict]) -> dict:
    """The measurement's figures plus where the CPU time went meanwhile: the server's own (corral's event
    loops apart: llama-server's main thread computes too), and the shares of all CPUs that other processes
    (other work on the machine) and the hypervisor's other guests took, to tell a slow server from a busy machine."""
    main = lambda: procs.cpu_seconds(server.process.pid, main_threads_only=True)  # noqa: E731
    began, machine, own, ours, loops = time.monotonic(), machine_cpu(), os.times(), server.cpu_seconds(), main()
    figures = work()
    used, capacity = server.cpu_seconds() - ours, (time.monotonic() - began) * (os.cpu_count() or 1)
    busy, stolen = (after - before for after, before in zip(machine_cpu(), machine))
    others = busy - used - sum(os.times()[:2]) + sum(own[:2])
    figures |= {"server_cpu_s": round(used, 2), "others_cpu_share": round(max(0.0, others) / capacity, 3),
                "steal_share": round(stolen / capacity, 3)}
    if isinstance(server, Corral):
        figures["event_loops_cpu_s"] = round(main() - loops, 2)
    return figures
