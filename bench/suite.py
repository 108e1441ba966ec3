"""`make bench`: every performance target of issue 17 measured against the peers in one run, met or missed.

    .venv/bin/python bench/suite.py             # everything (about an hour on 2 cores)
    .venv/bin/python bench/suite.py --quick     # one repetition of each, a 512 MiB blob: a sanity check
    .venv/bin/python bench/suite.py --only throughput,memory

Runs, one after the other, each in a process of its own (so one failing does not stop the others):

| part | items | what |
|---|---|---|
| throughput | 3, 6 | bench/throughput.py: 1, 2, 4, 8 streams at 4 slots against llama-server; one stream against llama.cpp's own decode rate (`llama_perf_context`) and in-process llama-cpp-python's TTFT |
| scenarios | 2, 4, 5 | bench/scenarios.py: a 2,000-token prompt, bursts of 16 and 64 clients, the second turn of a chat |
| memory | 1, 8 | bench/memory.py: PSS idle and loaded against llama-server; cold start to first token |
| blob | 7 | bench/blob_transfer.py: push and pull of a 2 GiB blob against cp, RSS growth, resume |

Each part writes its own tables into a scratch folder; this script gathers their targets (each a ratio against
the peer, median over repetitions, with the range in the part's table), prints one met/missed line per target,
and writes the whole report to bench/results/suite-<timestamp>.{md,json} and suite-latest.{md,json}
(suite-latest-quick.* for --quick). Exit status: 0 when every part ran (targets missed or not), 1 when a part
failed. Ctrl+C stops the running part (which stops its servers) and reports what was measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from report import write_report
from throughput import _git_commit, _loadavg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"


@dataclass(frozen=True)
class Part:
    """One benchmark script: how to run it into a scratch folder, and where its JSON lands there."""

    name: str
    items: str
    script: str
    result: str  # the JSON file the script writes under the scratch folder

    def argv(self, out: Path, quick: bool, args: argparse.Namespace) -> list[str]:
        base = [sys.executable, str(HERE / self.script)]
        if self.name == "blob":
            return base + ["--size", "512M" if quick else args.blob_size, "--json", str(out / self.result)]
        if self.name == "memory":
            return base + ["--out", str(out), "--cold-reps", "1" if quick else str(args.reps)]
        return base + ["--out", str(out)] + (["--quick"] if quick else ["--reps", str(args.reps)])


PARTS = (Part("throughput", "3, 6", "throughput.py", "latest.json"),
         Part("scenarios", "2, 4, 5", "scenarios.py", "scenarios-latest.json"),
         Part("memory", "1, 8", "memory.py", "memory-latest.json"),
         Part("blob", "7", "blob_transfer.py", "blob.json"))
QUICK_RESULT = {"throughput": "latest-quick.json", "scenarios": "scenarios-latest.json"}


def log(message: str) -> None:
    print(f"[suite {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one repetition of each part, a 512 MiB blob")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each point (default 3)")
    parser.add_argument("--only", default=",".join(p.name for p in PARTS),
                        help="parts to run, comma separated (default: " + ",".join(p.name for p in PARTS) + ")")
    parser.add_argument("--blob-size", default="2G", help="blob size for the transfer part (default 2G)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    names = {p.name for p in PARTS}
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    if unknown := set(args.only) - names:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))} (known: {', '.join(sorted(names))})")
    return args


def run_part(part: Part, scratch: Path, args: argparse.Namespace) -> dict:
    """Run one part; its targets, its Markdown report (when it wrote one), its exit status and duration."""
    out = scratch / part.name
    out.mkdir(parents=True, exist_ok=True)
    argv = part.argv(out, args.quick, args)
    log(f"{part.name} (items {part.items}): {' '.join(argv[1:])}")
    started = time.monotonic()
    log_path = out / "output.log"
    with log_path.open("w") as handle:
        status = subprocess.run(argv, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, check=False).returncode
    minutes = (time.monotonic() - started) / 60
    name = QUICK_RESULT.get(part.name, part.result) if args.quick else part.result
    found = out / name
    data = json.loads(found.read_text()) if found.exists() else {}
    markdown = found.with_suffix(".md")
    report = markdown.read_text() if markdown.exists() else log_path.read_text()[-6000:]
    log(f"{part.name}: exit {status} after {minutes:.1f} min, {len(data.get('targets', []))} target(s)")
    return {"name": part.name, "items": part.items, "status": status, "minutes": minutes,
            "targets": data.get("targets", []), "report": report}


def verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "not measured"}[met]


def summary(parts: list[dict]) -> list[str]:
    """One line per target, ordered by item, with its ratio."""
    rows = sorted(((c.get("item") or 99, part["name"], c) for part in parts for c in part["targets"]),
                  key=lambda row: row[0])
    lines = ["| Item | Target | Result | Ratio | Figures |", "|---|---|---|---|---|"]
    for item, _name, check in rows:
        ratio = f"{check['ratio']:.2f}" if check.get("ratio") is not None else "-"
        lines.append(f"| {item if item != 99 else '-'} | {check['target']} | **{verdict(check['met'])}** | {ratio} "
                     f"| {check['detail']} |")
    for part in parts:
        if part["status"] != 0:
            lines.append(f"| {part['items']} | the {part['name']} part | **FAILED** (exit {part['status']}) | - "
                         f"| see its section below |")
    return lines


def markdown(meta: dict, parts: list[dict]) -> str:
    runs = "quick" if meta["quick"] else f"{meta['reps']} repetitions"
    met = sum(1 for p in parts for c in p["targets"] if c["met"] is True)
    total = sum(1 for p in parts for c in p["targets"])
    head = [f"# corral benchmark suite (issue 17), {meta['started']}", "",
            f"corral {meta['commit']}; {meta['cpus']} CPUs; load average {meta['loadavg_start']} at the start, "
            f"{meta['loadavg_end']} at the end; {runs}; "
            f"took {meta['minutes']:.0f} min. {met} of {total} targets met.", ""]
    body = []
    for part in parts:
        body += ["", f"## {part['name']} (items {part['items']}), exit {part['status']}, {part['minutes']:.1f} min", "",
                 part["report"].replace("\n# ", "\n### ").removeprefix("# ")]
    return "\n".join(head + summary(parts) + body) + "\n"


def write(meta: dict, parts: list[dict], out: Path) -> list[Path]:
    stamp = f"suite-{meta['stamp']}{'-quick' if meta['quick'] else ''}"
    latest = "suite-latest-quick" if meta["quick"] else "suite-latest"
    return write_report(out, (stamp, latest), markdown(meta, parts), {"meta": meta, "parts": parts})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    now = dt.datetime.now()
    meta = {"started": now.astimezone().isoformat(timespec="seconds"), "stamp": now.strftime("%Y%m%d-%H%M%S"),
            "commit": _git_commit(), "cpus": os.cpu_count(), "quick": args.quick, "reps": args.reps,
            "loadavg_start": _loadavg()}
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="corral-suite-"))
    parts: list[dict] = []
    try:
        for part in PARTS:
            if part.name in args.only:
                parts.append(run_part(part, scratch, args))
    except KeyboardInterrupt:
        log("interrupted: reporting what was measured")
    meta["loadavg_end"] = _loadavg()
    meta["minutes"] = (time.monotonic() - started) / 60
    print("\n".join(summary(parts)))
    for path in write(meta, parts, args.out):
        log(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    failed = [p["name"] for p in parts if p["status"] != 0]
    if failed:
        log(f"part(s) failed: {', '.join(failed)}; their output is kept in {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed or len(parts) < len(args.only) else 0


if __name__ == "__main__":
    sys.exit(main())
