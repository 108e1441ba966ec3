"""Rate limits: a token bucket per key and per client address, and lockouts after failed attempts; and the
shape of a quota (enforced in quotas.py).

Failed attempts lock out the key id they name and throttle the address they came from (its
further failures get 429); a valid key is never refused because of its address's failures.

Embedded mode keeps the buckets in this process; distributed mode keeps them in Redis so every
auth replica sees the same counts. Both answer how long the caller should wait (Retry-After).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import redis

from corral_common.errors import BadRequest


@dataclass(frozen=True)
class Limits:
    """Bucket sizes and the failure budget."""

    rate_per_second: float = 20.0
    burst: int = 200
    lockout_failures: int = 20
    lockout_window_seconds: int = 900
    lockout_seconds: int = 900


MAX_QUOTA = 1 << 40


@dataclass(frozen=True)
class Quota:
    """Limits of a user or a key; None: no limit (for a user: the server's default)."""

    tokens_per_hour: int | None = None
    requests_per_minute: int | None = None

    def over(self, default: "Quota") -> "Quota":
        """These limits, each unset one taken from ``default``."""
        return Quota(self.tokens_per_hour if self.tokens_per_hour is not None else default.tokens_per_hour,
                     self.requests_per_minute if self.requests_per_minute is not None else default.requests_per_minute)

    def wire(self) -> dict[str, int | None]:
        """As the API shows it."""
        return {"tokens_per_hour": self.tokens_per_hour, "requests_per_minute": self.requests_per_minute}


def checked(value: int | None, name: str) -> int | None:
    """A quota value from a request: None, or a whole number 0 (nothing allowed) up to 2^40."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUOTA:
        raise BadRequest(f"{name} must be a whole number from 0 to {MAX_QUOTA}, or null for no limit")
    return value


class RateLimiter(Protocol):
    """Token buckets and failure counters keyed by an arbitrary string."""

    def take(self, key: str, rate: float, burst: int) -> float:
        """Take one token: 0 when allowed, else the seconds until one is available."""
        ...

    def locked_for(self, key: str) -> float:
        """Seconds left on a lockout of ``key`` (0 when not locked)."""
        ...

    def fail(self, key: str, limits: Limits) -> float:
        """Count a failed attempt; returns the lockout it started (0 when none)."""
        ...


def retry_after(seconds: float) -> int:
    """A Retry-After value: whole seconds, at least 1."""
    return max(1, math.ceil(seconds))


_MAX_TRACKED = 100_000  # failure counters and locks kept before stale ones are swept


class MemoryRateLimiter:
    """In-process buckets (one auth process in the embedded runtime)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._failures: dict[str, deque[float]] = {}
        self._locks: dict[str, float] = {}
        self._mutex = threading.Lock()

    def take(self, key: str, rate: float, burst: int) -> float:
        now = time.monotonic()
        with self._mutex:
            tokens, last = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / rate

    def locked_for(self, key: str) -> float:
        with self._mutex:
            return max(0.0, self._locks.get(key, 0.0) - time.monotonic())

    def fail(self, key: str, limits: Limits) -> float:
        now = time.monotonic()
        with self._mutex:
            if len(self._failures) + len(self._locks) > _MAX_TRACKED:
                self._forget_expired(now, limits.lockout_window_seconds)
            recent = self._failures.setdefault(key, deque())
            recent.append(now)
            while recent and recent[0] < now - limits.lockout_window_seconds:
                recent.popleft()
            if len(recent) < limits.lockout_failures:
                return 0.0
            recent.clear()
            self._locks[key] = now + limits.lockout_seconds
            return float(limits.lockout_seconds)

    def _forget_expired(self, now: float, window: float) -> None:
        """Drop stale failure counts and finished lockouts (failures name key ids anyone can make up)."""
        self._failures = {k: v for k, v in self._failures.items() if v and v[-1] >= now - window}
        self._locks = {k: until for k, until in self._locks.items() if until > now}


# KEYS[1] bucket; ARGV rate, burst. Uses the server clock so replicas agree.
_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1]) or burst
local ts = tonumber(data[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""

# KEYS[1] failure counter, KEYS[2] lock; ARGV threshold, window, lockout.
_FAIL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
if n >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[3]))
  return tonumber(ARGV[3])
end
return 0
"""


class RedisRateLimiter:
    """Buckets and failure counters in Redis, shared by every auth replica."""

    def __init__(self, client: redis.Redis, prefix: str = "corral:auth:") -> None:
        self.client, self.prefix = client, prefix
        self._bucket = client.register_script(_BUCKET)
        self._fail = client.register_script(_FAIL)

    def take(self, key: str, rate: float, burst: int) -> float:
        return float(self._bucket(keys=[f"{self.prefix}bucket:{key}"], args=[rate, burst]))

    def locked_for(self, key: str) -> float:
        return float(max(0, self.client.ttl(f"{self.prefix}lock:{key}")))

    def fail(self, key: str, limits: Limits) -> float:
        keys = [f"{self.prefix}fail:{key}", f"{self.prefix}lock:{key}"]
        args = [limits.lockout_failures, limits.lockout_window_seconds, limits.lockout_seconds]
        return float(self._fail(keys=keys, args=args))
