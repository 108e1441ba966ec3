"""Throughput benchmark: corral against llama.cpp's llama-server and llama-cpp-python's server.

All three serve the same GGUF (smollm2:135m, Q4_1) with the same thread count and, where they have
slots, the same slot count; raw in-process ``llama_cpp.Llama`` generation on one stream is the floor.
Each server is driven through OpenAI ``POST /v1/completions`` with ``stream: true`` (the one protocol
all three speak) by 1, 2, 4 and 8 concurrent clients; each request has its own ~85-token ChatML prompt
(the same text on every server) and asks for 128 tokens at temperature 0.

    .venv/bin/python bench/throughput.py            # 3 repetitions of 1, 2, 4, 8 streams (~15-25 min)
    .venv/bin/python bench/throughput.py --quick    # 1 repetition of 1 and 4 streams (a few minutes)

The servers run side by side for the whole run and are measured in turn, in a rotating order, so
that noise from other work on the machine spreads over all of them. Results: one Markdown table on
stdout, and Markdown + JSON under bench/results/ (timestamped, plus latest.* or latest-quick.*).
Every server is stopped at the end, also on errors, Ctrl+C and SIGTERM. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load
import servers as srv
from report import machine_line, target_line, write_report
from llama_server_build import LLAMA_CPP_VERSION, ensure_llama_server

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
FLOOR = "floor"
LABELS = {FLOOR: "raw in-process `llama_cpp.Llama` (the floor)"}


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP: stop measuring, stop the servers, report what was measured."""


def _on_signal(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def threads_default() -> int:
    return len(os.sched_getaffinity(0)) or os.cpu_count() or 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 repetition of levels 1 and 4")
    parser.add_argument("--levels", default="1,2,4,8", help="concurrent streams per point (default 1,2,4,8)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each point (default 3)")
    parser.add_argument("--slots", type=int, default=4, help="parallel slots of corral and llama-server (default 4)")
    parser.add_argument("--threads", type=int, default=threads_default(), help="threads for every server")
    parser.add_argument("--tokens", type=int, default=128, help="tokens generated per request")
    parser.add_argument("--ttft-samples", type=int, default=5,
                        help="one-stream TTFT samples of the floor and corral per repetition (item 6; default 5)")
    parser.add_argument("--servers", default="floor,corral,llama-server,llama-cpp-python",
                        help="which to run, comma separated (default all)")
    parser.add_argument("--request-timeout", type=float, default=300.0, help="seconds per request")
    parser.add_argument("--max-minutes", type=float, default=90.0,
                        help="stop measuring after this long and report what was measured")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs and temporary store")
    args = parser.parse_args(argv)
    if args.quick:
        args.levels, args.reps = "1,4", 1
    args.levels = [int(x) for x in str(args.levels).split(",") if x.strip()]
    args.servers = [x.strip() for x in args.servers.split(",") if x.strip()]
    unknown = set(args.servers) - {FLOOR, "corral", "llama-server", "llama-cpp-python"}
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    return args


# --------------------------------------------------------------------------------------------- measuring


def run_floor(model: Path, threads: int, tokens: int, prompts: list[str],
              timeout: float) -> tuple[list, float, list[float]]:
    """The floor in a process of its own (so its threads and memory are its own): streams, RSS, and llama.cpp's
    own decode rate (``llama_perf_context``) for each stream."""
    job = {"model": str(model), "threads": threads, "max_tokens": tokens, "warmup": load.prompt("warmup", 0),
           "prompts": prompts}
    process = subprocess.Popen([sys.executable, str(HERE / "floor.py")], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(json.dumps(job), timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"floor.py failed ({process.returncode}): {err[-2000:]}")
    data = json.loads(out)
    perf = [rate for r in data["results"] if (rate := r.pop("llama_perf_decode_tok_s", None))]
    return [load.Stream(**r) for r in data["results"]], data["rss_mib"], perf


def warm_up(server: srv.Server, tokens: int, timeout: float) -> load.LevelRun:
    run = asyncio.run(load.run_level(server.url, server.model, [load.prompt(f"warmup-{server.name}", 0)],
                                     tokens, timeout))
    if run.requests[0].error:
        raise RuntimeError(f"{server.name}: warm-up request failed: {run.requests[0].error}\n{server.log_tail()}")
    return run


def spread(values: list[float | None]) -> dict | None:
    clean = [v for v in values if v is not None]
    if not clean:
        return None
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean), "n": len(clean)}


