"""Nonce caches for signed requests: in process (embedded) or Redis (distributed)."""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis


class ReplayCache(Protocol):
    """Remembers markers for a while; ``first_use`` is atomic."""

    def first_use(self, marker: str, ttl_seconds: int) -> bool:
        """True the first time ``marker`` is seen within its time to live."""
        ...


class MemoryReplayCache:
    """A dict with expiry, swept as it grows."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_use(self, marker: str, ttl_seconds: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
            if self._seen.get(marker, 0.0) > now:
                return False
            self._seen[marker] = now + ttl_seconds
            return True


class RedisReplayCache:
    """``SET NX EX`` shared by every auth replica."""

    def __init__(self, client: redis.Redis, prefix: str = "corral:auth:nonce:") -> None:
        self.client, self.prefix = client, prefix

    def first_use(self, marker: str, ttl_seconds: int) -> bool:
        return bool(self.client.set(self.prefix + marker, b"1", nx=True, ex=ttl_seconds))
