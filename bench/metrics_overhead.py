"""What Prometheus metrics cost: corral's tokens/s with CORRAL_METRICS=1 against CORRAL_METRICS=0.

Two ``corral serve`` processes (same model, threads and slots; one with metrics on, one off) run side by side
and are measured in turn, alternating which goes first, so that other work on the machine spreads over both.
Each point is 1 and 4 concurrent streamed ``/v1/completions`` requests (bench/load.py, the same prompts as
bench/throughput.py); the metrics server is scraped once per repetition, as Prometheus would.

    .venv/bin/python bench/metrics_overhead.py             # 5 repetitions of 1 and 4 streams
    .venv/bin/python bench/metrics_overhead.py --reps 1    # a quick check that it runs

Prints one Markdown table: median aggregate tokens/s per setting and the ratio on/off (1.00 = no cost).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load
import procs
import servers as srv
from throughput import log, threads_default, warm_up

SETTINGS = {"on": "1", "off": "0"}


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


def measure(server: srv.Server, level: int, rep: int, args: argparse.Namespace) -> tuple[float, float]:
    """Aggregate generated tokens/s of one point, and the server tree's CPU milliseconds per generated token.

    CPU time is counted only while a process runs, so it drifts far less than wall time on a shared machine."""
    prompts = [load.prompt(f"r{rep}l{level}", i) for i in range(level)]
    cpu_before = procs.cpu_seconds(server.process.pid)
    run = asyncio.run(load.run_level(server.url, server.model, prompts, args.tokens, args.request_timeout))
    cpu = procs.cpu_seconds(server.process.pid) - cpu_before
    summary = run.summary()
    if summary["errors"]:
        raise RuntimeError(f"{server.name}: {summary['error_messages']}")
    return summary["aggregate_tok_s"], 1000 * cpu / max(1, summary["generated_tokens"])


def scrape(server: srv.Server) -> None:
    """One Prometheus-style scrape of the server whose metrics are on."""
    httpx.get(f"{server.url}/metrics", timeout=30, trust_env=False).raise_for_status()


def run(args: argparse.Namespace) -> dict[tuple[str, int], list[tuple[float, float]]]:
    """(tokens/s, CPU ms per token) per (setting, level), every repetition."""
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="corral-metrics-bench-") as tmp:
        servers: dict[str, srv.Server] = {}
        try:
            for setting in SETTINGS:
                servers[setting] = start(Path(tmp), setting, args)
            for rep in range(args.reps):
                order = list(SETTINGS) if rep % 2 == 0 else list(reversed(SETTINGS))
                for level in args.levels:
                    for setting in order:
                        rate, cpu_ms = measure(servers[setting], level, rep, args)
                        results.setdefault((setting, level), []).append((rate, cpu_ms))
                        log(f"rep {rep + 1}/{args.reps}, {level} streams, metrics {setting}: {rate:.1f} tok/s, "
                            f"{cpu_ms:.2f} CPU ms/token")
                scrape(servers["on"])
        finally:
            for server in servers.values():
                server.stop()
    return results


def table(results: dict[tuple[str, int], list[tuple[float, float]]], levels: list[int]) -> str:
    """Median tokens/s with metrics on and off, the ratio of the medians and the median of paired ratios."""
    lines = ["| streams | metrics on tok/s | metrics off tok/s | on/off of the medians | on/off per repetition, "
             "median (min-max) | CPU ms/token on | CPU ms/token off | CPU cost of metrics |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for level in levels:
        ons, offs = results[("on", level)], results[("off", level)]
        on, off = statistics.median(r for r, _ in ons), statistics.median(r for r, _ in offs)
        paired = [a[0] / b[0] for a, b in zip(ons, offs)]  # each repetition ran on and off back to back
        cpu_on, cpu_off = statistics.median(c for _, c in ons), statistics.median(c for _, c in offs)
        lines.append(f"| {level} | {on:.1f} | {off:.1f} | {on / off:.3f} | "
                     f"{statistics.median(paired):.3f} ({min(paired):.3f}-{max(paired):.3f}) | "
                     f"{cpu_on:.2f} | {cpu_off:.2f} | {100 * (cpu_on / cpu_off - 1):+.1f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(table(run(args), args.levels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
