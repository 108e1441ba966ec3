"""Progress of a transfer task, published through Celery's result backend and relayed to callers.

Byte counts change hundreds of times a second, so events are coalesced: each digest keeps one
entry that is updated in place, publishing is throttled, and a heartbeat republishes the state
every second so a caller can tell a slow transfer from a dead worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from corral_common.errors import AppError

Publish = Callable[[dict[str, Any]], None]


class TransferReporter:
    """Status lines and per-digest progress; thread-safe (parts report from their own threads)."""

    def __init__(self, publish: Publish, min_interval: float = 0.1, heartbeat: float = 1.0) -> None:
        self._publish, self._min_interval = publish, min_interval
        self.events: list[dict[str, Any]] = []
        self._by_digest: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._published_at = 0.0
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, args=(heartbeat,), daemon=True, name="heartbeat")
        self._beat.start()

    def status(self, text: str) -> None:
        """A status line (published at once)."""
        with self._lock:
            self.events.append({"status": text})
        self.flush()

    def progress(self, status: str, digest: str, total: int, completed: int) -> None:
        """Bytes done for one digest (published at most every ``min_interval`` unless complete)."""
        with self._lock:
            entry = self._by_digest.get(digest)
            if entry is None:
                entry = self._by_digest[digest] = {"status": status, "digest": digest, "total": total,
                                                   "completed": 0}
                self.events.append(entry)
            entry["completed"] = max(entry["completed"], min(completed, total))
            due = entry["completed"] >= total or time.monotonic() - self._published_at >= self._min_interval
        if due:
            self.flush()

    def snapshot(self) -> dict[str, Any]:
        """What callers see: a copy of every event and the time of this beat."""
        with self._lock:
            return {"events": [dict(e) for e in self.events], "beat": time.time()}

    def flush(self) -> None:
        """Publish the current state."""
        meta = self.snapshot()
        with self._lock:
            self._published_at = time.monotonic()
        self._publish(meta)

    def _heartbeat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a failed beat must not kill the transfer
                continue

    def close(self) -> None:
        """Stop the heartbeat."""
        self._stop.set()
        self._beat.join(timeout=5)

    def result(self, error: AppError | None) -> dict[str, Any]:
        """The task's return value: every event and the error that ended it (as ProgressReporter)."""
        out = self.snapshot()
        if error is not None:
            out["error"] = {"status": error.status, "message": error.message}
        return out


class ListReporter:
    """Collects events in order (tests and synchronous callers)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def status(self, text: str) -> None:
        """Record a status line."""
        with self._lock:
            self.events.append({"status": text})

    def progress(self, status: str, digest: str, total: int, completed: int) -> None:
        """Record every progress report (no coalescing)."""
        with self._lock:
            self.events.append({"status": status, "digest": digest, "total": total, "completed": completed})

    def statuses(self) -> list[str]:
        """Status texts without consecutive repeats."""
        out: list[str] = []
        for event in self.events:
            if not out or out[-1] != event["status"]:
                out.append(event["status"])
        return out
