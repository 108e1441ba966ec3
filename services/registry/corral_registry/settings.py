"""Registry service settings, read when constructed (never at import)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from corral_common.env import (HostPort, corral_home, current_env, env_bool, env_float, env_int, env_str,
                               models_dir)
from corral_common.jobs import JobTiming
from corral_common.logs import Telemetry
from corral_common.tasks import QueueSettings

DEFAULT_REGISTRY_HOST = "127.0.0.1:5000"
DEFAULT_LAYOUT_HOST = "registry.ollama.ai"


INLINE_WORKER_ENV = "CORRAL_REGISTRY_INLINE_WORKER"


def inline_worker_enabled(environ: Mapping[str, str]) -> bool:
    """CORRAL_REGISTRY_INLINE_WORKER=1: the registry service runs its job worker as a thread of its own."""
    return env_bool(environ, INLINE_WORKER_ENV)


def parse_listen(value: str) -> HostPort:
    """``host:port`` of CORRAL_REGISTRY_HOST (default 127.0.0.1:5000; ``:5000`` binds every interface)."""
    value = value.strip() or DEFAULT_REGISTRY_HOST
    if "://" in value:
        value = value.split("://", 1)[1]
    parts = urlsplit(f"//{value}")
    host = parts.hostname or ("0.0.0.0" if value.startswith(":") else "127.0.0.1")
    try:
        port = parts.port or 5000
    except ValueError:
        port = 5000
    return HostPort("http", host, port)


@dataclass(frozen=True)
class TransferSettings:
    """How pulls and pushes behave (Ollama's numbers by default; tests shrink them)."""

    part_min: int = 100_000_000
    part_max: int = 1_000_000_000
    max_parts: int = 16
    retries: int = 6
    backoff_seconds: float = 1.0
    stall_seconds: float = 30.0
    allow_hosts: tuple[str, ...] = ()
    allow_loopback: bool = True
    api_key: str = ""
    noprune: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "TransferSettings":
        """CORRAL_TRANSFER_* knobs, CORRAL_REGISTRY_ALLOW(_LOOPBACK), CORRAL_REGISTRY_API_KEY, OLLAMA_NOPRUNE."""
        allow = tuple(h.strip().lower() for h in env_str(env, "CORRAL_REGISTRY_ALLOW").split(",") if h.strip())
        return cls(
            part_min=env_int(env, "CORRAL_TRANSFER_PART_MIN", cls.part_min),
            part_max=env_int(env, "CORRAL_TRANSFER_PART_MAX", cls.part_max),
            retries=env_int(env, "CORRAL_TRANSFER_RETRIES", cls.retries),
            backoff_seconds=env_float(env, "CORRAL_TRANSFER_BACKOFF", cls.backoff_seconds),
            stall_seconds=env_float(env, "CORRAL_TRANSFER_STALL_SECONDS", cls.stall_seconds),
            allow_hosts=allow,
            allow_loopback=env_bool(env, "CORRAL_REGISTRY_ALLOW_LOOPBACK", True),
            api_key=env_str(env, "CORRAL_REGISTRY_API_KEY"),
            noprune=env_bool(env, "OLLAMA_NOPRUNE"),
        )


@dataclass(frozen=True)
class StorageSettings:
    """Where the /v2 registry keeps blobs and manifests: a directory, an S3 bucket, or memory."""

    driver: str = "filesystem"
    root: Path = Path("registry")
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""
    redirect: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str], root: Path) -> "StorageSettings":
        """CORRAL_REGISTRY_STORAGE (filesystem|s3|inmemory; s3 when CORRAL_S3_BUCKET is set) and CORRAL_S3_*."""
        bucket = env_str(env, "CORRAL_S3_BUCKET")
        return cls(
            driver=env_str(env, "CORRAL_REGISTRY_STORAGE") or ("s3" if bucket else "filesystem"),
            root=root, s3_bucket=bucket, s3_prefix=env_str(env, "CORRAL_S3_PREFIX"),
            s3_endpoint_url=env_str(env, "CORRAL_S3_ENDPOINT_URL"),
            s3_region=env_str(env, "AWS_DEFAULT_REGION") or env_str(env, "AWS_REGION"),
            redirect=env_bool(env, "CORRAL_REGISTRY_REDIRECT", True),
        )


