"""Remote models: the ``:cloud`` / ``:TAG-cloud`` name suffixes and remote host URLs, as Ollama spells them.

A remote model runs on another corral (or Ollama): its manifest's config carries ``remote_host`` (a base
URL) and ``remote_model`` (the name there). A name with a cloud suffix means "the configured cloud's
model of that name", with or without a local record (Ollama's ``modelref``).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from corral_common.errors import BadRequest

CLOUD, LOCAL = "cloud", "local"
DEFAULT_REMOTE_PORT = 11434


@dataclass(frozen=True)
class ModelRef:
    """A model name with its source suffix taken off: ``gpt-oss:20b-cloud`` → base ``gpt-oss:20b``, cloud."""

    original: str
    base: str
    source: str = ""  # "cloud", "local" or "" (unspecified)

    @property
    def cloud(self) -> bool:
        """Whether the name asks for the configured cloud."""
        return self.source == CLOUD

    def pull_name(self) -> str:
        """The name a pulled cloud model is stored under: ``base-cloud`` with a tag, ``base:cloud`` without."""
        if not self.cloud:
            return self.base
        return f"{self.base}-cloud" if has_explicit_tag(self.base) else f"{self.base}:cloud"


def has_explicit_tag(name: str) -> bool:
    """Whether ``name`` names a tag (a colon after the last slash; a registry port does not count)."""
    return name.rfind(":") > name.rfind("/")


def _suffix(raw: str) -> tuple[str, str]:
    """The name without its source suffix, and the source ("" when none)."""
    at = raw.rfind(":")
    if at < 0:
        return raw, ""
    suffix = raw[at + 1:].strip()
    if suffix.lower() in (CLOUD, LOCAL):
        return raw[:at], suffix.lower()
    if "/" not in suffix and suffix.lower().endswith("-cloud"):
        return raw[:at + 1] + suffix[:-len("-cloud")], CLOUD
    return raw, ""


def parse_ref(raw: str) -> ModelRef:
    """Ollama's ParseRef: ``:cloud``, ``:local`` and ``:TAG-cloud`` suffixes; 400 for both at once."""
    raw = raw.strip()
    base, source = _suffix(raw)
    if source and _suffix(base)[1]:
        raise BadRequest(f'use either :local or :cloud, not both: "{raw}"')
    return ModelRef(raw, base, source)


def remote_url(raw: str) -> str:
    """Ollama's remoteURL: a scheme (http) and a port (11434, whatever the scheme) added where missing, the
    path cleaned; 400 ``bad remote`` for what cannot be a base URL."""
    raw = raw.strip()
    if not raw:
        raise BadRequest("bad remote")
    if raw.startswith("/"):
        return f"http://localhost:{DEFAULT_REMOTE_PORT}{posixpath.normpath(raw)}"
    if "://" not in raw:
        raw = "http://" + raw
    if raw in ("http://ollama.com", "https://ollama.com"):
        raw = "https://ollama.com:443"
    parts = urlsplit(raw)
    try:
        port = parts.port
    except ValueError:
        raise BadRequest("bad remote") from None
    if parts.scheme not in ("http", "https") or parts.query or parts.fragment or parts.username:
        raise BadRequest("bad remote")
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    path = posixpath.normpath(parts.path) if parts.path else ""
    return urlunsplit((parts.scheme, f"{host}:{port or DEFAULT_REMOTE_PORT}", "" if path == "/" else path, "", ""))
