"""Gateway settings: where it listens, which origins may call it, where the services are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from corral_common.env import HostPort, current_env, env_bool, env_str, parse_ollama_host
from corral_common.logs import Telemetry

DEFAULT_ORIGINS = tuple(
    f"{scheme}://{host}{port}"
    for host in ("localhost", "127.0.0.1", "0.0.0.0")
    for scheme in ("http", "https")
    for port in ("", ":*")
) + ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")
DEFAULT_WEBSEARCH_URL = "http://127.0.0.1:11438"


@dataclass(frozen=True)
class ApiSettings:
    """Everything the gateway reads from the environment."""

    listen: HostPort
    inference_url: str
    registry_url: str
    websearch_url: str = DEFAULT_WEBSEARCH_URL
    origins: tuple[str, ...] = DEFAULT_ORIGINS
    debug: bool = False
    telemetry: Telemetry = Telemetry()
    ready_skip: tuple[str, ...] = ()  # services /readyz leaves out (serve's lazy ones: probing would start them)
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ApiSettings":
        """OLLAMA_HOST, OLLAMA_ORIGINS (appended to the defaults), CORRAL_{INFERENCE,REGISTRY,WEBSEARCH}_URL."""
        env = current_env(environ)
        extra = tuple(o.strip() for o in env_str(env, "OLLAMA_ORIGINS").split(",") if o.strip())
        return cls(
            listen=parse_ollama_host(env_str(env, "OLLAMA_HOST")),
            inference_url=env_str(env, "CORRAL_INFERENCE_URL", "http://127.0.0.1:11435"),
            registry_url=env_str(env, "CORRAL_REGISTRY_URL", "http://127.0.0.1:11436"),
            websearch_url=env_str(env, "CORRAL_WEBSEARCH_URL", DEFAULT_WEBSEARCH_URL),
            origins=DEFAULT_ORIGINS + extra,
            debug=env_bool(env, "OLLAMA_DEBUG"), telemetry=Telemetry.from_env(env),
            ready_skip=tuple(n.strip() for n in env_str(env, "CORRAL_READYZ_SKIP").split(",") if n.strip()),
        )
