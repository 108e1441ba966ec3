"""Readiness: each dependency a service needs answers (``GET /readyz``); liveness is ``GET /healthz``.

A ``Check`` is a name, a probe (an async callable that raises when the dependency is down) and a short
timeout. ``Readiness`` runs every check at once and keeps the report for ``cache_seconds``, so a burst of
probes from an orchestrator does not turn into a burst of connections to the database.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

Probe = Callable[[], Awaitable[Any]]
READY, NOT_READY, OK = "ready", "not ready", "ok"
DEFAULT_TIMEOUT = 2.0


class DependencyDown(Exception):
    """A probe's answer: the dependency is there but not usable (the message says why)."""


@dataclass(frozen=True)
class Check:
    """One dependency: its name in the report, how to probe it, and how long a probe may take."""

    name: str
    probe: Probe
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class Report:
    """Each check's outcome: ``ok`` or ``down: <why>``."""

    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        """Whether every check passed."""
        return all(outcome == OK for outcome in self.checks.values())

    def body(self) -> dict[str, Any]:
        """The /readyz JSON body."""
        return {"status": READY if self.ready else NOT_READY, "checks": self.checks}


async def run_check(check: Check) -> str:
    """``ok``, or ``down: <why>`` (a timeout and any error count as down)."""
    try:
        await asyncio.wait_for(check.probe(), check.timeout)
    except TimeoutError:
        return f"down: no answer within {check.timeout:g}s"
    except Exception as exc:  # noqa: BLE001 - any failure of a dependency is a readiness answer, not a crash
        return f"down: {_reason(exc)}"
    return OK


def _reason(exc: BaseException) -> str:
    """A short, single-line reason."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


@dataclass
class Readiness:
    """The checks of one service, run concurrently, the report cached briefly."""

    checks: list[Check] = field(default_factory=list)
    cache_seconds: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _cached: tuple[float, Report] | None = field(default=None, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def add(self, *checks: Check) -> None:
        """Register checks (a service does so in its lifespan, once its clients exist)."""
        self.checks.extend(checks)

    async def report(self) -> Report:
        """Every check's outcome, fresh or at most ``cache_seconds`` old."""
        async with self._lock:  # concurrent probes share one run
            if self._cached is not None and self.clock() - self._cached[0] < self.cache_seconds:
                return self._cached[1]
            outcomes = await asyncio.gather(*(run_check(c) for c in self.checks))
            report = Report(dict(zip((c.name for c in self.checks), outcomes)))
            self._cached = (self.clock(), report)
            return report


# --- probes ------------------------------------------------------------------------------------------------
def blocking(call: Callable[[], Any]) -> Probe:
    """A probe that runs a blocking call on a thread (drivers, SQLAlchemy, redis-py)."""

    async def probe() -> None:
        await asyncio.to_thread(call)

    return probe


def sql_probe(engine: Any) -> Probe:
    """``SELECT 1`` over a SQLAlchemy engine (the service's own pool)."""
    from sqlalchemy import text

    def ping() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return blocking(ping)


def broker_probe(celery: Any) -> Probe:
    """A connection to the Celery app's broker (one attempt, no retry loop)."""

    def ping() -> None:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)

    return blocking(ping)


def result_backend_probe(celery: Any) -> Probe:
    """A read from the Celery app's result backend (a task id nobody uses)."""
    return blocking(lambda: celery.backend.get_task_meta("corral-readyz-probe"))


def redis_probe(client: Any) -> Probe:
    """PING on a redis-py client."""
    return blocking(client.ping)


def directory_probe(path: Path, writable: bool = False) -> Probe:
    """A directory that exists and can be read (and written, when asked)."""

    def ping() -> None:
        mode = os.R_OK | os.X_OK | (os.W_OK if writable else 0)
        if not path.is_dir():
            raise DependencyDown(f"{path} is not a directory")
        if not os.access(path, mode):
            raise DependencyDown(f"{path} is not {'writable' if writable else 'readable'}")

    return blocking(ping)


def http_probe(client: httpx.AsyncClient, path: str = "/healthz") -> Probe:
    """A GET on another service that must answer 2xx."""

    async def ping() -> None:
        response = await client.get(path)
        if response.status_code >= 300:
            raise DependencyDown(f"{path} answered {response.status_code}")

    return ping
