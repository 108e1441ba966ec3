"""What forwarding a remote model costs: one stream through a local corral against the same model on its host.

Two ``corral serve`` processes on loopback: the hosted one with smollm2:135m (and the raw-prompt copy
``corral-bench``, as bench/throughput.py imports it), and a local one with no weights whose record
``remote-bench`` is a remote model for the hosted ``corral-bench`` (``/api/create`` with ``from`` and
``remote_host``). Each repetition sends one streamed ``/v1/completions`` request (bench/load.py: a unique
~85-token prompt asking for ``--tokens`` tokens at temperature 0) directly to the hosted corral and one
through the local corral, alternating which goes first, so other work on the machine falls on both.

    .venv/bin/python bench/remote_overhead.py              # 6 pairs of 128 tokens
    .venv/bin/python bench/remote_overhead.py --reps 2     # a quick check that it runs

Prints, per path, the median decode tokens/s (after the first token) and time to first token, then the
ratio of tokens/s (local / direct; the issue's target: >= 0.97) and the TTFT difference (target: <= +15 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers  # noqa: E402
from load import Stream, prompt, run_level  # noqa: E402

REMOTE_MODEL = "remote-bench"


def _local(work: Path, hosted: servers.Server) -> servers.Server:
    """A corral with no weights whose cloud is the hosted one (loopback allowed: it is configured)."""
    home = work / "local-home"
    env = {**os.environ, "OLLAMA_MODELS": str(home / "models"), "CORRAL_HOME": str(home),
           "CORRAL_CLOUD_URL": hosted.url, "CORRAL_REMOTE_ALLOW_PRIVATE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("CORRAL_IMPORT_BUNDLED", None)
    env.pop("OLLAMA_API_KEY", None)
    server = servers.Server("local", "local corral", [str(servers.BIN / "corral"), "serve"], "/api/tags",
                            REMOTE_MODEL, work, env, start_timeout=300)
    server.env["OLLAMA_HOST"] = f"127.0.0.1:{server.port}"
    return server


def _one(url: str, model: str, key: str, index: int, tokens: int) -> Stream:
    run = asyncio.run(run_level(url, model, [prompt(key, index)], tokens, 300.0))
    stream = run.requests[0]
    if stream.error:
        raise RuntimeError(f"{url}: {stream.error}")
    return stream


def measure(hosted: servers.Server, local: servers.Server, reps: int, tokens: int) -> dict[str, list[Stream]]:
    """``reps`` alternating pairs of one stream, directly and through the local corral."""
    paths = {"direct": (hosted.url, servers.CORRAL_MODEL), "via local corral": (local.url, REMOTE_MODEL)}
    results: dict[str, list[Stream]] = {name: [] for name in paths}
    for name, (url, model) in paths.items():
        _one(url, model, f"warm-{name}", 0, 8)
    for index in range(reps):
        order = list(paths) if index % 2 == 0 else list(reversed(paths))
        for name in order:
            url, model = paths[name]
            results[name].append(_one(url, model, name[:1], index, tokens))
    return results


def report(results: dict[str, list[Stream]], tokens: int) -> str:
    """A Markdown table, then the ratio and the difference."""
    rows, medians = [], {}
    for name, streams in results.items():
        rate = statistics.median(s.decode_rate for s in streams if s.decode_rate)
        ttft = statistics.median(s.ttft for s in streams if s.ttft is not None) * 1000
        medians[name] = (rate, ttft)
        rows.append(f"| {name} | {len(streams)} | {statistics.mean(s.tokens for s in streams):.0f} | {rate:.1f} "
                    f"| {ttft:.1f} |")
    (direct_rate, direct_ttft), (via_rate, via_ttft) = medians["direct"], medians["via local corral"]
    return "\n".join([
        f"One streamed /v1/completions request of up to {tokens} tokens, smollm2:135m on the hosted corral.", "",
        "| path | requests | tokens/request | decode tok/s (median) | TTFT ms (median) |", "|---|---|---|---|---|",
        *rows, "",
        f"tokens/s ratio (via local / direct): {via_rate / direct_rate:.3f} (target >= 0.97)",
        f"TTFT difference (via local - direct): {via_ttft - direct_ttft:+.1f} ms (target <= +15 ms)"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=6, help="pairs of requests (default 6)")
    parser.add_argument("--tokens", type=int, default=128, help="tokens asked for per request (default 128)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="threads of the model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-remote-bench-") as tmp:
        hosted = servers.corral(Path(tmp) / "hosted", args.threads, 1)
        local = _local(Path(tmp) / "local", hosted)
        for server in (hosted, local):
            server.work.mkdir(parents=True, exist_ok=True)
        try:
            hosted.start()
            local.start()
            created = httpx.post(f"{local.url}/api/create", json={
                "model": REMOTE_MODEL, "from": servers.CORRAL_MODEL, "remote_host": hosted.url, "stream": False},
                timeout=60, trust_env=False)
            created.raise_for_status()
            print(report(measure(hosted, local, args.reps, args.tokens), args.tokens))
        finally:
            local.stop()
            hosted.stop()


if __name__ == "__main__":
    main()
