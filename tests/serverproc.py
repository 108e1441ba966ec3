"""Start and stop a real ``corral serve`` on a free loopback port with its own model store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from corral_cli.supervisor import free_port

BIN = Path(sys.executable).parent


@dataclass
class Server:
    """A running corral and how to reach it."""

    url: str
    host: str
    env: dict[str, str]
    home: Path
    process: subprocess.Popen

    def corral(self, *args: str, input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run the ``corral`` CLI against this server."""
        return subprocess.run([str(BIN / "corral"), *args], env=self.env, input=input, text=True,
                              capture_output=True, timeout=timeout)

    def models_dir(self) -> Path:
        return Path(self.env["OLLAMA_MODELS"])


def start_server(tmp: Path, extra_env: dict[str, str] | None = None) -> Server:
    """Start ``corral serve`` and wait until the gateway and the store answer."""
    port = free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(tmp / "models"),
           "CORRAL_HOME": str(tmp / "home"), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    env.pop("OLLAMA_API_KEY", None)
    tmp.mkdir(parents=True, exist_ok=True)
    log = open(tmp / "serve.log", "wb")
    process = subprocess.Popen([str(BIN / "corral"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/tags", timeout=2).status_code == 200:
                return Server(url, f"127.0.0.1:{port}", env, tmp / "home", process)
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.25)
    stop_server(process)
    raise RuntimeError(f"corral serve did not start:\n{(tmp / 'serve.log').read_text()[-4000:]}")


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM the supervisor (it stops its children) and wait."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
