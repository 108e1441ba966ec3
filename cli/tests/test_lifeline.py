"""A service dies with its supervisor: by the parent-death signal, by the pipe alone (systems without one), or both."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from corral_common.testing.waiting import wait_for

# A stand-in for `corral serve`: it starts one child tied to it as `how` says, prints the child's pid, then waits.
SUPERVISOR = """
import subprocess, sys, time
from corral_cli.lifeline import Lifeline
line = Lifeline.open()
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(line.read_fd)], pass_fds=(line.read_fd,),
                         start_new_session=True)
print(child.pid, flush=True)
time.sleep(120)
"""
TIES = {
    "parent-death signal": "from corral_cli import lifeline; lifeline._die_with_parent()",
    "pipe": "import sys, threading; from corral_cli import lifeline; "
            "threading.Thread(target=lifeline._watch, args=(int(sys.argv[1]),), daemon=True).start()",
    "both": "import sys; from corral_cli import lifeline; lifeline.hold(int(sys.argv[1]))",
}
# The child tells it is tied by creating a file, then lives on until something ends it.
CHILD = "{tie}\nimport pathlib, time; pathlib.Path({ready!r}).touch(); time.sleep(120)"


def _runs(pid: int) -> bool:
    """Whether pid runs (a zombie waiting for init to reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False




@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", list(TIES))
def test_ft2_supervisor_killed_ends_the_service_it_started(tmp_path: Path, how: str) -> None:
    ready = tmp_path / "ready"
    child_code = CHILD.format(tie=TIES[how], ready=str(ready))
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR, child_code], stdout=subprocess.PIPE, text=True)
    child = int(supervisor.stdout.readline())  # type: ignore[union-attr]
    try:
        assert wait_for(ready.exists, 30.0), "the child never got tied"
        assert _runs(child)
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(30)
        assert wait_for(lambda: not _runs(child), 30.0), f"the child outlived its supervisor ({how})"
    finally:
        supervisor.kill()
        if _runs(child):
            subprocess.run(["kill", "-9", str(child)], check=False)
