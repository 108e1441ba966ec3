"""Long prompts, bursts and multi-turn reuse (issue 17 items 2, 4 and 5): corral against llama.cpp's llama-server.

    .venv/bin/python bench/scenarios.py              # 3 repetitions of everything (~15-30 min on 2 cores)
    .venv/bin/python bench/scenarios.py --quick      # 1 repetition, 2 conversations (~5 min)
    .venv/bin/python bench/scenarios.py --items 5    # one item only

Every server serves smollm2:135m with the same threads and 4096 tokens of context per slot, driven through
streaming ``POST /v1/completions`` with raw ChatML at temperature 0; every prompt's unique part comes first.

Item 2 (corral and llama-server --cache-ram 0, 4 slots): TTFT of a ~2000-token prompt (a) on an idle server,
(b) while 3 other streams decode, and those streams' tokens/s before and during it.
Item 4: 16 simultaneous streams, corral OLLAMA_NUM_PARALLEL=8 against llama-server --parallel 8 (-c 32768):
aggregate tokens/s, TTFT p50/p95, errors; then 64 simultaneous clients against corral with its default
parallelism and queue (neither OLLAMA_NUM_PARALLEL nor OLLAMA_MAX_QUEUE set), llama-server --parallel 8 for
reference: answered, HTTP statuses, TTFT p95.
Item 5 (corral at 4 slots, llama-server --parallel 4 with its prompt cache on): a conversation's first turn
(a few hundred tokens), then its second (that text + the answer + one new user message); TTFT of both, one
conversation at a time and with every first turn before every second one (several users).

Figures: median and (min-max) over repetitions, the servers measured in turn in a rotating order, each
measurement once every server has stopped computing. Results: a Markdown table on stdout, and
bench/results/scenarios-<stamp>.{md,json} and scenarios-latest.{md,json} whose "targets" list says met or
missed per target. Every server is stopped at the end, also on errors, Ctrl+C and SIGTERM; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402
import servers as srv  # noqa: E402
from report import machine_line, target_line, write_report  # noqa: E402
from llama_server_build import LLAMA_CPP_VERSION, ensure_llama_server  # noqa: E402
from throughput import (_cpu, _fmt, _git_commit, _loadavg, _on_signal, log, spread,  # noqa: E402
                        threads_default, warm_up)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
ANSWER_TOKENS = 64  # item 5: the first answer
RUNNING_STREAMS, RUNNING_TOKENS, LEAD_S = 3, 512, 1.5  # item 2b: the decoding streams, their length, their lead
BURST, CROWD = 16, 64
ITEMS = {2: ("long_idle", "long_busy"), 4: ("burst16", "crowd64"), 5: ("turns_one", "turns_many")}
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", default="2,4,5", help="issue 17 items to measure, comma separated (default 2,4,5)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every scenario (default 3)")
    parser.add_argument("--quick", action="store_true", help="1 repetition, 2 conversations, 1 idle long prompt")
    parser.add_argument("--threads", type=int, default=threads_default(), help="threads for every server")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per request of the 16-stream burst")
    parser.add_argument("--crowd-tokens", type=int, default=64, help="tokens per request of the 64 clients")
    parser.add_argument("--conversations", type=int, default=4, help="conversations per repetition (item 5)")
    parser.add_argument("--request-timeout", type=float, default=300.0, help="seconds per request")
    parser.add_argument("--max-minutes", type=float, default=90.0,
                        help="stop measuring after this long and report what was measured")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs and temporary stores")
    args = parser.parse_args(argv)
    args.items = sorted({int(x) for x in str(args.items).split(",") if x.strip()})
    if set(args.items) - set(ITEMS):
        parser.error("--items takes 2, 4 and 5")
    args.idle_prompts = 2
    if args.quick:
        args.reps, args.conversations, args.idle_prompts = 1, 2, 1
    return args


# --------------------------------------------------------------------------------------------- scenarios


def _body(server: srv.Server, text: str, tokens: int) -> dict:
    return load.completion_body(server.model, text, tokens)


async def idle_ttft(server: srv.Server, texts: list[str], timeout: float) -> dict:
    """Item 2a: each long prompt alone on the server, one after another."""
    async with load.http_client(1, timeout) as http:
        runs = [await load.stream_request(http, server.url + "/v1/completions", _body(server, t, 8), timeout)
                for t in texts]
    ok = [r.ttft for r in runs if not r.error and r.ttft is not None]
    return {"ttft_s": _median(ok), "requests": len(runs), "errors": len(runs) - len(ok), **_errors(runs)}


async def busy_ttft(server: srv.Server, text: str, running: list[str], timeout: float) -> dict:
    """Item 2b: the long prompt sent once ``running`` streams are decoding; their token times around it."""
    times: list[list[float]] = [[] for _ in running]
    url = server.url + "/v1/completions"
    async with load.http_client(len(running) + 1, timeout) as http:
        tasks = [asyncio.create_task(load.stream_request(
            http, url, _body(server, t, RUNNING_TOKENS), timeout, on_text=lambda _text, now, i=i: times[i].append(now)))
            for i, t in enumerate(running)]
        try:
            if failed := await _all_running(tasks, times, timeout):
                return {"requests": 1, "errors": 1, "error_messages": [failed], "ttft_s": None}
            await asyncio.sleep(LEAD_S)
            sent = time.perf_counter()
            long = await load.stream_request(http, url, _body(server, text, 8), timeout)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    if long.error or long.ttft is None:
        return {"requests": 1, "errors": 1, **_errors([long]), "ttft_s": None}
    first = sent + long.ttft
    before = [sum(sent - LEAD_S <= t < sent for t in ts) / LEAD_S for ts in times]
    during = [sum(sent <= t < first for t in ts) / long.ttft for ts in times]
    return {"ttft_s": long.ttft, "requests": 1, "errors": 0, "running_tok_s_before": statistics.mean(before),
            "running_tok_s_during": statistics.mean(during), "slowest_running_tok_s_during": min(during),
            "running_ended_early": sum(ts[-1] < first for ts in times)}


async def _all_running(tasks: list[asyncio.Task], times: list[list[float]], timeout: float) -> str | None:
    """Wait until every stream has its first token: None, or why one will never have it."""
    deadline = time.perf_counter() + timeout
    while not all(times):
        if done := [t.result() for t in tasks if t.done()]:
            return f"a running stream ended before its first token: {done[0].error}"
        if time.perf_counter() > deadline:
            return f"the running streams had no first token after {timeout:.0f} s"
        await asyncio.sleep(0.02)
    return None


def burst(server: srv.Server, texts: list[str], tokens: int, timeout: float) -> dict:
    """Item 4: every text at once; the load generator's summary plus HTTP statuses and answered count."""
    run = asyncio.run(load.run_level(server.url, server.model, texts, tokens, timeout))
    statuses = collections.Counter(str(r.status) for r in run.requests)
    summary = run.summary()
    return {**summary, "answered": summary["requests"] - summary["errors"], "statuses": dict(statuses)}