def aggregate(runs: list[dict]) -> dict:
    """Medians over the repetitions of one point, with min and max."""
    keys = ("aggregate_tok_s", "per_stream_tok_s", "ttft_p50_s", "ttft_p95_s", "mean_tokens_per_request",
            "llama_perf_decode_tok_s")
    out = {key: spread([r.get(key) for r in runs]) for key in keys}
    out["errors"] = sum(r["errors"] for r in runs)
    out["requests"] = sum(r["requests"] for r in runs)
    out["repetitions"] = len(runs)
    out["error_messages"] = sorted({m for r in runs for m in r["error_messages"]})[:5]
    return out


# --------------------------------------------------------------------------------------------- reporting


def _fmt(s: dict | None, scale: float = 1.0, digits: int = 1) -> str:
    if not s:
        return "-"
    if s["n"] == 1 or round(s["min"] * scale, digits) == round(s["max"] * scale, digits):
        return f"{s['median'] * scale:.{digits}f}"
    return f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}-{s['max'] * scale:.{digits}f})"


def table(result: dict) -> str:
    rows = [("| Server | Streams | Aggregate tok/s | Per-stream tok/s | TTFT p50 s | TTFT p95 s | Tokens/req | "
             "Errors | RSS loaded MiB |"), "|---|---|---|---|---|---|---|---|---|"]
    for entry in result["servers"].values():
        for i, (level, point) in enumerate(sorted(entry["points"].items(), key=lambda kv: int(kv[0]))):
            rss = entry.get("memory_loaded", {}).get("rss_mib")
            rows.append(" | ".join([
                f"| {entry['label'] if i == 0 else ''}", str(level), _fmt(point["aggregate_tok_s"]),
                _fmt(point["per_stream_tok_s"]), _fmt(point["ttft_p50_s"], digits=3),
                _fmt(point["ttft_p95_s"], digits=3), _fmt(point["mean_tokens_per_request"], digits=0),
                f"{point['errors']}/{point['requests']}",
                f"{rss:.0f}" if (rss and i == 0) else ""]) + " |")
    return "\n".join(rows)


def _ttft_median(result: dict, name: str) -> float | None:
    """The median of every item 6 TTFT sample (each repetition's series, several prompts each)."""
    samples = result["servers"].get(name, {}).get("ttft_samples") or []
    return statistics.median(samples) if samples else None


def _median(result: dict, name: str, level: int, key: str) -> float | None:
    point = result["servers"].get(name, {}).get("points", {}).get(str(level))
    return point[key]["median"] if point and point.get(key) else None


