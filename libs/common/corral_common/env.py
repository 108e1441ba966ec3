"""Environment reading with Ollama's conventions (trimmed values, lenient bools), never at import."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_PORT = 11434


def env_str(environ: Mapping[str, str], key: str, default: str = "") -> str:
    """A variable with surrounding spaces and quotes removed."""
    return environ.get(key, default).strip().strip("\"'").strip()


def env_bool(environ: Mapping[str, str], key: str, default: bool = False) -> bool:
    """Go ParseBool semantics; an unparsable non-empty value counts as true, like Ollama."""
    value = env_str(environ, key).lower()
    if not value:
        return default
    return value not in {"0", "f", "false"}


def env_int(environ: Mapping[str, str], key: str, default: int) -> int:
    """An integer variable, falling back to the default when unset or invalid."""
    try:
        return int(env_str(environ, key))
    except ValueError:
        return default


def env_float(environ: Mapping[str, str], key: str, default: float) -> float:
    """A number variable, falling back to the default when unset or invalid."""
    try:
        return float(env_str(environ, key))
    except ValueError:
        return default


def env_positive(environ: Mapping[str, str], key: str, default: float, allow_zero: bool = False) -> float:
    """A number that must be above zero (a rate, a timeout; or zero too when allowed); anything else: the default."""
    value = env_float(environ, key, default)
    return value if value > 0 or (allow_zero and value == 0) else default


_BYTE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30,
               "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_BYTES = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_bytes(value: str) -> int:
    """A size such as ``4MiB``, ``64MB``, ``2G`` or ``1048576`` in bytes (K, M, G, T alone are binary)."""
    match = _BYTES.fullmatch(value.strip().lower())
    if match is None or match.group(2) not in _BYTE_UNITS:
        raise ValueError(f"invalid size {value!r}: use bytes or a number with KiB, MiB, GiB, KB, MB or GB")
    return int(float(match.group(1)) * _BYTE_UNITS[match.group(2)])


def env_bytes(environ: Mapping[str, str], key: str, default: int) -> int:
    """A size variable (``parse_bytes``), falling back to the default when unset or invalid."""
    try:
        return parse_bytes(env_str(environ, key))
    except ValueError:
        return default


@dataclass(frozen=True)
class HostPort:
    """A listen or connect address."""

    scheme: str
    host: str
    port: int

    def url(self) -> str:
        """Base URL for clients."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_ollama_host(value: str) -> HostPort:
    """Parse OLLAMA_HOST as the server does: default 127.0.0.1:11434, ``:port`` = all interfaces."""
    value = value.strip().strip("\"'").strip()
    if not value:
        return HostPort("http", "127.0.0.1", DEFAULT_PORT)
    scheme, default_port = "http", DEFAULT_PORT
    if "://" in value:
        scheme, value = value.split("://", 1)
        default_port = {"http": 80, "https": 443}.get(scheme, DEFAULT_PORT)
    parts = urlsplit(f"//{value}")
    host = parts.hostname or ("0.0.0.0" if value.startswith(":") else "127.0.0.1")
    try:
        port = parts.port or default_port
    except ValueError:
        port = DEFAULT_PORT
    return HostPort(scheme, host, port)


def corral_home(environ: Mapping[str, str]) -> Path:
    """CORRAL_HOME, default ``~/.corral``: keys, broker spool, databases."""
    value = env_str(environ, "CORRAL_HOME")
    return Path(value).expanduser() if value else Path.home() / ".corral"


def models_dir(environ: Mapping[str, str]) -> Path:
    """OLLAMA_MODELS, default ``~/.corral/models`` (same layout as Ollama's store)."""
    value = env_str(environ, "OLLAMA_MODELS")
    return Path(value).expanduser() if value else corral_home(environ) / "models"


def current_env(environ: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """``environ`` when given, else the process environment (a seam so tests can pass their own mapping)."""
    return os.environ if environ is None else environ