async def conversations(server: srv.Server, firsts: list[str], interleaved: bool, tokens: int,
                        timeout: float) -> dict:
    """Item 5: first and second turns, either per conversation or all first turns before all second ones."""
    url = server.url + "/v1/completions"
    one, two = [], []
    async with load.http_client(1, timeout) as http:
        async def turn_one(text: str) -> str:
            parts: list[str] = []
            one.append(await load.stream_request(http, url, _body(server, text, tokens), timeout,
                                                 on_text=lambda piece, _now: parts.append(piece)))
            return "".join(parts)

        async def turn_two(text: str, answer: str) -> None:
            two.append(await load.stream_request(http, url, _body(server, load.second_turn(text, answer), 8), timeout))

        if interleaved:
            answers = [await turn_one(text) for text in firsts]
            for text, answer in zip(firsts, answers):
                await turn_two(text, answer)
        else:
            for text in firsts:
                await turn_two(text, await turn_one(text))
    ok = [(a, b) for a, b in zip(one, two) if not a.error and not b.error]
    return {"turn1_ttft_s": _median([a.ttft for a, _ in ok]), "turn2_ttft_s": _median([b.ttft for _, b in ok]),
            "requests": len(one) + len(two), "errors": sum(bool(r.error) for r in one + two), **_errors(one + two)}


