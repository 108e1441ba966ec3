"""What metrics cost per generated token, measured piece by piece instead of end to end.

bench/metrics_overhead.py compares two whole servers; on a shared 2-core machine its tokens/s ratio moves
by +-20 % between repetitions, so a 1 % cost can neither be shown nor ruled out that way. This benchmark
times the code that ``CORRAL_METRICS=1`` adds, in this process, over many iterations, and sets it against
the time of one generated token of the real model, decoded here by llama.cpp:

- the HTTP middleware of each service a stream passes (gateway and inference): one wrapper call per body
  chunk, and per request the in-flight gauge, route matching, the request counter and latency histogram;
- the inference service's completion observer: one ``done`` check per event, and per request the token
  counters and the TTFT and per-token histograms;
- scrapes: the merged exposition of the gateway (every service rendered and merged) at Prometheus's default
  15 s interval, counted as CPU taken from generation.

Every cost is charged to the critical path (as if generation waited for it), so the share printed is an
upper bound of the tokens/s lost. ``share`` = metrics ns per token / model ns per token (at N streams the
model's time per token is the aggregate one, i.e. smaller, so the share grows with N).

    .venv/bin/python bench/metrics_cost.py                    # 1 and 4 streams, 128 tokens per request
    .venv/bin/python bench/metrics_cost.py --iterations 200   # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corral_common.internal import CompletionEvent
from corral_common.metrics import AppMetrics, MetricsMiddleware, merge_expositions

SCRAPE_INTERVAL_S = 15.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128, help="tokens (streamed chunks) per request")
    parser.add_argument("--iterations", type=int, default=1000, help="requests timed per measurement")
    parser.add_argument("--rounds", type=int, default=7, help="measurements; the median is reported")
    parser.add_argument("--levels", default="1,4", help="concurrent streams (default 1,4)")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads for the model's token time")
    parser.add_argument("--token-ms", type=float, default=0.0,
                        help="ms per token to divide by instead of decoding here (e.g. a quiet machine's figure)")
    return parser.parse_args(argv)


# --- the HTTP middleware ------------------------------------------------------------------------------
def _streaming_app(chunks: int) -> Callable:
    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(chunks):
            await send({"type": "http.response.body", "body": b'{"response":"x"}\n', "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


def _scope(app: object, path: str) -> dict:
    return {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "headers": [], "app": app}


async def _drive(asgi: Callable, scope: dict, iterations: int) -> float:
    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        return None

    start = time.perf_counter_ns()
    for _ in range(iterations):
        await asgi(dict(scope), receive, send)
    return (time.perf_counter_ns() - start) / iterations


def middleware_ns(routes_app: object, path: str, chunks: int, iterations: int, rounds: int) -> float:
    """Extra ns per request that MetricsMiddleware adds to a request streaming ``chunks`` chunks."""
    inner = _streaming_app(chunks)
    wrapped = MetricsMiddleware(inner, AppMetrics("bench"))
    scope = _scope(routes_app, path)
    diffs = []
    for _ in range(rounds):
        bare = asyncio.run(_drive(inner, scope, iterations))
        timed = asyncio.run(_drive(wrapped, scope, iterations))
        diffs.append(timed - bare)
    return max(0.0, statistics.median(diffs))


# --- the completion observer ------------------------------------------------------------------------
def observer_ns(chunks: int, iterations: int, rounds: int) -> float:
    """Extra ns per request of InferenceMetrics.observed over ``chunks`` pieces and one final event."""
    from corral_inference.metrics import InferenceMetrics

    metrics = InferenceMetrics(AppMetrics("inference"), lambda: None)
    pieces = [CompletionEvent(content="x") for _ in range(chunks)]
    final = CompletionEvent(done=True, done_reason="stop", context=list(range(chunks + 80)), eval_count=chunks,
                            prompt_eval_count=80, eval_duration=chunks * 12_000_000)

    def sink(event: object) -> None:
        return None

    def run(make_emit: Callable[[], Callable]) -> float:
        start = time.perf_counter_ns()
        for _ in range(iterations):
            emit = make_emit()
            for event in pieces:
                emit(event)
            emit(final)
        return (time.perf_counter_ns() - start) / iterations

    diffs = []
    for _ in range(rounds):
        bare = run(lambda: sink)
        timed = run(lambda: metrics.observed("smollm2:135m", time.perf_counter_ns(), sink))
        diffs.append(timed - bare)
    return max(0.0, statistics.median(diffs))


# --- scrapes ---------------------------------------------------------------------------------------
def scrape_ns(gateway: object, inference: object, rounds: int) -> float:
    """CPU ns of one merged scrape: each service's registry rendered, then merged by the gateway."""
    apps = {"api": gateway, "inference": inference, "registry": AppMetrics("registry"),
            "auth": AppMetrics("auth"), "websearch": AppMetrics("websearch")}
    times = []
    for _ in range(rounds):
        start = time.process_time_ns()
        texts = {name: metrics.render() for name, metrics in apps.items()}
        merge_expositions(texts)
        times.append(time.process_time_ns() - start)
    return statistics.median(times)


