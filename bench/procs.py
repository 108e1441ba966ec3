"""Process trees through /proc: resident memory of a server and all its descendants, and stopping them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks), or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), int(fields[19])


def cpu_seconds(root: int, main_threads_only: bool = False) -> float:
    """User + system CPU time used so far by ``root`` and every process below it; with ``main_threads_only``
    only each process's main thread (where the services' event loops run, not llama.cpp's compute threads)."""
    total = 0
    for pid in descendants(root):
        path = f"/proc/{pid}/task/{pid}/stat" if main_threads_only else f"/proc/{pid}/stat"
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> dict[int, int]:
    """``root`` and every process below it (pid → start time)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            if info:
                parents.setdefault(info[0], []).append(int(entry.name))
                starts[int(entry.name)] = info[1]
    if root not in starts:
        return {}
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in starts and pid not in found:
            found[pid] = starts[pid]
            todo.extend(parents.get(pid, []))
    return found


def _kib(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def memory(root: int) -> dict:
    """Summed RSS and PSS (MiB) of ``root`` and its descendants, with the process count.

    RSS counts shared pages (the model file mapped by one process, the Python libraries of
    several) once per process, as the issue asks; PSS splits them and is kept alongside.
    """
    each = [{"pid": pid, "what": _what(pid), "rss_mib": _kib(f"/proc/{pid}/status", "VmRSS:") / 1024,
             "pss_mib": _kib(f"/proc/{pid}/smaps_rollup", "Pss:") / 1024} for pid in sorted(descendants(root))]
    return {"rss_mib": sum(p["rss_mib"] for p in each), "pss_mib": sum(p["pss_mib"] for p in each),
            "processes": len(each), "by_process": each}


def _what(pid: int) -> str:
    """A short name for a process: the module or script it runs, else its executable."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    argv = [a for a in argv if a]
    if len(argv) == 1:  # a title set with setproctitle (corral serve's forked services): one string
        argv = argv[0].split()
    if argv and argv[0] == "[celeryd:" and "-A" in argv[:-1]:  # Celery's own title, with its argv in brackets
        return f"celery {argv[argv.index('-A') + 1]}"
    if argv and Path(argv[0]).name.startswith("python") and "-m" in argv[:-1]:
        module = argv[argv.index("-m") + 1]
        rest = argv[argv.index("-m") + 2:]
        if rest[:1] == ["--lifeline"]:  # corral_cli.launch's tie to serve, before the service's own arguments
            rest = rest[2:]
        if module in ("uvicorn", "corral_cli.launch") and rest:  # corral's services: the app module
            return f"{module} {rest[0]}"
        if module == "celery" and "-A" in rest[:-1]:
            return f"celery {rest[rest.index('-A') + 1]}"
        return module
    if argv and Path(argv[0]).name.startswith("python"):
        return " ".join(Path(a).name for a in argv[:2])
    return Path(argv[0]).name if argv else "?"


def _alive(pid: int, start: int) -> bool:
    info = _stat(pid)
    return info is not None and info[1] == start


def stop_tree(root: int, grace: float = 30.0) -> None:
    """SIGTERM ``root`` (a process-group leader), wait, then SIGKILL whatever of its tree is left.

    The tree is snapshotted first: ``corral serve`` starts its services in sessions of their own,
    so they are not in the leader's process group and would survive a bare group kill.
    Leftovers are killed one by one, by pid and only while their start time still matches.
    """
    tree = descendants(root)
    for pid in list(tree):  # pick up children born since (restarts) on each pass
        tree.update(descendants(pid))
    try:
        os.killpg(root, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(root)
        if not any(_alive(pid, start) for pid, start in tree.items()):
            return
        time.sleep(0.2)
    for pid, start in tree.items():
        if _alive(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _reap(root)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