def _median(values: list[float | None]) -> float | None:
    return statistics.median(clean) if (clean := [v for v in values if v is not None]) else None


def _errors(runs: list[load.Stream]) -> dict:
    return {"error_messages": sorted({r.error for r in runs if r.error})[:5]}


# --------------------------------------------------------------------------------------------- the plan
# corral's server and the peer's, per scenario
PAIRS = {"long_idle": ("corral", "llama-server"), "long_busy": ("corral", "llama-server"),
         "burst16": ("corral-8", "llama-server-8"), "crowd64": ("corral-default", "llama-server-8"),
         "turns_one": ("corral", "llama-server-cache"), "turns_many": ("corral", "llama-server-cache")}


def measure(args: argparse.Namespace, count: load.Count, scenario: str, server: srv.Server, rep: int) -> dict:
    """One repetition of one scenario on one server (the same texts on every server, new ones each repetition)."""
    timeout = args.request_timeout
    if scenario == "long_idle":
        texts = [load.long_prompt(f"r{rep}i{i}", count) for i in range(args.idle_prompts)]
        return asyncio.run(idle_ttft(server, texts, timeout))
    if scenario == "long_busy":
        running = [load.prompt(f"r{rep}run", i) for i in range(RUNNING_STREAMS)]
        figures = asyncio.run(busy_ttft(server, load.long_prompt(f"r{rep}b", count), running, timeout))
        # Its running streams' clients have just left: how long the server goes on computing for them.
        return {**figures, "busy_after_disconnect_s": srv.wait_quiet([server])}
    if scenario in ("burst16", "crowd64"):
        n, tokens = (BURST, args.tokens) if scenario == "burst16" else (CROWD, args.crowd_tokens)
        return burst(server, [load.prompt(f"r{rep}n{n}", i) for i in range(n)], tokens, timeout)
    firsts = [load.first_turn(f"{i}-r{rep}-{scenario}", i, count) for i in range(args.conversations)]
    return asyncio.run(conversations(server, firsts, scenario == "turns_many", ANSWER_TOKENS, timeout))


def factories(args: argparse.Namespace, work: Path, model: Path) -> dict[str, Callable[[], srv.Server]]:
    """Every server a scenario may need, by name; llama-server is built (or waited for) only when needed."""
    t, binary = args.threads, lambda: ensure_llama_server()[0]
    return {
        "corral": lambda: srv.corral(work, t, 4),
        "llama-server": lambda: srv.llama_server(work, binary(), model, t, 4),
        "llama-server-cache": lambda: srv.llama_server(work, binary(), model, t, 4, "llama-server-cache", True),
        "corral-8": lambda: srv.corral(work, t, 8, "corral-8"),
        "llama-server-8": lambda: srv.llama_server(work, binary(), model, t, 8, "llama-server-8"),
        "corral-default": lambda: srv.corral(work, t, None, "corral-default"),
    }


def groups(items: list[int]) -> list[list[str]]:
    """Scenarios in groups whose servers run side by side: 4-slot ones (items 2, 5), then 8-slot (item 4)."""
    wanted = [s for item in items for s in ITEMS[item]]
    eight = [s for s in wanted if PAIRS[s][1] == "llama-server-8"]
    return [g for g in ([s for s in wanted if s not in eight], eight) if g]


def run_group(scenarios: list[str], args: argparse.Namespace, count: load.Count, make: dict, result: dict,
              running: list[srv.Server], deadline: float) -> None:
    """Start the group's servers side by side, measure every repetition, stop them (on an error or a
    signal they stay in ``running`` for the caller's clean-up)."""
    started: dict[str, srv.Server] = {}
    for name in dict.fromkeys(n for s in scenarios for n in PAIRS[s]):
        server = make[name]()
        log(f"starting {server.label} on 127.0.0.1:{server.port}")
        running.append(server)
        server.start()
        warm_up(server, 8, args.request_timeout)
        started[name] = server
        result["servers"][name] = {"label": server.label, "argv": server.argv}
    _repetitions(scenarios, args, count, started, result, deadline)
    for server in reversed(started.values()):
        log(f"stopping {server.name}")
        server.stop()
        running.remove(server)


