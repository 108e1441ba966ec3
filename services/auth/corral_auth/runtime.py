"""Everything the auth service needs, built once from settings (by the app's lifespan, the CLI, tests)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy import Engine

from corral_auth import keystore
from corral_auth.accounts import Accounts
from corral_auth.audit import AuditLog
from corral_auth.db.engine import make_engine, migrate, sessions
from corral_auth.devices import Devices
from corral_auth.gate import Gate
from corral_auth.grants import Grants
from corral_auth.limits import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from corral_auth.quotas import Quotas
from corral_auth.replay import MemoryReplayCache, RedisReplayCache, ReplayCache
from corral_auth.settings import AuthSettings
from corral_auth.signatures import SignatureVerifier
from corral_auth.tokens import RegistryPolicy, RegistryTokens, TokenIssuer
from corral_auth.usage import Usage


@dataclass
class AuthRuntime:
    """The auth service's domain objects."""

    engine: Engine
    accounts: Accounts
    devices: Devices
    gate: Gate
    audit: AuditLog
    policy: RegistryPolicy
    tokens: TokenIssuer
    registry: RegistryTokens
    grants: Grants
    usage: Usage
    redis: redis.Redis | None = None

    def close(self) -> None:
        """Release the connection pools."""
        self.engine.dispose()
        if self.redis is not None:
            self.redis.close()


def _shared_state(settings: AuthSettings) -> tuple[RateLimiter, ReplayCache, redis.Redis | None]:
    """Redis-backed limits and nonces when distributed, in-process ones otherwise."""
    if not settings.redis_url:
        return MemoryRateLimiter(), MemoryReplayCache(), None
    client = redis.Redis.from_url(settings.redis_url)
    return RedisRateLimiter(client), RedisReplayCache(client), client


def build_runtime(settings: AuthSettings, run_migrations: bool = True) -> AuthRuntime:
    """Open the database (migrating it), load the server secrets and wire the services."""
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    if run_migrations:
        migrate(engine)
    factory = sessions(engine)
    pepper = keystore.pepper(settings)
    limiter, replay, client = _shared_state(settings)
    accounts = Accounts(factory, pepper)
    devices = Devices(factory, pepper, settings.signin_ttl_seconds)
    audit, usage = AuditLog(factory), Usage(factory)
    gate = Gate(accounts, devices, SignatureVerifier(replay, settings.signature_window_seconds), limiter,
                settings.limits, audit, Quotas(usage, limiter, settings.quota))
    tokens = TokenIssuer(keystore.signing_key_pem(settings), settings.issuer, settings.token_ttl_seconds)
    policy = RegistryPolicy(factory)
    return AuthRuntime(engine=engine, accounts=accounts, devices=devices, gate=gate, audit=audit, policy=policy,
                       tokens=tokens, registry=RegistryTokens(gate, policy, tokens, settings.auth_mode),
                       grants=Grants(factory, policy), usage=usage, redis=client)
