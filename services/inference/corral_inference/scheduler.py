"""Loads models on first use, keeps them for keep_alive, evicts least-recently-used ones at the limit.

Each loaded model (a Runner) owns one OS thread: every llama.cpp call for it runs there, because
llama.cpp calls hopping between threads halve decode speed (shared/reference/performance.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from corral_common.durations import FOREVER_NS
from corral_common.errors import ServiceUnavailable
from corral_common.internal import NodeLoad
from corral_common.logs import get_logger

from corral_inference.engine import Engine, LoadSpec
from corral_inference.settings import InferenceSettings

log = get_logger("corral.inference.scheduler")


class LoadObserver(Protocol):
    """What the scheduler reports to metrics (the metrics module reads the scheduler, not the other way)."""

    def model_loaded(self, name: str, load_ns: int) -> None:
        """A model finished loading."""


def available_memory() -> int:
    """MemAvailable from /proc/meminfo (bytes); unlimited where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**62
T = TypeVar("T")
EngineFactory = Callable[[LoadSpec], Engine]
BUSY = "server busy, please try again.  maximum pending requests exceeded"


@dataclass(frozen=True)
class ModelRef:
    """Which model a request wants, with what /api/ps shows about it."""

    name: str
    model_digest: str
    manifest_digest: str = ""
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    adapters: tuple[str, ...] = field(default=(), metadata={"doc": "digests of the LoRA adapters it runs with"})


@dataclass(eq=False)
class Runner:
    """One loaded model and the thread that drives it."""

    ref: ModelRef
    spec: LoadSpec
    keep_alive_ns: int
    engine: Engine | None = None
    active: int = 0
    last_used: float = field(default_factory=time.time)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "llama"))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    expiry: asyncio.TimerHandle | None = None
    size: int = 0
    size_vram: int = 0
    load_duration_ns: int = 0

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn on this runner's own thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def expires_at(self) -> float:
        """When an idle runner will be unloaded (now + keep_alive while busy)."""
        if self.keep_alive_ns >= FOREVER_NS:
            return time.time() + 292 * 365 * 86400
        base = time.time() if self.active else self.last_used
        return base + self.keep_alive_ns / 1e9


