"""Decode speed of smollm2:135m: `corral run` (through every service) vs llama-cpp-python in-process.

Prints one table. Usage: .venv/bin/python bench/generate_speed.py [--tokens 128] [--runs 3]
It starts its own `corral serve` on a free port with a temporary model store.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from corral_cli.supervisor import free_port

BIN = Path(sys.executable).parent
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def direct(tokens: int, runs: int) -> tuple[list[float], list[float]]:
    """llama-cpp-python alone: decode tokens/s and time to first token (s)."""
    import llama_cpp

    from corral_cli.bundled import BUNDLED

    path = str(BUNDLED[0].locate())
    llm = llama_cpp.Llama(model_path=path, n_ctx=4096, n_threads=os.cpu_count(), verbose=False)
    prompt = f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n"
    rates, ttfts = [], []
    for run in range(runs):
        llm.reset()
        start, first, count = time.perf_counter(), 0.0, 0
        for _ in llm.create_completion(prompt, max_tokens=tokens, temperature=0, seed=run, stream=True):
            count += 1
            first = first or time.perf_counter()
        end = time.perf_counter()
        ttfts.append(first - start)
        rates.append((count - 1) / (end - first))
    return rates, ttfts


def via_corral(tokens: int, runs: int) -> tuple[list[float], list[float]]:
    """`corral run --verbose` against a fresh server: its eval rate, and TTFT from the API."""
    tmp = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    port = free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(tmp / "models"),
           "CORRAL_HOME": str(tmp / "home")}
    server = subprocess.Popen([str(BIN / "corral"), "serve"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url)
        from corral_cli.bundled import import_bundled

        import_bundled(url, only=("smollm2:135m",))
        rates, ttfts = [], []
        httpx.post(f"{url}/api/create", json={"model": "bench", "from": "smollm2:135m", "stream": False,
                                              "parameters": {"num_predict": tokens, "temperature": 0}},
                   timeout=120).raise_for_status()
        httpx.post(f"{url}/api/generate", json={"model": "bench"}, timeout=120)  # load
        for run in range(runs):
            cmd = [str(BIN / "corral"), "run", "bench", PROMPT, "--verbose"]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            rates.append(float(re.search(r"^eval rate:\s+([\d.]+)", out.stderr, re.M).group(1)))
            ttfts.append(_ttft(url, tokens, run))
        return rates, ttfts
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def _ttft(url: str, tokens: int, seed: int) -> float:
    body = {"model": "bench", "prompt": PROMPT, "options": {"temperature": 0, "seed": seed,
                                                                   "num_predict": tokens}}
    start = time.perf_counter()
    with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=600) as response:
        for _ in response.iter_lines():
            return time.perf_counter() - start
    return float("nan")


def _wait(url: str) -> None:
    for _ in range(400):
        try:
            if httpx.get(f"{url}/api/tags", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.25)
    raise RuntimeError("corral serve did not start")


def _row(name: str, rates: list[float], ttfts: list[float]) -> str:
    return (f"| {name} | {statistics.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f}) | "
            f"{statistics.median(ttfts) * 1000:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    d_rates, d_ttft = direct(args.tokens, args.runs)
    c_rates, c_ttft = via_corral(args.tokens, args.runs)
    print(f"smollm2:135m, {args.tokens} tokens, {args.runs} runs, {os.cpu_count()} threads")
    print("| path | decode tok/s median (min-max) | TTFT ms median |")
    print("|---|---|---|")
    print(_row("llama-cpp-python in-process", d_rates, d_ttft))
    print(_row("corral run (gateway → inference)", c_rates, c_ttft))
    print(f"corral / direct: {statistics.median(c_rates) / statistics.median(d_rates):.2f}")


if __name__ == "__main__":
    main()
