"""Helper processes of a job (the converter, the quantizer) end when the worker that started them dies.

A worker killed with SIGKILL cannot stop its children: an orphaned converter would go on burning a core
and writing into a scratch directory that nobody reads, beside the redelivered job doing the same work.
``command(module, ...)`` runs a module as ``python -I -m corral_registry.childproc PARENT MODULE ARGS...``:
a thread watches the parent and exits the process once another process has adopted it.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading

POLL_SECONDS = 0.5
EXIT_ORPHANED = 70


def command(module: str, *args: str) -> list[str]:
    """The command line that runs ``module`` with ``args`` in a child that ends with this process."""
    return [sys.executable, "-I", "-m", "corral_registry.childproc", str(os.getpid()), module, *args]


def exit_with_parent(parent: int, poll: float = POLL_SECONDS) -> None:
    """Exit at once (status 70) when ``parent`` is no longer this process's parent; checked every ``poll`` s."""

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(poll)
        os._exit(EXIT_ORPHANED)  # nothing to clean: the job's scratch directory is swept by the next worker

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str]) -> None:
    """``PARENT MODULE ARGS...``: run MODULE as ``__main__`` with ARGS, ending when PARENT does."""
    exit_with_parent(int(argv[0]))
    sys.argv = argv[1:]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
