"""Scheduler behaviour on a fake engine: load once, keep_alive, LRU eviction, queue limit, one thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from corral_common.errors import ServiceUnavailable
from corral_inference.engine import LoadSpec
from corral_inference.scheduler import ModelRef, Scheduler
from corral_inference.settings import InferenceSettings
from corral_inference.testing import FakeEngine


def _scheduler(**overrides) -> Scheduler:
    settings = InferenceSettings(models_dir=Path("/nonexistent"), **overrides)
    return Scheduler(settings, lambda spec: FakeEngine(spec))


def _ref(n: int) -> tuple[ModelRef, LoadSpec]:
    return ModelRef(f"m{n}", f"{n:064x}"), LoadSpec(model_path=f"/m{n}")


async def _use(s: Scheduler, n: int, keep_alive: int | None = None) -> FakeEngine:
    ref, spec = _ref(n)
    async with s.lease(ref, spec, keep_alive) as runner:
        await runner.call(runner.engine.embed, ["x"], True)
        return runner.engine


def test_model_is_loaded_once_and_reused() -> None:
    async def scenario() -> None:
        s = _scheduler()
        first = await _use(s, 1)
        second = await _use(s, 1)
        assert first is second
        assert [row["name"] for row in s.ps()] == ["m1"]
        await s.close()

    asyncio.run(scenario())


def test_keep_alive_zero_unloads_after_the_request() -> None:
    async def scenario() -> None:
        s = _scheduler()
        engine = await _use(s, 1, keep_alive=0)
        assert engine.closed and s.ps() == []

    asyncio.run(scenario())


def test_a_model_with_an_adapter_is_a_runner_of_its_own_and_unloads_alone() -> None:
    async def scenario() -> None:
        s = _scheduler()
        blob, lora = "1" * 64, "a" * 64
        leases = [(ModelRef("base", blob), LoadSpec(model_path="/m")),
                  (ModelRef("tuned", blob, adapters=(lora,)), LoadSpec(model_path="/m", adapters=(f"/{lora}",)))]
        engines = []
        for ref, spec in leases:
            async with s.lease(ref, spec, None) as runner:
                engines.append(runner.engine)
        assert engines[0] is not engines[1] and sorted(row["name"] for row in s.ps()) == ["base", "tuned"]
        await s.unload_model(blob, [lora])
        assert engines[1].closed and not engines[0].closed and [row["name"] for row in s.ps()] == ["base"]
        await s.unload_model(blob)
        assert engines[0].closed and s.ps() == []

    asyncio.run(scenario())


def test_short_keep_alive_expires() -> None:
    async def scenario() -> None:
        s = _scheduler()
        engine = await _use(s, 1, keep_alive=50_000_000)
        assert s.ps()
        await asyncio.sleep(0.3)
        assert engine.closed and s.ps() == []

    asyncio.run(scenario())


def test_least_recently_used_idle_model_is_evicted_at_the_limit() -> None:
    async def scenario() -> None:
        s = _scheduler(max_loaded_models=2)
        one = await _use(s, 1, keep_alive=10**9)
        await _use(s, 2, keep_alive=10**12)
        await _use(s, 3, keep_alive=10**12)
        assert one.closed
        assert sorted(row["name"] for row in s.ps()) == ["m2", "m3"]
        await s.close()

    asyncio.run(scenario())


def test_changed_runner_options_reload_the_model() -> None:
    async def scenario() -> None:
        s = _scheduler()
        ref, spec = _ref(1)
        async with s.lease(ref, spec, None) as runner:
            first = runner.engine
        async with s.lease(ref, LoadSpec(model_path="/m1", num_ctx=8192), None) as runner:
            assert runner.engine is not first and first.closed
            assert runner.spec.num_ctx == 8192
        await s.close()

    asyncio.run(scenario())


def test_every_call_runs_on_the_runners_single_thread() -> None:
    async def scenario() -> None:
        s = _scheduler()
        engines = await asyncio.gather(*[_use(s, 1) for _ in range(5)])
        assert len(engines[0].thread_ids) == 1
        await s.close()

    asyncio.run(scenario())


def test_queue_limit_answers_busy() -> None:
    async def scenario() -> None:
        s = _scheduler(max_queue=1)
        ref, spec = _ref(1)
        async with s.lease(ref, spec, None):
            waiting = asyncio.create_task(_use(s, 1))
            await asyncio.sleep(0.05)
            with pytest.raises(ServiceUnavailable, match="maximum pending requests exceeded"):
                async with s.lease(ref, spec, None):
                    pass
        await waiting
        await s.close()

    asyncio.run(scenario())


def test_memory_a_loaded_model_will_take_as_its_cache_fills_counts_as_taken() -> None:
    """MemAvailable does not see a KV cache whose pages were handed back (corral_inference.zeropages): a second
    model that fits only in those pages makes the scheduler evict the first, not load both."""
    async def scenario() -> None:
        s = Scheduler(InferenceSettings(models_dir=Path("/x")), lambda spec: FakeEngine(spec),
                      memory_available=lambda: 1000)
        ref1, _ = _ref(1)
        async with s.lease(ref1, LoadSpec(model_path="/m1", estimate_bytes=300), None) as runner:
            first = runner.engine
        first.unbacked = 500  # 1000 free, but 500 of it is the first model's cache
        ref2, _ = _ref(2)
        async with s.lease(ref2, LoadSpec(model_path="/m2", estimate_bytes=600), None):
            assert first.closed
        await s.close()

    asyncio.run(scenario())


def test_idle_models_are_evicted_to_make_room_and_too_big_is_refused() -> None:
    async def scenario() -> None:
        free = {"bytes": 1000}
        s = Scheduler(InferenceSettings(models_dir=Path("/x")), lambda spec: FakeEngine(spec),
                      memory_available=lambda: free["bytes"])
        ref1, _ = _ref(1)
        async with s.lease(ref1, LoadSpec(model_path="/m1", estimate_bytes=600), None) as runner:
            first = runner.engine
        free["bytes"] = 400  # the first model now holds the memory
        ref2, _ = _ref(2)

        def evicted() -> int:
            return 1000 if first.closed else 400

        s.memory_available = evicted
        async with s.lease(ref2, LoadSpec(model_path="/m2", estimate_bytes=600), None):
            assert first.closed
        await s.close()
        with pytest.raises(ServiceUnavailable, match="requires more system memory"):
            async with s.lease(ref1, LoadSpec(model_path="/m1", estimate_bytes=10**6), None):
                pass

    asyncio.run(scenario())


def _slow_scheduler(gate: threading.Event, slow: str) -> Scheduler:
    """Loading the model whose path is ``slow`` blocks until the gate opens (as a big GGUF load would)."""

    def factory(spec: LoadSpec) -> FakeEngine:
        if spec.model_path == slow:
            assert gate.wait(10), "the test never opened the load gate"
        return FakeEngine(spec)

    return Scheduler(InferenceSettings(models_dir=Path("/nonexistent")), factory)


def test_shared_leases_that_arrive_during_the_load_get_the_loaded_engine() -> None:
    async def scenario() -> None:
        gate = threading.Event()
        s = _slow_scheduler(gate, "/m1")
        ref, spec = _ref(1)

        async def shared() -> FakeEngine:
            async with s.lease(ref, spec, None, exclusive=False) as runner:
                assert runner.engine is not None, "a lease was handed a runner that had not finished loading"
                return runner.engine

        first = asyncio.create_task(shared())
        await asyncio.sleep(0.05)
        second = asyncio.create_task(shared())
        await asyncio.sleep(0.05)
        gate.set()
        engines = await asyncio.gather(first, second)
        assert engines[0] is engines[1]
        await s.close()

    asyncio.run(scenario())


def test_a_loading_model_does_not_block_a_loaded_one() -> None:
    async def scenario() -> None:
        gate = threading.Event()
        s = _slow_scheduler(gate, "/m2")
        await _use(s, 1)
        loading = asyncio.create_task(_use(s, 2))
        await asyncio.sleep(0.05)
        served = await asyncio.wait_for(_use(s, 1), 5)  # answered while m2 is still loading
        assert not loading.done() and served.spec.model_path == "/m1"
        gate.set()
        await loading
        assert sorted(row["name"] for row in s.ps()) == ["m1", "m2"]
        await s.close()

    asyncio.run(scenario())


def test_a_failed_load_is_forgotten_and_the_next_request_loads_afresh() -> None:
    async def scenario() -> None:
        attempts = []

        def factory(spec: LoadSpec) -> FakeEngine:
            attempts.append(spec)
            if len(attempts) == 1:
                raise RuntimeError("llama.cpp could not load the model")
            return FakeEngine(spec)

        s = Scheduler(InferenceSettings(models_dir=Path("/nonexistent")), factory)
        with pytest.raises(RuntimeError):
            await _use(s, 1)
        assert s.ps() == [] and not s.runners
        engine = await _use(s, 1)
        assert engine.spec.model_path == "/m1" and len(attempts) == 2
        await s.close()

    asyncio.run(scenario())


def test_node_load_reports_what_a_gateway_routes_by() -> None:
    async def scenario() -> None:
        s = Scheduler(InferenceSettings(models_dir=Path("/x"), max_loaded_models=2), lambda spec: FakeEngine(spec),
                      memory_available=lambda: 5000)
        assert s.node_load().model_dump() == {"models": [], "active": 0, "loaded": 0, "max_loaded": 2,
                                              "available_memory": 5000, "idle_memory": 0}
        ref, spec = _ref(1)
        async with s.lease(ref, spec, None) as runner:
            busy = s.node_load()
            size = runner.size
        idle = s.node_load()
        assert busy.models == idle.models == [f"{1:064x}"] and busy.loaded == idle.loaded == 1
        assert (busy.active, busy.idle_memory) == (1, 0)
        assert size > 0 and (idle.active, idle.idle_memory) == (0, size)
        await s.close()

    asyncio.run(scenario())