def _repetitions(scenarios: list[str], args: argparse.Namespace, count: load.Count, started: dict, result: dict,
                 deadline: float) -> None:
    """Every repetition of every scenario, the two servers' order alternating so noise falls on both."""
    for rep in range(args.reps):
        for k, scenario in enumerate(scenarios):
            pair = list(PAIRS[scenario])
            for name in pair[(rep + k) % 2:] + pair[:(rep + k) % 2]:
                if time.monotonic() > deadline:
                    result["notes"].append(f"--max-minutes reached in repetition {rep + 1} of {scenario}")
                    return
                quiet = srv.wait_quiet(list(started.values()))  # nothing left over from the last measurement
                _measure_one(args, count, scenario, started[name], rep, result, quiet)


def _measure_one(args: argparse.Namespace, count: load.Count, scenario: str, server: srv.Server, rep: int,
                 result: dict, quiet: float) -> None:
    if not server.alive():
        raise RuntimeError(f"{server.name} died; log {server.log_path}:\n{server.log_tail()}")
    figures = srv.accounted(server, lambda: measure(args, count, scenario, server, rep))
    figures |= {"rep": rep, "loadavg_1m": os.getloadavg()[0], "waited_for_quiet_s": round(quiet, 1)}
    result["scenarios"].setdefault(scenario, {}).setdefault(server.name, []).append(figures)
    shown = ", ".join(f"{k} {v:.3f}" for k, v in figures.items() if isinstance(v, float) and k != "loadavg_1m")
    log(f"rep {rep + 1}/{args.reps} {scenario} {server.name}: {shown}; "
        f"{figures.get('errors', 0)} error(s), load {figures['loadavg_1m']:.1f}")


# --------------------------------------------------------------------------------------------- reporting

# (item, scenario, figure, what it is, digits); corral's server and the peer's come from PAIRS.
ROWS = [
    (2, "long_idle", "ttft_s", "TTFT s, ~2000-token prompt, idle server", 3),
    (2, "long_busy", "ttft_s", f"TTFT s, ~2000-token prompt while {RUNNING_STREAMS} streams decode", 3),
    (2, "long_busy", "running_tok_s_before", f"those streams' tok/s each, {LEAD_S:g} s before it", 1),
    (2, "long_busy", "running_tok_s_during", "their tok/s each while it is processed (mean)", 1),
    (2, "long_busy", "slowest_running_tok_s_during", "the slowest one's tok/s meanwhile", 1),
    (2, "long_busy", "busy_after_disconnect_s", "s the server computed on after those streams' clients left", 1),
    (4, "burst16", "aggregate_tok_s", f"{BURST} streams at 8 slots: aggregate tok/s", 1),
    (4, "burst16", "ttft_p50_s", f"{BURST} streams: TTFT p50 s", 3),
    (4, "burst16", "ttft_p95_s", f"{BURST} streams: TTFT p95 s", 3),
    (4, "burst16", "mean_tokens_per_request", f"{BURST} streams: tokens per request", 0),
    (4, "burst16", "errors", f"{BURST} streams: errors / requests", 0),
    (4, "burst16", "server_cpu_s", f"{BURST} streams: CPU s the server used (all its processes)", 1),
    (4, "crowd64", "ttft_p50_s", f"{CROWD} clients (corral's defaults): TTFT p50 s", 3),
    (4, "crowd64", "ttft_p95_s", f"{CROWD} clients: TTFT p95 s", 3),
    (4, "crowd64", "aggregate_tok_s", f"{CROWD} clients: aggregate tok/s", 1),
    (4, "crowd64", "answered", f"{CROWD} clients: answered / requests", 0),
    (4, "crowd64", "statuses", f"{CROWD} clients: HTTP statuses", 0),
    (4, "crowd64", "server_cpu_s", f"{CROWD} clients: CPU s the server used", 1),
    (5, "turns_one", "turn1_ttft_s", "first turn TTFT s, one conversation at a time", 3),
    (5, "turns_one", "turn2_ttft_s", "second turn TTFT s, one conversation at a time", 3),
    (5, "turns_many", "turn1_ttft_s", "first turn TTFT s, conversations interleaved", 3),
    (5, "turns_many", "turn2_ttft_s", "second turn TTFT s, conversations interleaved", 3),
]
COUNTS = ("errors", "answered", "statuses")
NO_RATIO = (*COUNTS, "busy_after_disconnect_s")  # a ratio to ~0 s says nothing


