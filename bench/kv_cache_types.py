"""KV cache types on corral: resident memory, /api/ps size and tokens/s with OLLAMA_KV_CACHE_TYPE=f16 against
q8_0 (and q4_0 with --types), 4 slots x 4096 tokens of context each.

For each type it starts its own `corral serve` (bench/servers.py, as `make bench` does, with
OLLAMA_KV_CACHE_TYPE set), loads smollm2:135m, then sends one request per slot at the same moment: a unique
prompt of about --prompt-tokens tokens asking for --tokens tokens at temperature 0. Reported per type: the
runner's size in /api/ps, RSS summed over the server's process tree after loading and after the run (llama.cpp
clears the whole cache when it loads, so its pages are resident from the start), the median per-stream decode
rate (eval_count / eval_duration) and the aggregate generated tokens/s over the wall time. The table is printed
and written to bench/results/kv_cache_types-latest.md.

Usage: .venv/bin/python bench/kv_cache_types.py [--types f16,q8_0] [--threads N] [--tokens 64]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import servers  # noqa: E402

SLOTS = 4
RESULTS = Path(__file__).parent / "results"
FILLER = ("The keeper climbed the stairs of the lighthouse at dusk, counted the ships on the horizon and wrote "
          "their names in the log. ")


def _prompt(i: int, tokens: int) -> str:
    """A unique ChatML prompt of roughly ``tokens`` tokens (the unique part first: no cached prefix is shared)."""
    body = f"Story {i}: " + FILLER * max(1, tokens // 24)
    return f"<|im_start|>user\n{body}\nSummarize the log.<|im_end|>\n<|im_start|>assistant\n"


def _one(url: str, prompt: str, tokens: int) -> dict:
    body = {"model": servers.CORRAL_MODEL, "prompt": prompt, "stream": False, "raw": True,
            "options": {"temperature": 0, "num_predict": tokens}}
    return httpx.post(f"{url}/api/generate", json=body, timeout=900, trust_env=False).json()


def measure(kind: str, threads: int, tokens: int, prompt_tokens: int, work: Path) -> dict:
    """Start corral with this KV type, load the model, run one request per slot; the numbers."""
    server = servers.corral(work / kind, threads, SLOTS)
    server.env["OLLAMA_KV_CACHE_TYPE"] = kind
    server.work.mkdir(parents=True, exist_ok=True)
    try:
        server.start()
        _one(server.url, _prompt(99, 8), 1)  # load
        ps = httpx.get(f"{server.url}/api/ps", trust_env=False).json()["models"][0]
        loaded_rss = server.memory()["rss_mib"]
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(SLOTS) as pool:
            answers = list(pool.map(lambda i: _one(server.url, _prompt(i, prompt_tokens), tokens), range(SLOTS)))
        wall = time.perf_counter() - started
        errors = [a["error"] for a in answers if "error" in a]
        if errors:
            raise RuntimeError(f"{kind}: {errors[0]}")
        return {"type": kind, "ps_size_mib": ps["size"] / 2**20, "rss_loaded_mib": loaded_rss,
                "rss_after_mib": server.memory()["rss_mib"],
                "prompt_tokens": statistics.median(a["prompt_eval_count"] for a in answers),
                "stream_tok_s": statistics.median(a["eval_count"] / a["eval_duration"] * 1e9 for a in answers),
                "aggregate_tok_s": sum(a["eval_count"] for a in answers) / wall}
    finally:
        server.stop()


def table(rows: list[dict], threads: int, tokens: int) -> str:
    """The results as a Markdown table."""
    lines = [f"smollm2:135m, {SLOTS} slots x {servers.CTX_PER_SLOT} context, {threads} threads, {tokens} tokens per "
             f"stream, {SLOTS} streams at once; load average {os.getloadavg()[0]:.1f}", "",
             "| KV type | /api/ps size MiB | RSS loaded MiB | RSS after MiB | prompt tokens | stream tok/s "
             "| aggregate tok/s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['type']} | {r['ps_size_mib']:.1f} | {r['rss_loaded_mib']:.1f} | {r['rss_after_mib']:.1f} "
                     f"| {r['prompt_tokens']:.0f} | {r['stream_tok_s']:.1f} | {r['aggregate_tok_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", default="f16,q8_0", help="comma separated OLLAMA_KV_CACHE_TYPE values")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per stream")
    parser.add_argument("--prompt-tokens", type=int, default=1000, help="about this many prompt tokens per stream")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="corral-kv-bench-"))
    rows = [measure(kind, args.threads, args.tokens, args.prompt_tokens, work) for kind in args.types.split(",")]
    text = table(rows, args.threads, args.tokens)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kv_cache_types-latest.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
