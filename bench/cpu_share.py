"""Where the CPU goes while a server streams: CPU seconds per process and thread during one load level.

    .venv/bin/python bench/cpu_share.py                       # corral, 4 streams, 128 tokens
    .venv/bin/python bench/cpu_share.py --server llama-server --streams 8

On a 2-core machine every CPU second spent outside llama.cpp's compute threads is taken from them
(and with OpenMP a preempted compute thread stalls the other at the next barrier), so this is the
profile to read when corral's aggregate tokens/s trails llama-server's. Prints one table: process,
thread, CPU seconds, share of the wall time; plus aggregate tokens/s of the run. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load
import procs
import servers as srv
from llama_server_build import ensure_llama_server

TICKS = os.sysconf("SC_CLK_TCK")


def _thread_times(pid: int) -> dict[tuple[int, int, str], float]:
    """(pid, tid, thread name) → CPU seconds (user + system) for every thread of pid."""
    times = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            text = (task / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        times[(pid, int(task.name), name)] = (int(fields[11]) + int(fields[12])) / TICKS
    return times


def snapshot(root: int, names: dict[int, str]) -> dict[tuple[int, int, str], float]:
    """CPU seconds of every thread of root and its descendants; process names are added to names."""
    out: dict[tuple[int, int, str], float] = {}
    for pid in procs.descendants(root):
        names.setdefault(pid, procs._what(pid))
        out.update(_thread_times(pid))
    return out


def report(before: dict, after: dict, names: dict[int, str], wall: float, min_share: float) -> list[str]:
    """Rows of the table, busiest first; threads below min_share of the wall time are summed per process."""
    deltas = {key: after[key] - before.get(key, 0.0) for key in after}
    rows, small = [], {}
    for (pid, tid, thread), cpu in sorted(deltas.items(), key=lambda kv: -kv[1]):
        if cpu / wall >= min_share:
            rows.append(f"| {names[pid]} | {thread} ({tid}) | {cpu:.2f} | {100 * cpu / wall:.0f}% |")
        else:
            small[pid] = small.get(pid, 0.0) + cpu
    rows += [f"| {names[pid]} | other threads | {cpu:.2f} | {100 * cpu / wall:.0f}% |"
             for pid, cpu in sorted(small.items(), key=lambda kv: -kv[1]) if cpu > 0]
    total = sum(deltas.values())
    rows.append(f"| **all** | | {total:.2f} | {100 * total / wall:.0f}% |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=["corral", "llama-server"], default="corral")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--min-share", type=float, default=0.01, help="rows below this share are summed")
    args = parser.parse_args()
    from corral_cli.bundled import BUNDLED

    model = Path(BUNDLED[0].locate())
    with tempfile.TemporaryDirectory(prefix="corral-cpu-") as tmp:
        work = Path(tmp)
        server = (srv.corral(work, args.threads, args.slots) if args.server == "corral"
                  else srv.llama_server(work, ensure_llama_server()[0], model, args.threads, args.slots))
        try:
            server.start()
            prompts = [load.prompt("cpu", i) for i in range(args.streams)]
            asyncio.run(load.run_level(server.url, server.model, [load.prompt("warm", 0)], 16, 300))
            names: dict[int, str] = {}
            before, began = snapshot(server.process.pid, names), time.perf_counter()
            run = asyncio.run(load.run_level(server.url, server.model, prompts, args.tokens, 300))
            wall = time.perf_counter() - began
            after = snapshot(server.process.pid, names)
        finally:
            server.stop()
    summary = run.summary()
    print(f"{server.label}: {args.streams} streams x {args.tokens} tokens, wall {wall:.2f} s, "
          f"aggregate {summary['aggregate_tok_s']:.1f} tok/s, errors {summary['errors']}")
    print("| process | thread | CPU s | of wall |\n|---|---|---|---|")
    print("\n".join(report(before, after, names, wall, args.min_share)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