# --- the model ---------------------------------------------------------------------------------------
def model_ns_per_token(threads: int, tokens: int) -> float:
    """ns per generated token of smollm2:135m decoded by llama.cpp in this process (greedy, one stream)."""
    import llama_cpp

    from corral_cli.bundled import BUNDLED

    llm = llama_cpp.Llama(model_path=str(BUNDLED[0].locate()), n_ctx=1024, n_threads=threads, verbose=False)
    prompt = "Write a long story about a lighthouse keeper and the sea."
    list(llm.create_completion(prompt, max_tokens=8, temperature=0, stream=True))  # warm up
    llm.reset()
    start, count = time.perf_counter_ns(), 0
    for chunk in llm.create_completion(prompt, max_tokens=tokens, temperature=0, stream=True):
        count += bool(chunk["choices"] and chunk["choices"][0].get("text"))
    return (time.perf_counter_ns() - start) / max(1, count)


def report(args: argparse.Namespace) -> str:
    from corral_api.main import create_app as gateway_app
    from corral_inference.main import create_app as inference_app

    gateway, inference = gateway_app(), inference_app()
    per_request = {
        "gateway middleware": middleware_ns(gateway, "/api/generate", args.tokens, args.iterations, args.rounds),
        "inference middleware": middleware_ns(inference, "/completion", args.tokens, args.iterations, args.rounds),
        "completion observer": observer_ns(args.tokens, args.iterations, args.rounds),
    }
    scrape = scrape_ns(gateway.state.metrics, inference.state.metrics, args.rounds)
    token_ns = args.token_ms * 1e6 or model_ns_per_token(args.threads, args.tokens)
    source = "given by --token-ms" if args.token_ms else f"decoded here, {args.threads} threads, one stream"
    lines = [f"# metrics cost per token ({args.tokens} tokens per request, median of {args.rounds} x "
             f"{args.iterations} requests)", "",
             f"smollm2:135m: {token_ns / 1e6:.2f} ms per token ({1e9 / token_ns:.1f} tok/s, {source}).", "",
             "| part | ns per request | ns per token |", "|---|---|---|"]
    for name, ns in per_request.items():
        lines.append(f"| {name} | {ns:,.0f} | {ns / args.tokens:,.0f} |")
    code_per_token = sum(per_request.values()) / args.tokens
    lines.append(f"| one merged scrape (every {SCRAPE_INTERVAL_S:.0f} s) | {scrape:,.0f} per scrape | |")
    lines += ["", "| streams | model ns per token (aggregate) | metrics ns per token | share of token time | "
              "target <= 1 % |", "|---|---|---|---|---|"]
    for level in [int(x) for x in args.levels.split(",")]:
        aggregate_ns = token_ns / level  # as if N streams decoded N times faster: the worst case for the share
        scrape_per_token = scrape * aggregate_ns / (SCRAPE_INTERVAL_S * 1e9)
        cost = code_per_token + scrape_per_token
        share = cost / aggregate_ns
        lines.append(f"| {level} | {aggregate_ns:,.0f} | {cost:,.0f} | {share:.3%} | "
                     f"{'met' if share <= 0.01 else 'MISSED'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    print(report(parse_args(argv)))


if __name__ == "__main__":
    main()
