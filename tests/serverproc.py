"""Start and stop a real ``corral serve`` on a free loopback port with its own model store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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

    @property
    def log(self) -> Path:
        """What serve and its services wrote (start_server's ``serve.log``, next to ``home``)."""
        return self.home.parent / "serve.log"


def start_server(tmp: Path, extra_env: dict[str, str] | None = None, ready_status: int = 200,
                 port: int | None = None) -> Server:
    """Start ``corral serve`` (on a free port unless given one) and wait until the gateway and the store answer
    /api/tags with ready_status.

    (With CORRAL_AUTH_REQUIRED=1 a keyless probe never gets its 200: such a server is ready at its 401.)
    """
    port = port or free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(tmp / "models"),
           "CORRAL_HOME": str(tmp / "home"), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    env.pop("OLLAMA_API_KEY", None)
    tmp.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    process = spawn([str(BIN / "corral"), "serve"], env, tmp / "serve.log", f"{url}/api/tags", ready_status)
    return Server(url, f"127.0.0.1:{port}", env, tmp / "home", process)


def spawn(argv: list[str], env: dict[str, str], log: Path, ready_url: str, status: int | None = 200,
          timeout: float = 90) -> subprocess.Popen:
    """Start argv in a session of its own, logging to log, and return once ready_url answers with status
    (with anything, where status is None); stop it and raise with the log's tail if it never does."""
    process = subprocess.Popen(argv, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    if _answers(process, ready_url, status, timeout):
        return process
    stop_server(process)
    raise RuntimeError(f"{' '.join(argv[:2])} did not start:\n{log.read_text()[-4000:]}")


def _answers(process: subprocess.Popen, url: str, status: int | None, timeout: float) -> bool:
    """Poll url until it answers with status, the process exits or timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            answer = httpx.get(url, timeout=2, trust_env=False)
            if status is None or answer.status_code == status:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM the supervisor (it stops its children) and wait."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def cli_signin(env: dict[str, str], approver_key: str, user: str) -> None:
    """``corral signin`` with the environment env, approved for ``user`` with an admin's key (as over SSH)."""
    process = subprocess.Popen([str(BIN / "corral"), "signin", "--timeout", "60"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    code = None
    for line in process.stdout:  # type: ignore[union-attr]
        if "--approve" in line:
            code = line.split("--approve", 1)[1].split()[0]
            break
    assert code, process.stderr.read()  # type: ignore[union-attr]
    approve = subprocess.run([str(BIN / "corral"), "signin", "--approve", code, "--user", user], text=True,
                             capture_output=True, env={**env, "OLLAMA_API_KEY": approver_key}, timeout=60)
    assert approve.returncode == 0, approve.stderr
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and f"signed in as {user}" in out, err
