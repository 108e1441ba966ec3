"""The inference service's metrics: tokens, time to first token, per-token latency, loads, slots, queue, KV cache.

Generation facts are recorded once per request, from its final event, on the engine's thread: the per-token
path pays only for the check that an event is the final one. Scheduler and engine state (loaded models,
slots, queue, KV cells) is read when /metrics is scraped, so it costs nothing in between.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from corral_common.errors import AppError
from corral_common.internal import CompletionEvent
from corral_common.metrics import AppMetrics

if TYPE_CHECKING:
    from corral_inference.engine import Emit, Occupancy
    from corral_inference.scheduler import Runner, Scheduler

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)




class InferenceMetrics:
    """The families only the inference service knows about."""

    def __init__(self, metrics: AppMetrics, scheduler: Callable[[], Scheduler | None]) -> None:
        self.generated = metrics.counter("corral_inference_generated_tokens", "Tokens generated, by model.",
                                         ("model",))
        self.prompt = metrics.counter("corral_inference_prompt_tokens", "Prompt tokens evaluated (cache hits not "
                                      "included; embedding inputs included), by model.", ("model",))
        self.cache_hits = metrics.counter("corral_inference_prompt_cache_hit_tokens", "Prompt tokens reused from "
                                          "a slot's KV cache instead of evaluated, by model.", ("model",))
        self.completions = metrics.counter("corral_inference_completions", "Completions ended, by model and "
                                           "done_reason (stop, length, cancel).", ("model", "reason"))
        self.ttft = metrics.histogram("corral_inference_time_to_first_token_seconds", "From the request reaching "
                                      "the service (queue and load included) to its first token.", ("model",),
                                      TTFT_BUCKETS)
        self.per_token = metrics.histogram("corral_inference_time_per_output_token_seconds", "Mean time between "
                                           "generated tokens, one observation per request.", ("model",),
                                           TOKEN_BUCKETS)
        self.load_time = metrics.histogram("corral_inference_model_load_seconds", "Time to load a model.",
                                           ("model",), LOAD_BUCKETS)
        metrics.register(SchedulerCollector(scheduler))

    def model_loaded(self, name: str, load_ns: int) -> None:
        """A model finished loading."""
        self.load_time.labels(name).observe(load_ns / 1e9)

    def embedded(self, name: str, tokens: int) -> None:
        """An embedding request evaluated ``tokens`` tokens."""
        self.prompt.labels(name).inc(tokens)

    def completed(self, name: str, started_ns: int, event: CompletionEvent) -> None:
        """Record a completion from its final event (the engine's thread; thread-safe)."""
        reused = max(0, len(event.context or ()) - event.eval_count - event.prompt_eval_count)  # no image prompt
        self.generated.labels(name).inc(event.eval_count)
        self.prompt.labels(name).inc(event.prompt_eval_count)
        self.cache_hits.labels(name).inc(reused)
        self.completions.labels(name, event.done_reason or "stop").inc()
        if event.eval_count:
            first_token_ns = time.perf_counter_ns() - event.eval_duration - started_ns
            self.ttft.labels(name).observe(max(0, first_token_ns) / 1e9)
            self.per_token.labels(name).observe(event.eval_duration / event.eval_count / 1e9)

    def observed(self, name: str, started_ns: int, emit: Emit) -> Emit:
        """``emit`` that also records the request's final event."""

        def observing(event: CompletionEvent | AppError) -> None:
            if not isinstance(event, AppError) and event.done:
                self.completed(name, started_ns, event)
            emit(event)

        return observing


def occupancy(runner: Runner) -> Occupancy:
    """What an engine reports about its slots, or what the runner's lease count implies for other engines."""
    return runner.engine.occupancy(runner.active)


_MODEL_GAUGES = (("corral_inference_model_ram_bytes", "System memory a loaded model holds (weights and KV cache)."),
                 ("corral_inference_model_vram_bytes", "GPU memory a loaded model holds."),
                 ("corral_inference_slots", "Sequences a loaded model can generate at once."),
                 ("corral_inference_slots_busy", "Slots generating or evaluating a prompt now."),
                 ("corral_inference_kv_cache_used_cells", "KV cache cells holding tokens (cached prefixes "
                                                         "included)."),
                 ("corral_inference_kv_cache_capacity_cells", "KV cache cells of a loaded model."))


def _model_values(runner: Runner) -> tuple[int, ...]:
    """One runner's values, in the order of _MODEL_GAUGES."""
    busy = occupancy(runner)
    return (runner.size - runner.size_vram, runner.size_vram, runner.engine.slots, busy.busy, busy.kv_used,
            busy.kv_total)


class SchedulerCollector(Collector):
    """Loaded models, their memory, slots, KV cache and the queue, read from the scheduler at scrape time."""

    def __init__(self, scheduler: Callable[[], Scheduler | None]) -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterable[Metric]:
        scheduler = self.scheduler()
        runners = [r for r in scheduler.runners.values() if r.engine is not None] if scheduler else []
        totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(_MODEL_GAUGES))
        for runner in runners:
            row = totals[(runner.ref.name, "embedding" if runner.spec.embedding else "generate")]
            for index, value in enumerate(_model_values(runner)):
                row[index] += value
        for index, (name, doc) in enumerate(_MODEL_GAUGES):
            family = GaugeMetricFamily(name, doc, labels=("model", "mode"))
            for labels, row in sorted(totals.items()):
                family.add_metric(labels, row[index])
            yield family
        yield _gauge("corral_inference_loaded_models", "Models loaded now.", len(runners))
        waiting = (scheduler.pending if scheduler else 0) + sum(occupancy(r).waiting for r in runners)
        yield _gauge("corral_inference_queue_depth", "Requests waiting for a model load, a runner or a free slot.",
                     waiting)
        yield _gauge("corral_inference_queue_capacity", "Requests that may wait before new ones are refused "
                     "(OLLAMA_MAX_QUEUE).", scheduler.settings.max_queue if scheduler else 0)


def _gauge(name: str, doc: str, value: Any) -> GaugeMetricFamily:
    """An unlabelled gauge with one value."""
    return GaugeMetricFamily(name, doc, value=value)


def install_inference_metrics(app: Any) -> InferenceMetrics | None:
    """The inference families on the app's registry, as ``app.state.inference_metrics`` (None with metrics off)."""
    metrics: AppMetrics | None = app.state.metrics
    app.state.inference_metrics = (InferenceMetrics(metrics, lambda: getattr(app.state, "scheduler", None))
                                   if metrics is not None else None)
    return app.state.inference_metrics
