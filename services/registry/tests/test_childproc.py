"""A job's helper process (converter, quantizer) ends when the worker that started it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from corral_registry import childproc

_PARENT = """
import subprocess, sys, time
from corral_registry import childproc
child = subprocess.Popen(childproc.command("http.server", "0", "--bind", "127.0.0.1"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
time.sleep(600)
"""


def _ended(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_the_helper_ends_soon_after_its_worker_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    helper = int(parent.stdout.readline())  # type: ignore[union-attr]
    try:
        assert not _ended(helper, 1.0)  # it runs while its worker does
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _ended(helper, 5.0)
    finally:
        try:
            os.kill(helper, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_the_helper_runs_the_module_with_its_arguments(tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_text('{ "a" : [1, 2] }')
    out = subprocess.run(childproc.command("json.tool", "--compact", str(source)), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == '{"a":[1,2]}'
