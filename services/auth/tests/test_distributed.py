"""Distributed mode against the real Postgres and Redis on this machine (skipped where they are not running)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import text

from corral_common.testing.backends import port_open, postgres_schema

from corral_auth.limits import Limits, RedisRateLimiter
from corral_auth.replay import RedisReplayCache
from corral_auth.runtime import build_runtime

REDIS = "redis://127.0.0.1:6379/11"

needs_postgres = pytest.mark.skipif(not port_open("127.0.0.1", 5432),
                                    reason="Postgres is not running on 127.0.0.1:5432")
needs_redis = pytest.mark.skipif(not port_open("127.0.0.1", 6379), reason="Redis is not running on 127.0.0.1:6379")


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A throwaway schema, so runs never see each other's tables."""
    with postgres_schema("auth_test") as url:
        yield url


@needs_postgres
def test_postgres_migrates_and_verifies_keys(tmp_path, settings_for, pg_schema) -> None:
    settings = settings_for(tmp_path, database_url=pg_schema)
    runtime = build_runtime(settings)
    try:
        admin_key = runtime.accounts.bootstrap("root").key
        admin = runtime.accounts.identify(admin_key)
        issued = runtime.accounts.create_key(admin, "pg", ["inference"], None)
        assert runtime.accounts.identify(issued.key).scopes == ("inference",)
        runtime.accounts.revoke_key(admin, issued.info["id"])
        assert runtime.accounts.identify(issued.key) is None
        with runtime.engine.connect() as db:
            rows = db.execute(text("SELECT * FROM auth_api_keys")).all()
        assert issued.key not in repr(rows) and issued.key.split("_")[2] not in repr(rows)
    finally:
        runtime.close()
    build_runtime(settings).close()  # migrating an up-to-date schema again is a no-op


@needs_redis
def test_redis_bucket_and_lockout_are_shared() -> None:
    client = redis.Redis.from_url(REDIS)
    first, second = RedisRateLimiter(client), RedisRateLimiter(client)  # two replicas
    key = f"test:{secrets.token_hex(4)}"
    assert first.take(key, rate=0.5, burst=2) == 0 and second.take(key, rate=0.5, burst=2) == 0
    assert first.take(key, rate=0.5, burst=2) > 1
    limits = Limits(lockout_failures=3, lockout_window_seconds=60, lockout_seconds=30)
    assert [first.fail(key, limits), second.fail(key, limits), first.fail(key, limits)] == [0, 0, 30]
    assert 0 < second.locked_for(key) <= 30
    client.close()


@needs_redis
def test_redis_replay_cache_is_shared() -> None:
    client = redis.Redis.from_url(REDIS)
    marker = f"test:{secrets.token_hex(8)}"
    assert RedisReplayCache(client).first_use(marker, 10)
    assert not RedisReplayCache(client).first_use(marker, 10)
    client.close()