def summarize(result: dict) -> dict:
    """Per scenario and server: each figure's median and (min-max) over the repetitions; counts summed."""
    out: dict = {}
    for scenario, by_server in result["scenarios"].items():
        for name, runs in by_server.items():
            figures = {k for run in runs for k, v in run.items() if isinstance(v, (int, float)) and k != "rep"}
            entry = {k: spread([run.get(k) for run in runs]) for k in figures - {"errors", "answered", "requests"}}
            for key in ("errors", "answered", "requests"):
                entry[key] = sum(run.get(key, 0) for run in runs)
            entry["statuses"] = dict(sum((collections.Counter(run.get("statuses", {})) for run in runs),
                                         collections.Counter()))
            entry["error_messages"] = sorted({m for run in runs for m in run.get("error_messages", [])})[:5]
            entry["repetitions"] = len(runs)
            out.setdefault(scenario, {})[name] = entry
    return out


def _cell(entry: dict | None, figure: str, digits: int) -> str:
    if entry is None:
        return "-"
    if figure == "statuses":
        return ", ".join(f"{k} x{v}" for k, v in sorted(entry["statuses"].items())) or "-"
    if figure in ("errors", "answered"):
        return f"{entry[figure]}/{entry['requests']}"
    return _fmt(entry.get(figure), digits=digits)


def _medians(summary: dict, scenario: str, figure: str) -> tuple[float | None, float | None]:
    ours, theirs = (summary.get(scenario, {}).get(name, {}).get(figure) for name in PAIRS[scenario])
    return (ours["median"] if ours else None), (theirs["median"] if theirs else None)


def table(summary: dict) -> str:
    rows = ["| Item | Measure | corral | peer | corral / peer |", "|---|---|---|---|---|"]
    for item, scenario, figure, what, digits in ROWS:
        if scenario not in summary:
            continue
        ours, theirs = (summary[scenario].get(name) for name in PAIRS[scenario])
        a, b = _medians(summary, scenario, figure) if figure not in NO_RATIO else (None, None)
        ratio = f"{a / b:.2f}" if a is not None and b else "-"
        rows.append(f"| {item} | {what} | {_cell(ours, figure, digits)} | {_cell(theirs, figure, digits)} | {ratio} |")
    return "\n".join(rows)


# (item, scenario, figure, target, limit): corral's median / the peer's must be <= limit (>= for tok/s).
RATIO_TARGETS = [
    (2, "long_idle", "ttft_s", "TTFT of a ~2000-token prompt on an idle server <= 1.05x llama-server's", 1.05),
    (2, "long_busy", "ttft_s", f"TTFT of a ~2000-token prompt while {RUNNING_STREAMS} other streams decode "
     "<= 1.05x llama-server's", 1.05),
    (4, "burst16", "aggregate_tok_s", f"{BURST} streams at OLLAMA_NUM_PARALLEL=8: aggregate tok/s >= "
     "llama-server --parallel 8", 1.0),
    (4, "burst16", "ttft_p95_s", f"{BURST} streams: TTFT p95 <= 1.1x llama-server --parallel 8", 1.1),
    (5, "turns_one", "turn2_ttft_s", "second-turn TTFT, one conversation at a time, <= 1.1x llama-server "
     "with its prompt cache on", 1.1),
    (5, "turns_many", "turn2_ttft_s", "second-turn TTFT, several conversations interleaved, <= 1.1x "
     "llama-server with its prompt cache on", 1.1),
]


