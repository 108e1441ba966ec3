"""Quotas: tokens per hour and requests per minute, per user (its own or the server's default) and per key.

Checked when an inference request is authorized; a caller over a limit gets 429 with Retry-After and a
message naming the limit. Requests per minute are a token bucket (the limiter the rate limits use, so
replicas share it); tokens per hour are the usage counters of the current hour (a request that crosses the
limit finishes, the next one is refused).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from corral_auth.clock import utcnow
from corral_auth.errors import RateLimited
from corral_auth.limits import Quota, RateLimiter, retry_after

if TYPE_CHECKING:
    from corral_auth.identity import Principal
    from corral_auth.usage import Usage

class Quotas:
    """Refuses a principal over one of its limits."""

    def __init__(self, usage: "Usage", limiter: RateLimiter, default: Quota) -> None:
        self.usage, self.limiter, self.default = usage, limiter, default

    def check(self, principal: "Principal") -> None:
        """Nothing, or RateLimited naming the limit (user's first, then the key's)."""
        user_quota = principal.user_quota.over(self.default)
        self._requests(f"user:{principal.user}", user_quota.requests_per_minute, f"user {principal.user!r}")
        self._requests(f"key:{principal.key_id}", principal.key_quota.requests_per_minute,
                       f"key {principal.key_id}")
        if user_quota.tokens_per_hour is not None:
            self._tokens(self.usage.tokens_this_hour(user=principal.user), user_quota.tokens_per_hour,
                         f"user {principal.user!r}")
        if principal.key_quota.tokens_per_hour is not None:
            self._tokens(self.usage.tokens_this_hour(key_id=principal.key_id), principal.key_quota.tokens_per_hour,
                         f"key {principal.key_id}")

    def _requests(self, who: str, per_minute: int | None, name: str) -> None:
        if per_minute is None:
            return
        # the limit is part of the bucket's name, so a changed quota starts afresh instead of inheriting a debt
        wait = self.limiter.take(f"quota:rpm:{who}:{per_minute}", per_minute / 60, per_minute) if per_minute else 60.0
        if wait > 0:
            raise RateLimited(retry_after(wait), f"quota exceeded: {name} may make {per_minute} requests per minute; "
                                                 f"retry in {retry_after(wait)} s")

    def _tokens(self, used: int, per_hour: int, name: str) -> None:
        if used < per_hour:
            return
        now = utcnow()
        wait = ((now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)) - now).total_seconds()
        raise RateLimited(retry_after(wait), f"quota exceeded: {name} may use {per_hour} tokens per hour and has "
                                             f"used {used}; retry in {retry_after(wait)} s, when the hour turns")
