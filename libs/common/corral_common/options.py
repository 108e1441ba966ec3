"""Request ``options``: Ollama's table of runner and sampling options, typed and bounded."""

from __future__ import annotations

from typing import Any

from corral_common.errors import BadRequest
from corral_common.logs import get_logger
from corral_common.modelfile import OPTION_TYPES

log = get_logger("corral.options")

_TYPE_NAMES = {int: "integer", float: "float32", bool: "boolean", str: "string"}
# Bounds that keep llama.cpp away from integer overflows (security.md LCP-3).
_BOUNDS: dict[str, tuple[float, float]] = {
    "num_ctx": (1, 1 << 20), "num_batch": (1, 1 << 16), "num_keep": (-1, 1 << 20),
    "num_predict": (-2, 1 << 24), "top_k": (-1, 1 << 20), "repeat_last_n": (-1, 1 << 20),
    "num_thread": (0, 1024), "num_gpu": (-1, 1 << 16), "main_gpu": (0, 1024),
    "seed": (-(1 << 63), (1 << 63) - 1), "top_p": (0, 1), "min_p": (0, 1), "typical_p": (0, 1),
    "temperature": (0, 100), "repeat_penalty": (0, 100),
    "presence_penalty": (-100, 100), "frequency_penalty": (-100, 100),
    "mirostat": (0, 2), "mirostat_tau": (0, 100), "mirostat_eta": (0, 100),
}
RUNNER_OPTIONS = frozenset({"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread"})


def _coerce(key: str, value: Any, kind: type) -> Any:
    """Check one option's JSON type the way Ollama's FromMap does."""
    if kind is list:
        if not isinstance(value, list):
            raise BadRequest(f'option "{key}" must be of type array')
        if not all(isinstance(v, str) for v in value):
            raise BadRequest(f'option "{key}" must be of an array of strings')
        return list(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise BadRequest(f'option "{key}" must be of type boolean')
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f'option "{key}" must be of type {_TYPE_NAMES[kind]}')
    try:
        return int(value) if kind is int else float(value)
    except OverflowError:  # an integer too large for any float (1 and 400 zeros)
        raise BadRequest(f'option "{key}" is out of range for a float32') from None


def _check_bounds(key: str, value: Any) -> None:
    """Reject values that are out of the range llama.cpp can take safely."""
    low, high = _BOUNDS.get(key, (None, None))
    if low is not None and not low <= value <= high:
        raise BadRequest(f'option "{key}" must be between {low:g} and {high:g}, got {value}')


def validate_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Typed, bounded options; unknown keys are logged and ignored, ``null`` values dropped."""
    result: dict[str, Any] = {}
    for key, value in (options or {}).items():
        kind = OPTION_TYPES.get(key)
        if kind is None:
            log.warning("invalid option provided", option=key)
            continue
        if value is None:
            continue
        kind = getattr(kind, "__origin__", kind)
        typed = _coerce(key, value, kind)
        if kind in (int, float):
            _check_bounds(key, typed)
        result[key] = typed
    return result


def merge_options(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """Later layers override earlier ones (defaults ← Modelfile PARAMETERs ← request)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer or {})
    return merged