def targets(summary: dict) -> list[dict]:
    """The issue's targets: met true/false, or null where a figure was not measured."""
    checks = []
    for item, scenario, figure, text, limit in RATIO_TARGETS:
        a, b = _medians(summary, scenario, figure)
        if a is None or not b:
            checks.append({"item": item, "target": text, "met": None, "ratio": None, "detail": "not measured"})
            continue
        ratio = a / b
        met = ratio >= limit if figure.endswith("tok_s") else ratio <= limit
        ours, theirs = (summary[scenario][name] for name in PAIRS[scenario])
        detail = f"{_fmt(ours[figure], digits=3)} vs {_fmt(theirs[figure], digits=3)} ({ratio:.2f}x)"
        if scenario == "long_busy":
            detail += ("; running streams' tok/s during it "
                       f"{_fmt(ours.get('running_tok_s_during'))} vs {_fmt(theirs.get('running_tok_s_during'))}")
        checks.append({"item": item, "target": text, "met": bool(met), "ratio": round(ratio, 3), "detail": detail})
    return sorted(checks + _count_targets(summary), key=lambda c: c["item"])


def _count_targets(summary: dict) -> list[dict]:
    """Item 4's counts: no errors in the 16-stream burst, every one of the 64 clients answered."""
    ours, peer = (summary.get("burst16", {}).get(name) for name in PAIRS["burst16"])
    checks = [{"item": 4, "target": f"{BURST} streams at OLLAMA_NUM_PARALLEL=8: no errors", "ratio": None,
               "met": None if ours is None else ours["errors"] == 0, "detail": "not measured" if ours is None else
               f"corral {_cell(ours, 'errors', 0)} errors, llama-server {_cell(peer, 'errors', 0)}"
               + (f" ({'; '.join(ours['error_messages'])})" if ours["error_messages"] else "")}]
    ours, peer = (summary.get("crowd64", {}).get(name) or {} for name in PAIRS["crowd64"])
    detail = "not measured" if not ours else (
        f"corral answered {_cell(ours, 'answered', 0)} (HTTP {_cell(ours, 'statuses', 0)}), TTFT p95 "
        f"{_fmt(ours.get('ttft_p95_s'), digits=3)} s; llama-server --parallel 8 answered "
        f"{_cell(peer or None, 'answered', 0)}, TTFT p95 {_fmt(peer.get('ttft_p95_s'), digits=3)} s"
        + (f"; corral's errors: {'; '.join(ours['error_messages'])}" if ours["error_messages"] else ""))
    met = None if not ours else ours["answered"] == ours["requests"] and ours["errors"] == 0
    return checks + [{"item": 4, "target": f"{CROWD} concurrent clients, corral's default queue and parallelism: "
                      "all answered, none dropped", "met": met, "ratio": None, "detail": detail}]


def caveats(result: dict) -> list[str]:
    """What makes a figure doubtful: running streams that ended before the long prompt's first token, other
    processes busy during a measurement, measurements that had to wait for a server to go quiet first."""
    notes = []
    for scenario, by_server in result["scenarios"].items():
        for name, runs in by_server.items():
            if ended := sum(run.get("running_ended_early", 0) for run in runs):
                notes.append(f"{scenario} {name}: {ended} running stream(s) ended before the long prompt's first "
                             "token (their tok/s during it is too low)")
            if busy := [run["others_cpu_share"] for run in runs if run.get("others_cpu_share", 0) >= 0.15]:
                notes.append(f"{scenario} {name}: other processes used {', '.join(f'{b:.0%}' for b in busy)} of the "
                             "CPUs during some repetitions (their figures are unreliable)")
            if waited := [run["waited_for_quiet_s"] for run in runs if run.get("waited_for_quiet_s", 0) >= 5]:
                notes.append(f"{scenario} {name}: waited {', '.join(f'{w:.0f}' for w in waited)} s for the servers "
                             "to stop computing before measuring")
    return notes