@dataclass(frozen=True)
class TokenAuthSettings:
    """Token auth of the /v2 registry against corral's auth service; off while ``realm`` is empty."""

    realm: str = ""  # the auth service's token endpoint, e.g. http://127.0.0.1:11437/token
    jwks_url: str = ""  # default: jwks.json beside the realm
    issuer: str = "corral"
    service: str = "corral-registry"
    challenge_realm: str = ""  # what 401s name; default: this registry's own /token relay

    @property
    def enabled(self) -> bool:
        """Whether requests need a token."""
        return bool(self.realm)

    def jwks(self) -> str:
        """Where the verification keys are published."""
        from urllib.parse import urljoin

        return self.jwks_url or urljoin(self.realm, "jwks.json")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "TokenAuthSettings":
        """CORRAL_REGISTRY_AUTH_REALM (switches it on), _JWKS_URL, _ISSUER, _SERVICE, _CHALLENGE_REALM."""
        return cls(realm=env_str(env, "CORRAL_REGISTRY_AUTH_REALM"),
                   jwks_url=env_str(env, "CORRAL_REGISTRY_AUTH_JWKS_URL"),
                   issuer=env_str(env, "CORRAL_REGISTRY_AUTH_ISSUER") or cls.issuer,
                   service=env_str(env, "CORRAL_REGISTRY_AUTH_SERVICE") or cls.service,
                   challenge_realm=env_str(env, "CORRAL_REGISTRY_AUTH_CHALLENGE_REALM"))


@dataclass(frozen=True)
class RegistrySettings:
    """The model store, the /v2 registry it may serve, its metadata database and transfer knobs."""

    models_dir: Path
    debug: bool = False
    telemetry: Telemetry = Telemetry()
    home: Path = field(default_factory=lambda: Path.home() / ".corral")
    database_url: str = ""
    registry_data: Path = field(default_factory=lambda: Path.home() / ".corral" / "registry")
    registry_listen: HostPort = field(default_factory=lambda: parse_listen(""))
    layout_host: str = DEFAULT_LAYOUT_HOST
    storage: StorageSettings = field(default_factory=StorageSettings)
    transfer: TransferSettings = field(default_factory=TransferSettings)
    token_auth: TokenAuthSettings = field(default_factory=TokenAuthSettings)
    serve_store: bool = True
    serve_v2: bool = False
    gc_grace_seconds: float = 3600.0
    gc_interval_seconds: float = 0.0
    upload_max_age_seconds: float = 7 * 24 * 3600.0
    queue: QueueSettings | None = None  # None: the embedded broker under ``home``
    inline_worker: bool = False
    jobs: JobTiming = JobTiming()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "RegistrySettings":
        """Build from OLLAMA_MODELS, OLLAMA_DEBUG, CORRAL_HOME, CORRAL_DATABASE_URL and CORRAL_REGISTRY_*."""
        env = current_env(environ)
        home = corral_home(env)
        data = env_str(env, "CORRAL_REGISTRY_DATA")
        registry_data = Path(data).expanduser() if data else home / "registry"
        return cls(
            models_dir=models_dir(env), debug=env_bool(env, "OLLAMA_DEBUG"), home=home,
            telemetry=Telemetry.from_env(env),
            database_url=env_str(env, "CORRAL_DATABASE_URL"),
            registry_data=registry_data,
            registry_listen=parse_listen(env_str(env, "CORRAL_REGISTRY_HOST")),
            layout_host=env_str(env, "CORRAL_REGISTRY_LAYOUT_HOST") or DEFAULT_LAYOUT_HOST,
            storage=StorageSettings.from_env(env, registry_data),
            transfer=TransferSettings.from_env(env),
            token_auth=TokenAuthSettings.from_env(env),
            serve_v2=env_bool(env, "CORRAL_REGISTRY_SERVE_V2"),
            gc_grace_seconds=env_float(env, "CORRAL_GC_GRACE_SECONDS", 3600.0),
            gc_interval_seconds=env_float(env, "CORRAL_GC_INTERVAL_SECONDS", 0.0),
            queue=QueueSettings.from_env(env),
            inline_worker=inline_worker_enabled(env),
            jobs=JobTiming.from_env(env),
        )

    def standalone(self) -> "RegistrySettings":
        """The same settings for ``corral registry``: the /v2 protocol only, metadata beside the data."""
        from dataclasses import replace

        return replace(self, serve_store=False, serve_v2=True)

    def celery_queue(self) -> QueueSettings:
        """Where jobs travel: CORRAL_BROKER_URL / CORRAL_RESULT_BACKEND, else files under CORRAL_HOME/celery."""
        return self.queue or QueueSettings(self.home / "celery")

    def job_timing(self) -> JobTiming:
        """How long callers wait for a worker to take a job, and to hear from it (CORRAL_JOB_*)."""
        return self.jobs

    def service_database_url(self) -> str:
        """The store service's database: CORRAL_DATABASE_URL, else SQLite under CORRAL_HOME."""
        return self.database_url or f"sqlite:///{self.home / 'registry.db'}"

    def registry_database_url(self) -> str:
        """The /v2 registry's database: CORRAL_DATABASE_URL, else SQLite beside its data."""
        return self.database_url or f"sqlite:///{self.registry_data / 'registry.db'}"
