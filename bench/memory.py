"""Memory and cold start (issue 17 items 1 and 8): ``corral serve`` against llama-server and plain llama-cpp-python.

    .venv/bin/python bench/memory.py                      # memory table, then 3 cold starts of each
    .venv/bin/python bench/memory.py --cold-reps 1        # a quick look
    .venv/bin/python bench/memory.py --servers corral --cold-reps 0 --by-process
    .venv/bin/python bench/memory.py --cold-only --cold-reps 5   # item 8 alone: no memory table

Memory: the proportional set size (PSS, from /proc/PID/smaps_rollup: a page shared by several processes
is split between them, so the sum over a process tree counts it once) and the resident set size (RSS,
which counts a shared page once per process) of each server's whole process tree:

- corral idle, first start: a fresh ``corral serve`` with an empty store (its databases are created, so
  the migrations run), a few seconds after it answers;
- corral loaded: smollm2:135m imported (``corral create``, a job) and loaded at OLLAMA_NUM_PARALLEL=4 x
  OLLAMA_CONTEXT_LENGTH=4096, after one generation (the throughput benchmark's setting): once the job worker
  has ended (CORRAL_WORKER_IDLE_EXIT, 30 s after the import; the steady state), and right after the generation
  while it still runs;
- corral idle, restarted: ``corral serve`` started again on that store, nothing loaded; then loaded there (no
  job has run in that serve: the usual state of a server whose models were pulled on an earlier day);
- corral loaded with CORRAL_KV_LAZY=0 (restarted on that store): the whole KV cache in RAM from the load on, as
  llama-server and llama-cpp-python hold theirs; by default corral hands the cache's zeroed pages back until they
  are written (corral_inference.zeropages), which this row leaves out, so it shows what corral's own processes add;
- llama-server loaded: ``-c 16384 --parallel 4 --cache-ram 0``, after one generation;
- plain llama-cpp-python: one process holding ``Llama(n_ctx=16384)`` (the same weights and KV size), after
  one generation.

Cold start: a fresh ``corral serve`` on a store that already holds the model, from its start to the first
byte a fresh ``corral run smollm2:135m hi`` prints (started as soon as the gateway answers), against
``llama-server`` from its start to the first streamed token of a ``/v1/chat/completions`` "hi" (sent as soon
as ``/health`` is 200). The model file is in the page cache for both (it was loaded just before). Also timed:
the fresh interpreters corral's cold start waits for in turn (the gateway's ``import fastapi, uvicorn``, then
``corral run``'s ``import httpx``); added to llama-server's whole cold start, they give the least a cold start of
a Python corral can take on the machine, reported next to item 8.

Results: a Markdown table on stdout, and ``bench/results/memory-<timestamp>.{md,json}`` plus
``memory-latest.*``. Every server is stopped at the end, also on errors and Ctrl+C.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import load
import procs
import servers as srv
from report import target_line, write_report
from llama_server_build import ensure_llama_server
from throughput import _git_commit, _loadavg, log, threads_default

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
SLOTS = 4
PACKAGES = ("libs/common", "cli", "services/api", "services/inference", "services/registry", "services/auth",
            "services/websearch")
SETTLE_SECONDS = 5.0  # after a server answers: the services finish starting (imports, first log lines)
PLAIN = """
import json, sys
import llama_cpp
job = json.loads(sys.argv[1])
llm = llama_cpp.Llama(model_path=job["model"], n_ctx=job["n_ctx"], n_threads=job["threads"],
                      n_threads_batch=job["threads"], verbose=False)
for _ in llm.create_completion(job["prompt"], max_tokens=16, temperature=0, stream=True):
    pass
print("ready", flush=True)
sys.stdin.read()
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="corral,llama-server,llama-cpp-python",
                        help="which to measure, comma separated (default all)")
    parser.add_argument("--cold-reps", type=int, default=3, help="cold starts of each server (default 3; 0: none)")
    parser.add_argument("--threads", type=int, default=threads_default(), help="threads for every server")
    parser.add_argument("--cold-only", action="store_true",
                        help="only the cold starts (item 8): the store is prepared, no memory is measured")
    parser.add_argument("--by-process", action="store_true", help="print each process's RSS and PSS too")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    parser.add_argument("--no-write", action="store_true", help="print only; write nothing under --out")
    args = parser.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    return args