class Scheduler:
    """The set of loaded runners, keyed by model blob, adapters and mode."""

    def __init__(self, settings: InferenceSettings, factory: EngineFactory,
                 memory_available: Callable[[], int] | None = None, metrics: LoadObserver | None = None) -> None:
        self.settings, self.factory, self.metrics = settings, factory, metrics
        self.memory_available = memory_available or available_memory
        self.runners: dict[tuple, Runner] = {}
        self.changed = asyncio.Condition()
        self.pending = 0

    @staticmethod
    def key(ref: ModelRef, spec: LoadSpec) -> tuple:
        """Runners are shared by requests for the same blob, adapters and mode."""
        return (ref.model_digest, spec.adapters, spec.embedding)

    @asynccontextmanager
    async def lease(self, ref: ModelRef, spec: LoadSpec, keep_alive_ns: int | None,
                    exclusive: bool = True) -> AsyncIterator[Runner]:
        """Hold a loaded runner for one request. Exclusive leases wait in line for the runner's lock;
        shared ones (batching engines) go straight to the engine, which queues beyond its slots."""
        if self.pending >= self.settings.max_queue:
            raise ServiceUnavailable(BUSY)
        self.pending += 1
        try:
            runner = await self._ready_runner(ref, spec, keep_alive_ns)
            try:
                await self._admit(runner, exclusive)
            except BaseException:
                await self._release(runner)
                raise
        finally:
            self.pending -= 1
        try:
            yield runner
        finally:
            if exclusive:
                runner.lock.release()
            await self._release(runner)

    async def _admit(self, runner: Runner, exclusive: bool) -> None:
        """Take the runner's lock, or check the queue limit of a batching runner."""
        if exclusive:
            await runner.lock.acquire()
            return
        if runner.active - runner.engine.slots > self.settings.max_queue:
            raise ServiceUnavailable(BUSY)

    async def _ready_runner(self, ref: ModelRef, spec: LoadSpec, keep_alive_ns: int | None) -> Runner:
        """A runner with the right options, loading (and evicting) as needed."""
        async with self.changed:
            while True:
                runner = self.runners.get(self.key(ref, spec))
                if runner is not None and runner.spec == spec:
                    log.debug("scheduler reuses loaded model", model=ref.name, active=runner.active)
                    self._mark_busy(runner, keep_alive_ns)
                    break
                if runner is not None and not self._idle(runner):
                    log.debug("scheduler waits for busy model to reload it", model=ref.name, active=runner.active)
                    await self.changed.wait()
                    continue
                if runner is not None:
                    await self._unload(runner)
                if len(self.runners) >= self.settings.max_loaded_models and not await self._evict_one():
                    await self.changed.wait()
                    continue
                if not await self._make_room(spec.estimate_bytes):
                    await self.changed.wait()
                    continue
                runner = Runner(ref, spec, self.settings.keep_alive_ns if keep_alive_ns is None else keep_alive_ns)
                log.debug("scheduler loads model", model=ref.name, estimate_bytes=spec.estimate_bytes,
                          loaded=len(self.runners), available_bytes=self.memory_available())
                self.runners[self.key(ref, spec)] = runner
                self._mark_busy(runner, keep_alive_ns)
                break
        try:
            await self._load(runner)  # a request that found the runner still loading waits here for it
        except BaseException:
            await self._forget_failed(runner)
            raise
        return runner

    async def _forget_failed(self, runner: Runner) -> None:
        """A load failed or its caller left: drop the empty runner unless another request still waits on it."""
        async with self.changed:
            runner.active -= 1
            key = self.key(runner.ref, runner.spec)
            if runner.engine is None and runner.active == 0 and self.runners.get(key) is runner:
                self.runners.pop(key)
                runner.executor.shutdown(wait=False)
            self.changed.notify_all()

    def _mark_busy(self, runner: Runner, keep_alive_ns: int | None) -> None:
        """Count a request on the runner; a keep_alive in the request replaces the runner's."""
        runner.active += 1
        if keep_alive_ns is not None:
            runner.keep_alive_ns = keep_alive_ns
        if runner.expiry is not None:
            runner.expiry.cancel()
            runner.expiry = None

    @staticmethod
    def _idle(runner: Runner) -> bool:
        return runner.active == 0 and runner.engine is not None

    async def _load(self, runner: Runner) -> None:
        """Create the engine on the runner's thread (loading is slow; other models keep serving)."""
        if runner.engine is not None:
            return
        started = time.perf_counter_ns()
        async with runner.lock:
            if runner.engine is None:
                runner.engine = await runner.call(self.factory, runner.spec)
                runner.size = await runner.call(runner.engine.size_bytes)
                runner.size_vram = await runner.call(runner.engine.vram_bytes)
                runner.load_duration_ns = time.perf_counter_ns() - started
                if self.metrics is not None:
                    self.metrics.model_loaded(runner.ref.name, runner.load_duration_ns)
                log.info("model loaded", model=runner.ref.name, seconds=round(runner.load_duration_ns / 1e9, 2),
                         mib_taken_when_written=round(runner.engine.unbacked_bytes() / 2**20))

    async def _make_room(self, needed: int) -> bool:
        """Evict idle models until ``needed`` bytes fit; refuse if even an empty server could not hold it.

        Returns False when busy models hold the memory (the caller waits for one to go idle). Memory the loaded
        models will take as their caches fill (``Engine.unbacked_bytes``) counts as taken."""
        while needed + self._unbacked() > self.memory_available():
            if not await self._evict_one():
                if not self.runners:
                    raise ServiceUnavailable(
                        f"model requires more system memory ({needed / 2**30:.1f} GiB) than is available "
                        f"({self.memory_available() / 2**30:.1f} GiB)")
                return False
        return True

    def _unbacked(self) -> int:
        """Bytes the loaded models hold without RAM behind them yet."""
        return sum(r.engine.unbacked_bytes() for r in self.runners.values() if r.engine is not None)

    async def _evict_one(self) -> bool:
        """Unload the idle runner with the shortest keep_alive (then name); False if all are busy."""
        idle = [r for r in self.runners.values() if self._idle(r)]
        if not idle:
            return False
        victim = min(idle, key=lambda r: (r.keep_alive_ns, r.ref.name))
        log.debug("scheduler evicts idle model", model=victim.ref.name, loaded=len(self.runners))
        await self._unload(victim)
        return True

    async def _unload(self, runner: Runner) -> None:
        """Remove a runner and free its model on its own thread."""
        self.runners.pop(self.key(runner.ref, runner.spec), None)
        if runner.expiry is not None:
            runner.expiry.cancel()
        if runner.engine is not None:
            await runner.call(runner.engine.close)
            runner.engine = None
        runner.executor.shutdown(wait=False)
        log.info("model unloaded", model=runner.ref.name)

    async def _release(self, runner: Runner) -> None:
        """A request finished: start the keep_alive clock, or unload at once for keep_alive 0."""
        async with self.changed:
            runner.active -= 1
            runner.last_used = time.time()
            if runner.active == 0 and runner.engine is not None:
                if runner.keep_alive_ns == 0:
                    await self._unload(runner)
                elif runner.keep_alive_ns < FOREVER_NS:
                    loop = asyncio.get_running_loop()
                    runner.expiry = loop.call_later(runner.keep_alive_ns / 1e9, self._expire, runner)
            self.changed.notify_all()

    def _expire(self, runner: Runner) -> None:
        asyncio.get_running_loop().create_task(self._expire_now(runner))

    async def _expire_now(self, runner: Runner) -> None:
        async with self.changed:
            if self._idle(runner) and self.runners.get(self.key(runner.ref, runner.spec)) is runner:
                await self._unload(runner)
                self.changed.notify_all()

    async def unload_model(self, model_digest: str, adapters: list[str] | None = None) -> None:
        """keep_alive 0 with no prompt: unload every idle runner of a model now, busy ones when done (only the
        runner with exactly ``adapters`` when given: the base model and the base with a LoRA are two models)."""
        async with self.changed:
            for runner in [r for r in self.runners.values() if r.ref.model_digest == model_digest
                           and (adapters is None or r.ref.adapters == tuple(adapters))]:
                runner.keep_alive_ns = 0
                if self._idle(runner):
                    await self._unload(runner)
            self.changed.notify_all()

    def node_load(self) -> NodeLoad:
        """This node's occupancy, for a gateway choosing between inference nodes."""
        runners = list(self.runners.values())
        return NodeLoad(models=sorted({r.ref.model_digest for r in runners}), active=sum(r.active for r in runners),
                        loaded=len(runners), max_loaded=self.settings.max_loaded_models,
                        available_memory=self.memory_available(),
                        idle_memory=sum(r.size for r in runners if self._idle(r)))

    def ps(self) -> list[dict[str, Any]]:
        """Loaded runners for /api/ps, latest expiry first."""
        rows = [{"name": r.ref.name, "model_digest": r.ref.model_digest, "digest": r.ref.manifest_digest,
                 "details": r.ref.details, "size": r.size, "size_vram": r.size_vram,
                 "context_length": r.spec.num_ctx, "expires_at": r.expires_at(), "embedding": r.spec.embedding}
                for r in self.runners.values() if r.engine is not None]
        return sorted(rows, key=lambda row: row["expires_at"], reverse=True)

    async def close(self) -> None:
        """Unload everything (service shutdown)."""
        async with self.changed:
            for runner in list(self.runners.values()):
                await self._unload(runner)
