"""Remote models in use here, for ``/api/ps``: in flight, or used within the last keep-alive period."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from corral_common.jsonio import local_time

SHOWN_FOR_SECONDS = 300.0  # Ollama's default keep_alive: how long a model stays listed after its last request


@dataclass
class _Run:
    name: str
    remote_model: str
    remote_host: str
    details: dict[str, Any]
    context_length: int
    active: int = 0
    last_used: float = 0.0


class RemoteRuns:
    """Counts requests per remote model (by the name the client used) and lists the recent ones."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}

    def started(self, name: str, remote_model: str, remote_host: str, details: dict[str, Any] | None = None,
                context_length: int | None = None) -> None:
        """A request for ``name`` went to its host."""
        run = self._runs.get(name) or _Run(name, remote_model, remote_host, details or {}, context_length or 0)
        run.active += 1
        run.last_used = time.time()
        self._runs[name] = run

    def finished(self, name: str) -> None:
        """That request ended (however it ended)."""
        run = self._runs.get(name)
        if run is not None:
            run.active = max(0, run.active - 1)
            run.last_used = time.time()

    def rows(self, now: float | None = None) -> list[dict[str, Any]]:
        """``/api/ps`` rows: no memory here (size 0), expiring a keep-alive period after the last use."""
        now = time.time() if now is None else now
        for name in [n for n, r in self._runs.items() if not r.active and r.last_used + SHOWN_FOR_SECONDS < now]:
            del self._runs[name]
        return [{"name": r.name, "model": r.name, "size": 0, "digest": "", "details": r.details,
                 "expires_at": local_time((now if r.active else r.last_used) + SHOWN_FOR_SECONDS), "size_vram": 0,
                 "context_length": r.context_length, "remote_model": r.remote_model, "remote_host": r.remote_host}
                for r in sorted(self._runs.values(), key=lambda r: r.last_used, reverse=True)]
