"""The auth service's readiness checks: its database, and Redis when limits and nonces are shared there."""

from __future__ import annotations

from corral_common.health import Check, Readiness, redis_probe, sql_probe

from corral_auth.runtime import AuthRuntime


def register_checks(readiness: Readiness, runtime: AuthRuntime) -> None:
    """Add the runtime's database (and Redis, if configured) to the readiness checks."""
    readiness.add(Check("database", sql_probe(runtime.engine)))
    if runtime.redis is not None:
        readiness.add(Check("redis", redis_probe(runtime.redis)))