# --------------------------------------------------------------------------------------------- memory


def _warm(server: srv.Server) -> None:
    run = asyncio.run(load.run_level(server.url, server.model, [load.prompt("memory", 0)], 16, 300))
    if run.requests[0].error:
        raise RuntimeError(f"{server.name}: request failed: {run.requests[0].error}\n{server.log_tail()}")


def _measured(server: srv.Server, label: str) -> dict:
    memory = server.memory()
    log(f"{label}: PSS {memory['pss_mib']:.0f} MiB, RSS {memory['rss_mib']:.0f} MiB in {memory['processes']} processes")
    return memory


def _job_worker_ended(server: srv.Server, timeout: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in server.memory().get("by_process", []) if "corral_registry.worker" in p["what"]]:
            return True
        time.sleep(1)
    return False


def corral_memory(work: Path, threads: int) -> tuple[dict, dict]:
    """corral idle (first start, and restarted on its store) and loaded; returns (memory by state, the env of its
    store for cold starts)."""
    server = srv.corral(work, threads, SLOTS)
    prepare = server.prepare
    server.prepare = lambda: None  # idle first: nothing imported, nothing loaded
    found = {}
    try:
        server.start()
        time.sleep(SETTLE_SECONDS)
        found["corral_idle"] = _measured(server, "corral idle, first start")
        prepare()
        _warm(server)
        time.sleep(1)
        found["corral_loaded_job_worker"] = _measured(server, "corral loaded, job worker still running")
        if not _job_worker_ended(server):
            raise RuntimeError("the job worker did not end within 90 s of the last job")
        time.sleep(1)  # serve reaps it
        found["corral_loaded"] = _measured(server, "corral loaded, steady")
    finally:
        server.stop()
    server.port = srv.free_port()
    server.env["OLLAMA_HOST"] = f"127.0.0.1:{server.port}"
    try:
        server.start()
        time.sleep(SETTLE_SECONDS)
        found["corral_idle_restarted"] = _measured(server, "corral idle, restarted on its store")
        _warm(server)
        time.sleep(1)
        found["corral_loaded_restarted"] = _measured(server, "corral loaded, restarted on its store")
    finally:
        server.stop()
    found["corral_loaded_whole_kv"] = _loaded_whole_kv(server)
    return found, server.env


def _loaded_whole_kv(server: srv.Server) -> dict:
    """corral loaded with CORRAL_KV_LAZY=0: the whole KV cache in RAM from the load on, as llama-server holds it
    (what the default reaches once every cell has been written)."""
    env = dict(server.env)
    server.port = srv.free_port()
    server.env.update({"OLLAMA_HOST": f"127.0.0.1:{server.port}", "CORRAL_KV_LAZY": "0"})
    try:
        server.start()
        _warm(server)
        time.sleep(1)
        return _measured(server, "corral loaded, CORRAL_KV_LAZY=0")
    finally:
        server.stop()
        server.env = env


def corral_store(work: Path, threads: int) -> dict[str, str]:
    """A store holding the model (imported in one serve, which then stops): the env cold starts run on."""
    server = srv.corral(work, threads, SLOTS)
    try:
        server.start()
        _warm(server)  # the model file is in the page cache, as after corral_memory
    finally:
        server.stop()
    return server.env


def llama_server_memory(work: Path, binary: Path, model: Path, threads: int) -> dict:
    server = srv.llama_server(work, binary, model, threads, SLOTS)
    try:
        server.start()
        _warm(server)
        time.sleep(1)
        memory = server.memory()
    finally:
        server.stop()
    log(f"llama-server loaded: PSS {memory['pss_mib']:.0f} MiB, RSS {memory['rss_mib']:.0f} MiB")
    return memory


