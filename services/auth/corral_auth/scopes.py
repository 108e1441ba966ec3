"""The scopes a key or a signed-in device may hold (security.md §5)."""

from __future__ import annotations

from collections.abc import Iterable

from corral_common.errors import BadRequest

INFERENCE = "inference"
MODELS_READ = "models:read"
MODELS_WRITE = "models:write"
WEB = "web"
ADMIN = "admin"
ALL = (INFERENCE, MODELS_READ, MODELS_WRITE, WEB, ADMIN)
# What a key gets when its creator names no scopes, and what a signed-in device gets by default.
DEFAULT = (INFERENCE, MODELS_READ, MODELS_WRITE, WEB)


def parse_scopes(values: Iterable[str] | None, default: tuple[str, ...] = DEFAULT) -> tuple[str, ...]:
    """Validated scopes in canonical order; unknown names are a 400."""
    if values is None:
        return default
    wanted = {v.strip() for v in values if v.strip()}
    unknown = sorted(wanted - set(ALL))
    if unknown:
        raise BadRequest(f"unknown scope {unknown[0]!r}: use {', '.join(ALL)}")
    if not wanted:
        raise BadRequest("a key needs at least one scope")
    return tuple(s for s in ALL if s in wanted)


def join(scopes: Iterable[str]) -> str:
    """The stored form: space-separated, like OAuth."""
    return " ".join(scopes)


def split(stored: str) -> tuple[str, ...]:
    """The scopes of a stored row."""
    return tuple(s for s in stored.split() if s)
