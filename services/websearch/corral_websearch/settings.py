"""Websearch service settings, read when constructed (never at import)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from corral_common.env import corral_home, current_env, env_bool, env_int, env_positive, env_str
from corral_common.jobs import JobTiming
from corral_common.logs import Telemetry
from corral_common.tasks import QueueSettings

PROVIDERS = ("index", "searxng", "brave")
BRAVE_URL = "https://api.search.brave.com/res/v1/web/search"
JOB_PICKUP_SECONDS = 60.0  # an index job nobody takes by then is a 503


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class FetchLimits:
    """Caps on one outbound fetch (security.md §4.5): time, size and redirects."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0  # time to first byte, and the longest silence after it
    total_timeout: float = 30.0
    max_bytes: int = 5 * 1024 * 1024  # counted after decompression
    max_redirects: int = 5
    max_content_chars: int = 100_000
    concurrency: int = 8

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "FetchLimits":
        """CORRAL_WEBFETCH_TIMEOUT, _READ_TIMEOUT, _MAX_BYTES, _MAX_REDIRECTS."""
        return cls(
            read_timeout=env_positive(env, "CORRAL_WEBFETCH_READ_TIMEOUT", cls.read_timeout),
            total_timeout=env_positive(env, "CORRAL_WEBFETCH_TIMEOUT", cls.total_timeout),
            max_bytes=max(1024, env_int(env, "CORRAL_WEBFETCH_MAX_BYTES", cls.max_bytes)),
            max_redirects=max(0, env_int(env, "CORRAL_WEBFETCH_MAX_REDIRECTS", cls.max_redirects)),
        )


@dataclass(frozen=True)
class WebsearchSettings:
    """Which search provider answers, where the index lives, and what web_fetch may reach."""

    home: Path
    provider: str = "index"
    searxng_url: str = ""
    brave_api_key: str = ""
    brave_url: str = BRAVE_URL
    database_url: str = ""
    allow: tuple[str, ...] = ()
    limits: FetchLimits = field(default_factory=FetchLimits)
    cache_ttl: float = 600.0
    index_fetched: bool = True
    debug: bool = False
    telemetry: Telemetry = Telemetry()
    queue: QueueSettings | None = None  # None: the embedded broker under ``home``
    jobs: JobTiming = JobTiming(pickup_timeout=JOB_PICKUP_SECONDS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "WebsearchSettings":
        """The documented contract: CORRAL_SEARCH_PROVIDER, CORRAL_SEARXNG_URL, CORRAL_BRAVE_API_KEY,
        CORRAL_WEBFETCH_ALLOW, plus the index database and cache knobs."""
        env = current_env() if environ is None else environ
        searxng = env_str(env, "CORRAL_SEARXNG_URL")
        provider = env_str(env, "CORRAL_SEARCH_PROVIDER").lower() or ("searxng" if searxng else "index")
        return cls(
            home=corral_home(env),
            provider=provider,
            searxng_url=searxng,
            brave_api_key=env_str(env, "CORRAL_BRAVE_API_KEY"),
            brave_url=env_str(env, "CORRAL_BRAVE_URL") or BRAVE_URL,
            database_url=env_str(env, "CORRAL_WEBSEARCH_DATABASE_URL") or env_str(env, "CORRAL_DATABASE_URL"),
            allow=_split(env_str(env, "CORRAL_WEBFETCH_ALLOW")),
            limits=FetchLimits.from_env(env),
            cache_ttl=env_positive(env, "CORRAL_WEBSEARCH_CACHE_TTL", 600.0, allow_zero=True),
            index_fetched=env_bool(env, "CORRAL_WEBSEARCH_INDEX_FETCHED", True),
            debug=env_bool(env, "OLLAMA_DEBUG"), telemetry=Telemetry.from_env(env),
            queue=QueueSettings.from_env(env),
            jobs=JobTiming.from_env(env, pickup_timeout=JOB_PICKUP_SECONDS),
        )

    def celery_queue(self) -> QueueSettings:
        """Where index jobs travel: CORRAL_BROKER_URL / CORRAL_RESULT_BACKEND, else files under CORRAL_HOME/celery."""
        return self.queue or QueueSettings(self.home / "celery")

    def job_timing(self) -> JobTiming:
        """How long a caller waits for the websearch worker to take an index job, and to hear from it."""
        return self.jobs

    def index_url(self) -> str:
        """The index database: the configured URL, else SQLite under CORRAL_HOME."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'websearch' / 'index.sqlite'}"
