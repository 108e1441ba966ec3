"""The corral CLI against a real server, as a person would use it."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"
BOUNDED = "cli-smol:latest"  # smollm2 with a bounded answer length, so runs stay quick on a busy CI machine


@pytest.fixture(scope="module", autouse=True)
def bounded_model(server) -> None:
    import httpx

    body = {"model": BOUNDED, "from": MODEL, "stream": False, "parameters": {"num_predict": 32, "temperature": 0}}
    assert httpx.post(f"{server.url}/api/create", json=body, timeout=120).json() == {"status": "success"}


def test_version_and_help(server) -> None:
    version = server.corral("--version")
    assert version.returncode == 0 and "corral version is" in version.stdout + version.stderr
    help_text = server.corral("--help").stdout
    for command in ("serve", "run", "create", "show", "list", "ps", "cp", "rm", "stop"):
        assert re.search(rf"^\s+{command}\s", help_text, re.M), command


def test_list_table(server) -> None:
    out = server.corral("list")
    assert out.returncode == 0
    header, *rows = out.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    row = next(r for r in rows if r.startswith(MODEL))
    assert re.match(rf"{re.escape(MODEL)}\s+[0-9a-f]{{12}}\s+98 MB\s+\S", row)
    columns = [line.split()[:3] for line in out.stdout.splitlines()]
    assert [line.split()[:3] for line in server.corral("ls").stdout.splitlines()] == columns


def test_run_one_shot_and_piped_stdin(server) -> None:
    out = server.corral("run", BOUNDED, "Say hello in one word.")
    assert out.returncode == 0 and out.stdout.strip()
    piped = server.corral("run", BOUNDED, "Summarise the text above in one sentence.",
                          input="Corral is a server that runs language models on your computer.")
    assert piped.returncode == 0 and piped.stdout.strip()
    verbose = server.corral("run", BOUNDED, "Hi", "--verbose")
    assert re.search(r"^eval rate:\s+[\d.]+ tokens/s", verbose.stderr, re.M)


def test_run_unknown_model_fails_clearly(server) -> None:
    # Like `ollama run`, a missing model is pulled first; offline, the pull's error is what the user sees.
    out = server.corral("run", "no-such-model", "hi")
    assert out.returncode == 1
    assert "pulling manifest" in out.stderr + out.stdout
    assert "Error: pull model manifest:" in out.stderr


def test_show_flags_and_modelfile_round_trip(server, tmp_path: Path) -> None:
    summary = server.corral("show", MODEL).stdout
    assert "architecture" in summary and "llama" in summary and "Q4_1" in summary
    template = server.corral("show", MODEL, "--template").stdout
    assert "<|im_start|>" in template
    params = server.corral("show", MODEL, "--parameters").stdout
    assert "stop" in params
    modelfile = server.corral("show", MODEL, "--modelfile").stdout
    (tmp_path / "Modelfile").write_text(modelfile)
    created = server.corral("create", "roundtrip", "-f", str(tmp_path / "Modelfile"))
    assert created.returncode == 0, created.stderr
    assert server.corral("show", "roundtrip", "--template").stdout == template
    assert server.corral("show", "roundtrip", "--parameters").stdout == params
    assert server.corral("rm", "roundtrip").stdout.strip() == "deleted 'roundtrip'"


def test_create_with_a_bad_modelfile_names_the_line(server, tmp_path: Path) -> None:
    (tmp_path / "Modelfile").write_text(f"FROM {MODEL}\nPARAMETER temperature hot\n")
    out = server.corral("create", "x", "-f", str(tmp_path / "Modelfile"))
    assert out.returncode == 1 and "line 2" in out.stderr


def test_cp_ps_stop_rm(server) -> None:
    assert server.corral("cp", BOUNDED, "cli-copy").stdout.strip() == f"copied '{BOUNDED}' to 'cli-copy'"
    assert server.corral("run", "cli-copy", "Hi").returncode == 0
    ps = server.corral("ps").stdout
    assert ps.splitlines()[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    assert "cli-copy:latest" in ps and "100% CPU" in ps and "4096" in ps
    assert server.corral("stop", "cli-copy").returncode == 0
    deadline = time.monotonic() + 10
    while "cli-copy" in server.corral("ps").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "cli-copy" not in server.corral("ps").stdout
    assert server.corral("rm", "cli-copy").stdout.strip() == "deleted 'cli-copy'"
    missing = server.corral("rm", "cli-copy")
    assert missing.returncode == 1 and "not found" in missing.stderr


def _read_until(fd: int, pattern: str, timeout: float = 120) -> str:
    buffer, deadline = "", time.monotonic() + timeout
    while pattern not in buffer and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                buffer += os.read(fd, 4096).decode(errors="replace")
            except OSError:
                break
    return buffer


SESSION = [  # a line typed at the prompt, and what the answer up to the next prompt shows
    (b"/set parameter num_predict 8", "Set parameter 'num_predict' to '8'"),
    (b"/set system You are terse.", "Set system message."),
    (b'"""Hello\rthere"""', ">>> "),  # a multi-line message gets an answer, then the prompt again
    (b"/show system", "You are terse."),
    (b"/clear", "Cleared session context"),
    (b"/nonsense", "Unknown command '/nonsense'"),
]


def test_interactive_session(server) -> None:
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(str(Path(sys.executable).parent / "corral"), ["corral", "run", BOUNDED], server.env)
    try:
        assert ">>> " in _read_until(fd, ">>> ")
        for typed, shown in SESSION:
            os.write(fd, typed + b"\r")
            assert shown in _read_until(fd, ">>> "), typed
        os.write(fd, b"/bye\r")
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.close(fd)