def targets(result: dict) -> list[dict]:
    """The targets this run measures (issue 17 items 3 and 6; the 2x-llama-cpp-python ones are issue 7's, still
    reported), each with its ratio and the figures it compares (met None where a figure is missing)."""
    checks: list[dict] = []

    def check(item: int | None, what: str, ours: float | None, theirs: float | None, ok, text) -> None:
        if ours is None or theirs is None:
            checks.append({"item": item, "target": what, "met": None, "ratio": None, "detail": "not measured"})
        else:
            checks.append({"item": item, "target": what, "met": bool(ok(ours, theirs)),
                           "ratio": ours / theirs if theirs else None, "detail": text(ours, theirs)})

    rate = lambda a, b: f"{a:.1f} vs {b:.1f} tok/s ({a / b:.2f} x)"  # noqa: E731
    peer = _median(result, "llama-server", 1, "per_stream_tok_s")

    def against_perf(a: float, b: float) -> str:  # llama-server on the same machine and threads, for scale
        return rate(a, b) + (f"; llama-server {peer:.1f} tok/s ({peer / b:.2f} x)" if peer else "")

    check(6, "1 stream: corral per-stream tok/s >= 0.95 x llama.cpp's own decode rate (llama_perf_context)",
          _median(result, "corral", 1, "per_stream_tok_s"), _median(result, FLOOR, 1, "llama_perf_decode_tok_s"),
          lambda a, b: a >= 0.95 * b, against_perf)
    check(6, "1 stream: corral TTFT within 25 ms of in-process llama-cpp-python (median of every sample)",
          _ttft_median(result, "corral"), _ttft_median(result, FLOOR),
          lambda a, b: a - b <= 0.025, lambda a, b: f"{a * 1000:.0f} vs {b * 1000:.0f} ms ({(a - b) * 1000:+.0f} ms)")
    levels = sorted(int(level) for level in result["servers"].get("corral", {}).get("points", {}))
    for level in levels:
        check(3, f"{level} stream(s) at {result['meta']['slots']} slots: corral aggregate >= 1.0 x llama-server",
              _median(result, "corral", level, "aggregate_tok_s"),
              _median(result, "llama-server", level, "aggregate_tok_s"), lambda a, b: a >= b, rate)
    for level in (4, 8):
        check(None, f"{level} streams: corral aggregate >= 2 x llama-cpp-python (issue 7, reported)",
              _median(result, "corral", level, "aggregate_tok_s"),
              _median(result, "llama-cpp-python", level, "aggregate_tok_s"), lambda a, b: a >= 2 * b, rate)
    return checks