def plain_memory(model: Path, threads: int) -> dict:
    """One python process with llama_cpp.Llama(n_ctx=16384) after one generation."""
    job = {"model": str(model), "n_ctx": SLOTS * srv.CTX_PER_SLOT, "threads": threads, "prompt": load.prompt("p", 0)}
    process = subprocess.Popen([sys.executable, "-c", PLAIN, json.dumps(job)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("plain llama-cpp-python did not load the model")
        memory = procs.memory(process.pid)
    finally:
        procs.stop_tree(process.pid, grace=5)
    log(f"plain llama-cpp-python: PSS {memory['pss_mib']:.0f} MiB, RSS {memory['rss_mib']:.0f} MiB")
    return memory


# --------------------------------------------------------------------------------------------- cold start


def _spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def _wait_ok(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def _first_byte(process: subprocess.Popen, timeout: float = 120.0) -> None:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready or not os.read(process.stdout.fileno(), 1):
        raise RuntimeError(f"corral run printed nothing (exit {process.poll()})")


def compile_sources() -> None:
    """Byte-compile corral's own modules, as pip does when it installs a wheel: an editable checkout run with
    PYTHONDONTWRITEBYTECODE=1 (as this machine's shells are) would compile its ~1 MB of sources on every start,
    0.2-0.35 CPU-seconds that an installed corral never spends. Stale files are harmless: Python checks each one's
    source mtime and compiles in memory when they differ."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *(str(REPO / p) for p in PACKAGES)],
                   check=True, stdout=subprocess.DEVNULL)


def corral_cold(env: dict[str, str], work: Path) -> dict:
    """Seconds from spawning corral serve to the first byte of `corral run smollm2:135m hi`."""
    port = srv.free_port()
    env = {**env, "OLLAMA_HOST": f"127.0.0.1:{port}"}
    start = time.perf_counter()
    serve = _spawn([str(srv.BIN / "corral"), "serve"], env, work / "cold-corral.log")
    try:
        _wait_ok(f"http://127.0.0.1:{port}/", serve)
        up = time.perf_counter()
        run = subprocess.Popen([str(srv.BIN / "corral"), "run", "smollm2:135m", "hi"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            _first_byte(run)
            first = time.perf_counter()
        finally:
            run.kill()
            run.wait()
    finally:
        procs.stop_tree(serve.pid, grace=45)
    return {"total_s": first - start, "up_s": up - start, "run_s": first - up}


def llama_server_cold(binary: Path, model: Path, threads: int, work: Path) -> dict:
    """Seconds from spawning llama-server to the first streamed token of a chat completion "hi"."""
    server = srv.llama_server(work, binary, model, threads, SLOTS)
    start = time.perf_counter()
    process = _spawn(server.argv, server.env, work / "cold-llama-server.log")
    try:
        _wait_ok(f"{server.url}/health", process)
        up = time.perf_counter()
        body = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 8}
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120,
                          trust_env=False) as response:
            for line in response.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break
        first = time.perf_counter()
    finally:
        procs.stop_tree(process.pid, grace=10)
    return {"total_s": first - start, "up_s": up - start, "run_s": first - up}


# --------------------------------------------------------------------------------------------- report


def _row(label: str, memory: dict | None) -> str:
    if not memory:
        return f"| {label} | - | - | - |"
    return f"| {label} | {memory['pss_mib']:.0f} | {memory['rss_mib']:.0f} | {memory['processes']} |"


# What a cold start runs in fresh interpreters one after another before any llama.cpp work (which llama-server's own
# figure already includes): the gateway imports its web stack before it can answer, and ``corral run`` starts only
# then and imports its HTTP client before its first request. (Inference could import llama_cpp meanwhile.)
PYTHON_STARTS = {"gateway: import fastapi, uvicorn": "import fastapi, uvicorn",
                 "corral run: import httpx": "import httpx"}


def python_starts(reps: int = 3) -> dict[str, float]:
    """Median seconds of each fresh interpreter in PYTHON_STARTS (after one warm-up run of each)."""
    found = {}
    for label, code in PYTHON_STARTS.items():
        times = []
        for _ in range(reps + 1):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-P", "-c", code], check=True)
            times.append(time.perf_counter() - start)
        found[label] = statistics.median(times[1:])
    return found


def cold_floor(result: dict) -> float | None:
    """The least a cold start of corral can take: its serial Python starts plus llama-server's whole cold start."""
    theirs, starts = _median(result["cold"].get("llama-server", []), "total_s"), result.get("python_starts")
    return theirs + sum(starts.values()) if theirs is not None and starts else None


def _check(item: int, what: str, ours: float | None, theirs: float | None, limit: float, unit: str = "MiB") -> dict:
    """One target: met when ours / theirs <= limit (None when a figure was not measured)."""
    if ours is None or theirs is None:
        return {"item": item, "target": what, "met": None, "ratio": None, "detail": "not measured"}
    ratio = ours / theirs
    return {"item": item, "target": what, "met": ratio <= limit, "ratio": ratio,
            "detail": f"{ours:.2f} vs {theirs:.2f} {unit}, {ratio:.2f} x"}


def targets(result: dict) -> list[dict]:
    """Issue 17 items 1 (memory, PSS) and 8 (cold start), from what this run measured."""
    pss = {k: (v or {}).get("pss_mib") for k, v in result["memory"].items()}
    theirs, floor = _median(result["cold"].get("llama-server", []), "total_s"), cold_floor(result)
    cold_check = _check(8, "cold start to first token: corral <= 1.2 x llama-server",
                        _median(result["cold"].get("corral", []), "total_s"), theirs, 1.2, "s")
    if floor is not None and cold_check["ratio"] is not None:  # the floor the Python starts set on this machine
        cold_check["detail"] += (f"; the serial Python starts alone put corral's floor at {floor:.2f} s "
                                 f"({floor / theirs:.2f} x)")
    return [_check(1, "PSS loaded: corral <= 1.3 x llama-server", pss.get("corral_loaded"), pss.get("llama_server"), 1.3),
            _check(1, "PSS loaded while the job worker still runs: corral <= 1.3 x llama-server",
                   pss.get("corral_loaded_job_worker"), pss.get("llama_server"), 1.3),
            _check(1, "PSS loaded in a serve restarted on its store: corral <= 1.3 x llama-server",
                   pss.get("corral_loaded_restarted"), pss.get("llama_server"), 1.3),
            _check(1, "PSS loaded, whole KV cache in RAM (CORRAL_KV_LAZY=0): corral <= 1.3 x llama-server",
                   pss.get("corral_loaded_whole_kv"), pss.get("llama_server"), 1.3),
            _check(1, "PSS idle, first start: corral <= 150 MiB", pss.get("corral_idle"), 150.0, 1.0),
            _check(1, "PSS idle, restarted: corral <= 150 MiB", pss.get("corral_idle_restarted"), 150.0, 1.0),
            cold_check]


def _median(runs: list[dict], key: str) -> float | None:
    return statistics.median(r[key] for r in runs) if runs else None


def markdown(result: dict) -> str:
    m, meta = result["memory"], result["meta"]
    lines = [f"# corral memory and cold start, {meta['started']}", "",
             f"smollm2:135m, {SLOTS} slots x {srv.CTX_PER_SLOT} context (llama-server -c {SLOTS * srv.CTX_PER_SLOT} "
             f"--parallel {SLOTS} --cache-ram 0), {meta['threads']} threads; corral {meta['corral_commit']}; "
             f"load average {meta['loadavg_start']} at the start, {meta['loadavg_end']} at the end.", "",
             "| What | PSS MiB | RSS MiB | Processes |", "|---|---|---|---|",
             _row("corral serve, idle, first start (empty store)", m.get("corral_idle")),
             _row("corral serve, idle, restarted (model stored, none loaded)", m.get("corral_idle_restarted")),
             _row("corral serve, smollm2 loaded (steady: job worker ended)", m.get("corral_loaded")),
             _row("corral serve, smollm2 loaded, right after `corral create` (job worker up)",
                  m.get("corral_loaded_job_worker")),
             _row("corral serve restarted on its store, smollm2 loaded", m.get("corral_loaded_restarted")),
             _row("corral serve, smollm2 loaded, CORRAL_KV_LAZY=0 (whole KV cache in RAM)",
                  m.get("corral_loaded_whole_kv")),
             _row("llama-server, smollm2 loaded", m.get("llama_server")),
             _row("plain llama-cpp-python, smollm2 loaded", m.get("plain")), ""]
    cold = result["cold"]
    if cold:
        lines += ["| Cold start, s (median, min-max) | start to first token | start to answering | answering to first token |",
                  "|---|---|---|---|"]
        for name, runs in cold.items():
            if runs:
                cells = [f"{_median(runs, k):.2f} ({min(r[k] for r in runs):.2f}-{max(r[k] for r in runs):.2f})"
                         for k in ("total_s", "up_s", "run_s")]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if result.get("python_starts"):
        floor = cold_floor(result)
        lines += ["Fresh interpreters a cold start of corral waits for in turn (median s): "
                  + "; ".join(f"{k} {v:.2f}" for k, v in result["python_starts"].items())
                  + (f". With llama-server's whole cold start added, no cold start of corral can take less than "
                     f"{floor:.2f} s on this machine." if floor is not None else ""), ""]
    lines += ["Targets (issue 17):", ""] + [target_line(c) for c in result["targets"]]
    if result.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in result["notes"]]
    if result.get("by_process"):
        lines += ["", "By process (PSS / RSS MiB):", ""]
        for label, memory in result["by_process"].items():
            lines.append(f"- {label}: " + ", ".join(f"{p['what']} {p['pss_mib']:.0f}/{p['rss_mib']:.0f}"
                                                    for p in memory["by_process"]))
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> None:
    for path in write_report(out, (f"memory-{result['meta']['stamp']}", "memory-latest"), markdown(result), result):
        log(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from corral_cli.bundled import BUNDLED

    model = BUNDLED[0].locate()
    now = dt.datetime.now()
    meta = {"started": now.astimezone().isoformat(timespec="seconds"), "stamp": now.strftime("%Y%m%d-%H%M%S"),
            "threads": args.threads, "loadavg_start": _loadavg(), "corral_commit": _git_commit()}
    result: dict = {"meta": meta, "memory": {}, "cold": {}, "notes": [], "by_process": {}}
    work = Path(tempfile.mkdtemp(prefix="corral-memory-"))
    failed = False
    try:
        binary = ensure_llama_server()[0] if "llama-server" in args.servers else None
        env = None
        if "corral" in args.servers and args.cold_only:
            env = corral_store(work, args.threads)
        elif "corral" in args.servers:
            found, env = corral_memory(work, args.threads)
            result["memory"].update(found)
        if binary is not None and not args.cold_only:
            result["memory"]["llama_server"] = llama_server_memory(work, binary, model, args.threads)
        if "llama-cpp-python" in args.servers and not args.cold_only:
            result["memory"]["plain"] = plain_memory(model, args.threads)
        if args.cold_reps and env is not None:
            compile_sources()
            result["python_starts"] = python_starts()
        for rep in range(args.cold_reps):  # alternating, so that the machine's load falls on both
            if env is not None:
                result["cold"].setdefault("corral", []).append(corral_cold(env, work))
                log(f"cold start {rep + 1} corral: {result['cold']['corral'][-1]}")
            if binary is not None:
                result["cold"].setdefault("llama-server", []).append(llama_server_cold(binary, model, args.threads,
                                                                                       work))
                log(f"cold start {rep + 1} llama-server: {result['cold']['llama-server'][-1]}")
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - report what was measured, then fail
        failed = True
        result["notes"].append(f"failed: {type(exc).__name__}: {str(exc)[:500]} (logs kept in {work})")
        log(f"FAILED: {type(exc).__name__}: {exc}")
    meta["loadavg_end"] = _loadavg()
    result["targets"] = targets(result)
    if args.by_process:
        result["by_process"] = {k: v for k, v in result["memory"].items() if k.startswith("corral")}
    print(markdown(result))
    if not args.no_write:
        write(result, args.out)
    if not failed:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
