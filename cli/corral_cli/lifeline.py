"""A service's life tied to its supervisor's: when ``corral serve`` dies, however it dies (``kill -9``, the OOM
killer, a service manager's final SIGKILL), its services die with it instead of holding the ports unsupervised.

Two ties, because neither alone covers every case. On Linux the kernel sends the service SIGKILL when the
supervisor's thread that started it exits (``PR_SET_PDEATHSIG``; children are started from serve's main
thread). Everywhere, the service inherits the read end of a pipe whose write end only the supervisor holds:
a thread blocked on it reads end-of-file once the supervisor is gone, the moment it is gone, and ends the
service; this also covers a supervisor that died before the service had set its parent-death signal.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
OPTION = "--lifeline"


@dataclass(frozen=True)
class Lifeline:
    """The supervisor's side: a pipe it never writes to and whose write end it holds until it exits."""

    read_fd: int
    write_fd: int

    @classmethod
    def open(cls) -> Lifeline:
        """A new pipe; both ends are closed in children unless passed on (``pass_fds``)."""
        read_fd, write_fd = os.pipe()
        return cls(read_fd, write_fd)

    def argv(self) -> list[str]:
        """The option that tells ``corral_cli.launch`` which inherited descriptor to watch."""
        return [OPTION, str(self.read_fd)]


def hold(fd: int) -> None:
    """In the service: die with the supervisor (the parent-death signal, then a thread on the pipe)."""
    _die_with_parent()
    threading.Thread(target=_watch, args=(fd,), name="lifeline", daemon=True).start()


def _die_with_parent() -> None:
    """Ask the kernel for SIGKILL when the parent goes (Linux); elsewhere the pipe alone ties the two."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the pipe still ties the two


def _watch(fd: int) -> None:
    """Block until the pipe's write end is closed (the supervisor has exited), then end this process."""
    while os.read(fd, 1):
        pass  # nothing is ever written; only end-of-file matters
    os.kill(os.getpid(), signal.SIGKILL)  # as the parent-death signal would: no service outlives serve
