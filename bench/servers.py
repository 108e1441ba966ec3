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

    def stop(self) -> None:
        if self.process is not None:
            procs.stop_tree(self.process.pid, grace=45.0)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                pass


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


def corral(work: Path, threads: int, slots: int) -> Server:
    home = work / "corral-home"
    env = {**os.environ, "OLLAMA_MODELS": str(home / "models"), "CORRAL_HOME": str(home),
           "OLLAMA_NUM_PARALLEL": str(slots), "CORRAL_NUM_THREAD": str(threads),
           "OLLAMA_CONTEXT_LENGTH": str(CTX_PER_SLOT), "OLLAMA_KEEP_ALIVE": "24h", "PYTHONUNBUFFERED": "1"}
    env.pop("CORRAL_IMPORT_BUNDLED", None)
    server = Corral("corral", f"corral (OLLAMA_NUM_PARALLEL={slots})", [str(BIN / "corral"), "serve"],
                    "/api/tags", CORRAL_MODEL, work, env, start_timeout=300)
    server.env["OLLAMA_HOST"] = f"127.0.0.1:{server.port}"
    return server


def llama_server(work: Path, binary: Path, model: Path, threads: int, slots: int) -> Server:
    argv = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--parallel", str(slots),
            "--threads", str(threads), "--threads-batch", str(threads), "--cache-ram", "0",
            "-c", str(slots * CTX_PER_SLOT)]
    server = Server("llama-server", f"llama-server --parallel {slots} --cache-ram 0", argv, "/health", "smollm2",
                    work)
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