def markdown(result: dict) -> str:
    meta = result["meta"]
    head = (f"# corral scenarios (issue 17 items {', '.join(map(str, meta['items']))}), {meta['started']}\n\n"
            f"{meta['model']} ({meta['model_file']}), {meta['threads']} threads, {srv.CTX_PER_SLOT} tokens of context "
            f"per slot, streaming `POST /v1/completions` at temperature 0; prompts: ~{meta['long_prompt_tokens']} "
            f"tokens (item 2), first turns ~{meta['first_turn_tokens']} tokens + a {meta['answer_tokens']}-token "
            f"answer (item 5). {meta['reps']} repetition(s){' (--quick)' if meta['quick'] else ''}; cells: median "
            f"(min-max) over repetitions; ratio: of the medians.\n\n"
            f"{machine_line(meta)} corral {meta['corral_commit']}, llama-server built from llama-cpp-python {LLAMA_CPP_VERSION}'s llama.cpp. "
            f"Took {meta['minutes']:.1f} min.\n")
    servers = [f"- {name}: {entry['label']}" for name, entry in result["servers"].items()]
    lines = [head, table(result["summary"]), "", "Servers (corral / peer per item: 2: corral / llama-server; "
             "4: corral-8 / llama-server-8 (16 streams), corral-default / llama-server-8 (64 clients); 5: corral / "
             "llama-server-cache):", "", *servers, "", "Targets (issue 17):", ""]
    lines += [target_line(c) for c in result["targets"]]
    if result.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def write_results(result: dict, out: Path) -> list[Path]:
    """scenarios-<stamp>.{md,json} and scenarios-latest.{md,json}, each written whole or not at all."""
    stamp = result["meta"]["stamp"] + ("-quick" if result["meta"]["quick"] else "")
    return write_report(out, (f"scenarios-{stamp}", "scenarios-latest"), markdown(result), result)


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in SIGNALS:  # SIGINT too: even where a shell ignored it
        signal.signal(sig, _on_signal)
    started = time.monotonic()
    from corral_cli.bundled import BUNDLED

    model = BUNDLED[0].locate()
    count = load.token_counter(model)
    meta = {"started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "stamp": dt.datetime.now().strftime("%Y%m%d-%H%M%S"), "model": BUNDLED[0].name, "model_file": model.name,
            "items": args.items, "threads": args.threads, "reps": args.reps, "quick": args.quick,
            "tokens": args.tokens, "crowd_tokens": args.crowd_tokens, "conversations": args.conversations,
            "answer_tokens": ANSWER_TOKENS, "long_prompt_tokens": count(load.long_prompt("r0b", count)),
            "first_turn_tokens": count(load.first_turn("0-r0-turns_one", 0, count)), "cpu": _cpu(),
            "cpus": os.cpu_count(),
            "loadavg_start": _loadavg(), "corral_commit": _git_commit(), "llama_cpp_python": LLAMA_CPP_VERSION,
            "protocol": "POST /v1/completions, stream: true"}
    result: dict = {"meta": meta, "servers": {}, "scenarios": {}, "notes": []}
    running: list[srv.Server] = []
    work = Path(tempfile.mkdtemp(prefix="corral-scenarios-"))
    failed = False
    try:
        make = factories(args, work, model)
        for scenarios in groups(args.items):
            run_group(scenarios, args, count, make, result, running, started + args.max_minutes * 60)
    except KeyboardInterrupt as exc:
        failed = True
        result["notes"].append(f"interrupted ({exc or 'Ctrl+C'}): partial results")
        log("interrupted: stopping the servers")
    except Exception as exc:  # noqa: BLE001 - report what was measured, then fail
        failed = True
        result["notes"].append(f"failed: {type(exc).__name__}: {str(exc)[:500]}")
        log(f"FAILED: {type(exc).__name__}: {exc}")
    finally:
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl+C must not cut the clean-up short
        for server in reversed(running):
            log(f"stopping {server.name}")
            server.stop()
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
    meta["loadavg_end"] = _loadavg()
    meta["minutes"] = (time.monotonic() - started) / 60
    result["summary"] = summarize(result)
    result["targets"] = targets(result["summary"])
    result["notes"] += caveats(result)
    print(markdown(result))
    for path in write_results(result, args.out):
        log(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    if failed or args.keep_logs:
        log(f"server logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