def markdown(result: dict) -> str:
    meta = result["meta"]
    head = (f"# corral throughput benchmark, {meta['started']}\n\n"
            f"{meta['model']} ({meta['model_file']}), {meta['threads']} threads, {meta['slots']} slots "
            f"x {srv.CTX_PER_SLOT} context, {meta['tokens']} tokens per request at temperature 0, "
            f"~{meta['prompt_tokens']} prompt tokens (unique per request), {meta['reps']} repetition(s) per point; "
            f"streaming `POST /v1/completions`. Cells: median (min-max) over repetitions; per-stream tok/s "
            f"counts tokens after the first; aggregate = all generated tokens / wall time; RSS sums every "
            f"process of the server (corral: supervisor and all its services) after a warm-up request.\n\n"
            f"{machine_line(meta)} corral {meta['corral_commit']}, llama-cpp-python {LLAMA_CPP_VERSION}, llama-server built from "
            f"its vendored llama.cpp. Took {meta['minutes']:.1f} min.\n")
    perf = result["servers"].get(FLOOR, {}).get("points", {}).get("1", {}).get("llama_perf_decode_tok_s")
    lines = [head, table(result), ""]
    if perf:
        lines += [f"llama.cpp's own decode rate in the floor's generations (`llama_perf_context`: tokens over the time "
                  f"in their llama_decode calls): {_fmt(perf)} tok/s.", ""]
    lines += ["Targets (issue 17 items 3 and 6; issue 7):", ""]
    lines += [target_line(c) for c in result["targets"]]
    if result.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def write_results(result: dict, out: Path, quick: bool) -> list[Path]:
    stamp = result["meta"]["stamp"] + ("-quick" if quick else "")
    return write_report(out, (f"throughput-{stamp}", "latest-quick" if quick else "latest"), markdown(result), result)


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        return commit + ("+dirty" if dirty else "") if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _prompt_tokens(model: Path, levels: list[int]) -> int:
    """Mean token count of the benchmark's prompts (vocabulary only, no weights)."""
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    texts = [load.prompt(f"r0l{level}", i) for level in levels for i in range(level)]
    return round(statistics.mean(len(vocab.tokenize(t.encode(), add_bos=False, special=True)) for t in texts))


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: even where a shell ignored it
        signal.signal(sig, _on_signal)
    started = time.monotonic()
    deadline = started + args.max_minutes * 60
    from corral_cli.bundled import BUNDLED

    model = BUNDLED[0].locate()
    meta = {"started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "stamp": dt.datetime.now().strftime("%Y%m%d-%H%M%S"), "model": BUNDLED[0].name,
            "model_file": model.name, "threads": args.threads, "slots": args.slots, "tokens": args.tokens,
            "levels": args.levels, "reps": args.reps, "quick": args.quick, "cpu": _cpu(),
            "cpus": os.cpu_count(), "loadavg_start": _loadavg(), "corral_commit": _git_commit(),
            "llama_cpp_python": LLAMA_CPP_VERSION, "protocol": "POST /v1/completions, stream: true",
            "prompt_tokens": _prompt_tokens(model, args.levels)}
    result: dict = {"meta": meta, "servers": {}, "notes": []}
    running: list[srv.Server] = []
    work = Path(tempfile.mkdtemp(prefix="corral-throughput-"))
    failed = False
    try:
        wanted = [s for s in args.servers if s != FLOOR]
        if "llama-cpp-python" in wanted:
            srv.ensure_llama_cpp_server_deps()
        if "llama-server" in wanted:
            binary, built = ensure_llama_server()
            meta["llama_server_binary"] = str(binary)
            if built is not None:
                meta["llama_server_build_s"] = round(built)
        factories = {"corral": lambda: srv.corral(work, args.threads, args.slots),
                     "llama-server": lambda: srv.llama_server(work, binary, model, args.threads, args.slots),
                     "llama-cpp-python": lambda: srv.llama_cpp_server(work, model, args.threads)}
        for name in wanted:
            server = factories[name]()
            log(f"starting {server.label} on 127.0.0.1:{server.port}")
            running.append(server)
            server.start()
            warm_up(server, args.tokens, args.request_timeout)
            memory = server.memory()
            log(f"{server.name}: up and warm, RSS {memory['rss_mib']:.0f} MiB in {memory['processes']} process(es)")
            result["servers"][name] = {"label": server.label, "argv": server.argv, "memory_loaded": memory,
                                       "memory_peak": dict(memory), "points": {}, "runs": {}}
        if FLOOR in args.servers:
            result["servers"] = {FLOOR: {"label": LABELS[FLOOR], "points": {}, "runs": {}}, **result["servers"]}
        measure(args, model, running, result, deadline)
    except KeyboardInterrupt as exc:
        failed = True
        result["notes"].append(f"interrupted ({exc or 'Ctrl+C'}): partial results")
        log("interrupted: stopping the servers")
    except Exception as exc:  # noqa: BLE001 - report what was measured, then fail
        failed = True
        result["notes"].append(f"failed: {type(exc).__name__}: {str(exc)[:500]}")
        log(f"FAILED: {type(exc).__name__}: {exc}")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl+C must not cut the clean-up short
        for server in reversed(running):
            log(f"stopping {server.name}")
            server.stop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
    meta["loadavg_end"] = _loadavg()
    meta["minutes"] = (time.monotonic() - started) / 60
    for entry in result["servers"].values():
        entry["points"] = {str(level): aggregate(runs) for level, runs in entry["runs"].items() if runs}
    result["targets"] = targets(result)
    if any(entry["points"] for entry in result["servers"].values()):
        text = markdown(result)
        print(text)
        for path in write_results(result, args.out, args.quick):
            log(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    if failed or args.keep_logs:
        log(f"server logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def ttft_series(args: argparse.Namespace, model: Path, running: list[srv.Server], result: dict, rep: int) -> None:
    """Item 6's TTFT: the same ``--ttft-samples`` prompts, one at a time, in the floor's process and through corral
    (8 tokens each). One request per repetition left the comparison to chance: single TTFTs here vary by ±100 ms."""
    corral = next((server for server in running if server.name == "corral"), None)
    if args.ttft_samples <= 0 or corral is None or FLOOR not in result["servers"]:
        return
    prompts = [load.prompt(f"r{rep}ttft", i) for i in range(args.ttft_samples)]
    streams, _, _ = run_floor(model, args.threads, 8, prompts, args.request_timeout)
    floor = [s.ttft for s in streams if s.ttft is not None]
    ours = [asyncio.run(load.run_level(corral.url, corral.model, [text], 8, args.request_timeout)).requests[0].ttft
            for text in prompts]
    ours = [t for t in ours if t is not None]
    result["servers"][FLOOR].setdefault("ttft_samples", []).extend(floor)
    result["servers"]["corral"].setdefault("ttft_samples", []).extend(ours)
    log(f"rep {rep + 1}/{args.reps} TTFT series: floor {statistics.median(floor) * 1000:.0f} ms, "
        f"corral {statistics.median(ours) * 1000:.0f} ms (medians of {len(floor)} and {len(ours)})")


def measure(args: argparse.Namespace, model: Path, running: list[srv.Server], result: dict, deadline: float) -> None:
    """Every point, repetition by repetition; the servers' order rotates so noise is shared out."""
    servers = result["servers"]
    for rep in range(args.reps):
        if FLOOR in servers:
            if time.monotonic() > deadline:
                result["notes"].append(f"--max-minutes reached before repetition {rep + 1}")
                return
            streams, rss, perf = run_floor(model, args.threads, args.tokens, [load.prompt(f"r{rep}l1", 0)],
                                           args.request_timeout)
            run = load.LevelRun(1, streams[0].total or 0.0, streams)
            servers[FLOOR]["runs"].setdefault(1, []).append({**run.summary(), "llama_perf_decode_tok_s": perf[0]
                                                             if perf else None})
            servers[FLOOR].setdefault("raw", []).append({"rep": rep, "loadavg_1m": os.getloadavg()[0],
                                                         **run.to_json()})
            servers[FLOOR]["memory_loaded"] = {"rss_mib": rss, "processes": 1}
            summary = run.summary()
            log(f"rep {rep + 1}/{args.reps} floor: {summary['per_stream_tok_s'] or 0:.1f} tok/s, "
                f"TTFT {summary['ttft_p50_s'] or 0:.3f} s")
        ttft_series(args, model, running, result, rep)
        for level in args.levels:
            shift = (rep + level) % max(1, len(running))
            for server in running[shift:] + running[:shift]:
                if time.monotonic() > deadline:
                    result["notes"].append(f"--max-minutes reached during repetition {rep + 1}")
                    return
                if not server.alive():
                    raise RuntimeError(f"{server.name} died; log {server.log_path}:\n{server.log_tail()}")
                prompts = [load.prompt(f"r{rep}l{level}", i) for i in range(level)]
                run = asyncio.run(load.run_level(server.url, server.model, prompts, args.tokens,
                                                 args.request_timeout))
                summary = run.summary()
                entry = servers[server.name]
                entry["runs"].setdefault(level, []).append(summary)
                entry.setdefault("raw", []).append({"rep": rep, "loadavg_1m": os.getloadavg()[0], **run.to_json()})
                memory = server.memory()
                if memory["rss_mib"] > entry["memory_peak"]["rss_mib"]:
                    entry["memory_peak"] = memory
                log(f"rep {rep + 1}/{args.reps} {level} stream(s) {server.name}: "
                    f"{summary['aggregate_tok_s']:.1f} tok/s aggregate, "
                    f"{summary['per_stream_tok_s'] or 0:.1f} per stream, TTFT p50 {summary['ttft_p50_s'] or 0:.3f} s, "
                    f"{summary['errors']} error(s), load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
