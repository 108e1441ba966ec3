"""Auth service settings, read when constructed (never at import)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from corral_common.env import corral_home, current_env, env_bool, env_int, env_positive, env_str
from corral_common.logs import Telemetry

from corral_auth.limits import Limits, Quota


def _redis_url(environ: Mapping[str, str]) -> str:
    """CORRAL_REDIS_URL, else the broker's URL when that is Redis; empty means in-process."""
    url = env_str(environ, "CORRAL_REDIS_URL")
    broker = env_str(environ, "CORRAL_BROKER_URL")
    return url or (broker if broker.startswith(("redis://", "rediss://")) else "")


def _auth_mode(environ: Mapping[str, str]) -> str:
    """CORRAL_AUTH_REQUIRED as the gateway reads it: unset = auto (remote clients), 1 = always, 0 = off."""
    required = env_str(environ, "CORRAL_AUTH_REQUIRED").lower()
    if not required:
        return "auto"
    return "off" if required in {"0", "f", "false", "no", "off"} else "always"


def _limit(environ: Mapping[str, str], key: str) -> int | None:
    """A quota variable: a whole number, or None when unset, empty or not a number."""
    value = env_int(environ, key, -1)
    return value if value >= 0 else None


def _default_quota(environ: Mapping[str, str]) -> Quota:
    """CORRAL_QUOTA_TOKENS_PER_HOUR and CORRAL_QUOTA_REQUESTS_PER_MINUTE: every user's default limits."""
    return Quota(_limit(environ, "CORRAL_QUOTA_TOKENS_PER_HOUR"), _limit(environ, "CORRAL_QUOTA_REQUESTS_PER_MINUTE"))


@dataclass(frozen=True)
class AuthSettings:
    """Where the tables, the pepper and the token signing key live, and the limits."""

    database_url: str
    home: Path
    pepper: str = ""  # CORRAL_AUTH_PEPPER; empty means a generated file under CORRAL_HOME
    signing_key_file: Path | None = None
    redis_url: str = ""
    limits: Limits = field(default_factory=Limits)
    signature_window_seconds: int = 300
    token_ttl_seconds: int = 300
    signin_ttl_seconds: int = 600
    issuer: str = "corral"
    auth_mode: str = "auto"  # who needs a credential for a registry token: auto (remote clients), always, off
    debug: bool = False
    telemetry: Telemetry = Telemetry()
    quota: Quota = Quota()  # every user's limits unless set for that user


    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "AuthSettings":
        """CORRAL_DATABASE_URL (default SQLite ``$CORRAL_HOME/auth.sqlite``), CORRAL_AUTH_* (CORRAL_AUTH_REQUIRED too),
        CORRAL_RATE_LIMIT_*."""
        env = current_env(environ)
        home = corral_home(env)
        key_file = env_str(env, "CORRAL_AUTH_SIGNING_KEY_FILE")
        limits = Limits(
            rate_per_second=env_positive(env, "CORRAL_RATE_LIMIT_RPS", 20.0),
            burst=env_int(env, "CORRAL_RATE_LIMIT_BURST", 200),
            lockout_failures=env_int(env, "CORRAL_AUTH_LOCKOUT_FAILURES", 20),
            lockout_seconds=env_int(env, "CORRAL_AUTH_LOCKOUT_SECONDS", 900),
        )
        return cls(
            database_url=env_str(env, "CORRAL_DATABASE_URL") or f"sqlite:///{home / 'auth.sqlite'}",
            home=home,
            pepper=env_str(env, "CORRAL_AUTH_PEPPER"),
            signing_key_file=Path(key_file).expanduser() if key_file else None,
            redis_url=_redis_url(env),
            limits=limits, auth_mode=_auth_mode(env), quota=_default_quota(env),
            debug=env_bool(env, "OLLAMA_DEBUG"), telemetry=Telemetry.from_env(env),
        )
