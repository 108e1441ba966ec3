"""What Prometheus metrics cost: corral's tokens/s with CORRAL_METRICS=1 against CORRAL_METRICS=0.

Two ``corral serve`` processes (same model, threads and slots; one with metrics on, one off) run side by side
and are measured in turn, alternating which goes first, so that other work on the machine spreads over both.
Each point is 1 and 4 concurrent streamed ``/v1/completions`` requests (bench/load.py, the same prompts as
bench/throughput.py); the metrics server is scraped once per repetition, as Prometheus would.

    .venv/bin/python bench/metrics_overhead.py             # 5 repetitions of 1 and 4 streams
    .venv/bin/python bench/metrics_overhead.py --reps 1    # a quick check that it runs

Prints one Markdown table: median aggregate tokens/s per setting and the ratio on/off (1.00 = no cost), and
CPU milliseconds per generated token (from /proc: steadier than wall time on a shared machine), of the whole
server tree and of its event loops, where the metrics code runs; the last column is the event loops' extra CPU
with metrics on as a share of all CPU per token.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load
import procs
import servers as srv
from throughput import log, threads_default, warm_up

SETTINGS = {"on": "1", "off": "0"}


@dataclass(frozen=True)
class Point:
    """One measurement: aggregate tokens/s, CPU ms per token of the whole tree and of its event loops."""

    rate: float
    cpu_ms: float
    loop_ms: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,4", help="concurrent streams per point (default 1,4)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each point (default 5)")
    parser.add_argument("--slots", type=int, default=4, help="OLLAMA_NUM_PARALLEL (default 4)")
    parser.add_argument("--threads", type=int, default=threads_default(), help="CORRAL_NUM_THREAD")
    parser.add_argument("--tokens", type=int, default=128, help="tokens generated per request")
    parser.add_argument("--request-timeout", type=float, default=300.0, help="seconds per request")
    args = parser.parse_args(argv)
    args.levels = [int(x) for x in str(args.levels).split(",") if x.strip()]
    return args


def start(work: Path, setting: str, args: argparse.Namespace) -> srv.Server:
    """A corral with CORRAL_METRICS set, its model imported and warmed up."""
    (work / setting).mkdir()
    server = srv.corral(work / setting, args.threads, args.slots)
    server.name = f"corral-metrics-{setting}"
    server.env["CORRAL_METRICS"] = SETTINGS[setting]
    log(f"starting {server.name}")
    server.start()
    warm_up(server, args.tokens, args.request_timeout)
    return server


def _cpu(server: srv.Server) -> tuple[float, float]:
    """CPU seconds of the whole server tree, and of its processes' main threads (the event loops)."""
    root = server.process.pid
    return procs.cpu_seconds(root), procs.cpu_seconds(root, main_threads_only=True)


def measure(server: srv.Server, level: int, rep: int, args: argparse.Namespace) -> Point:
    """Aggregate generated tokens/s of one point, and CPU milliseconds per generated token.

    CPU time is counted only while a thread runs, so it drifts far less than wall time on a shared machine.
    Metrics code runs on the services' event loops (and one check per token on the engine thread), never in
    llama.cpp's compute threads, so the event-loop share is where their cost shows."""
    prompts = [load.prompt(f"r{rep}l{level}", i) for i in range(level)]
    before = _cpu(server)
    run = asyncio.run(load.run_level(server.url, server.model, prompts, args.tokens, args.request_timeout))
    after = _cpu(server)
    summary = run.summary()
    if summary["errors"]:
        raise RuntimeError(f"{server.name}: {summary['error_messages']}")
    tokens = max(1, summary["generated_tokens"])
    return Point(summary["aggregate_tok_s"], 1000 * (after[0] - before[0]) / tokens,
                 1000 * (after[1] - before[1]) / tokens)


def scrape(server: srv.Server) -> None:
    """One Prometheus-style scrape of the server whose metrics are on."""
    httpx.get(f"{server.url}/metrics", timeout=30, trust_env=False).raise_for_status()


def run(args: argparse.Namespace) -> dict[tuple[str, int], list[Point]]:
    """One Point per (setting, level) and repetition."""
    results: dict[tuple[str, int], list[Point]] = {}
    with tempfile.TemporaryDirectory(prefix="corral-metrics-bench-") as tmp:
        servers: dict[str, srv.Server] = {}
        try:
            for setting in SETTINGS:
                servers[setting] = start(Path(tmp), setting, args)
            for rep in range(args.reps):
                order = list(SETTINGS) if rep % 2 == 0 else list(reversed(SETTINGS))
                for level in args.levels:
                    for setting in order:
                        point = measure(servers[setting], level, rep, args)
                        results.setdefault((setting, level), []).append(point)
                        log(f"rep {rep + 1}/{args.reps}, {level} streams, metrics {setting}: {point.rate:.1f} tok/s, "
                            f"{point.cpu_ms:.2f} CPU ms/token ({point.loop_ms:.3f} on event loops)")
                scrape(servers["on"])
        finally:
            for server in servers.values():
                server.stop()
    return results


def table(results: dict[tuple[str, int], list[Point]], levels: list[int]) -> str:
    """Tokens/s on and off (ratio of medians, median of paired ratios), and CPU ms per token: all of it, and
    the event loops' part, whose on-off difference as a share of all CPU is what metrics cost."""
    lines = ["| streams | tok/s on | tok/s off | on/off of the medians | on/off per repetition, median (min-max) "
             "| CPU ms/token on | off | event-loop CPU ms/token on | off | metrics' share of CPU |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for level in levels:
        ons, offs = results[("on", level)], results[("off", level)]
        on, off = _median(ons, "rate"), _median(offs, "rate")
        paired = [a.rate / b.rate for a, b in zip(ons, offs)]  # each repetition ran on and off back to back
        loops_on, loops_off, cpu_off = _median(ons, "loop_ms"), _median(offs, "loop_ms"), _median(offs, "cpu_ms")
        lines.append(f"| {level} | {on:.1f} | {off:.1f} | {on / off:.3f} | "
                     f"{statistics.median(paired):.3f} ({min(paired):.3f}-{max(paired):.3f}) | "
                     f"{_median(ons, 'cpu_ms'):.2f} | {cpu_off:.2f} | {loops_on:.3f} | {loops_off:.3f} | "
                     f"{100 * (loops_on - loops_off) / cpu_off:+.2f}% |")
    return "\n".join(lines)


def _median(points: list[Point], field: str) -> float:
    return statistics.median(getattr(point, field) for point in points)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(table(run(args), args.levels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
