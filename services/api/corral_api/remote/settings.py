"""Where remote models may run and who this corral is to them, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from corral_common.env import current_env, env_bool, env_str
from corral_common.errors import BadRequest
from corral_common.identity import identity_path
from corral_common.remote import remote_url


@dataclass(frozen=True)
class RemoteSettings:
    """The cloud (``CORRAL_CLOUD_URL``), other hosts remote models may name, and the local identity."""

    cloud_url: str = ""
    hosts: tuple[str, ...] = ()  # host or host:port entries of CORRAL_REMOTE_HOSTS
    allow_private: bool = False
    api_key: str = ""
    identity: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "RemoteSettings":
        """CORRAL_CLOUD_URL, CORRAL_REMOTE_HOSTS, CORRAL_REMOTE_ALLOW_PRIVATE, OLLAMA_API_KEY, CORRAL_HOME."""
        env = current_env(environ)
        return cls(cloud_url=_cloud(env_str(env, "CORRAL_CLOUD_URL")),
                   hosts=tuple(h.strip().lower() for h in env_str(env, "CORRAL_REMOTE_HOSTS").split(",") if h.strip()),
                   allow_private=env_bool(env, "CORRAL_REMOTE_ALLOW_PRIVATE"),
                   api_key=env_str(env, "OLLAMA_API_KEY"), identity=identity_path(env))


def _cloud(raw: str) -> str:
    """The cloud's base URL as remote hosts are written; a value that is no URL counts as unset."""
    if not raw:
        return ""
    try:
        return remote_url(raw)
    except BadRequest:
        return ""
