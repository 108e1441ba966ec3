"""JSON and time encoding that matches Go's output byte for byte where it matters."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import lru_cache

_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
               ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def go_dumps(value: object) -> str:
    """Compact JSON with Go's HTML escaping (those characters only ever occur inside strings)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in _GO_ESCAPES:
        text = text.replace(raw, escaped)
    return text


@lru_cache(maxsize=8)
def _seconds(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def rfc3339nano(moment: datetime) -> str:
    """RFC3339 with a fraction trimmed of trailing zeros; UTC is written as ``Z``."""
    base = _seconds(moment.replace(microsecond=0))  # a stream's chunks share their second: formatted once
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    if fraction:
        base += "." + fraction
    offset = moment.utcoffset()
    if offset is None or offset.total_seconds() == 0 and moment.tzinfo is timezone.utc:
        return base + "Z"
    total = int(offset.total_seconds())
    sign = "+" if total >= 0 else "-"
    hours, minutes = divmod(abs(total) // 60, 60)
    return f"{base}{sign}{hours:02d}:{minutes:02d}"


def utc_now() -> str:
    """``created_at`` as Ollama writes it."""
    return rfc3339nano(datetime.now(timezone.utc))


def local_time(timestamp: float) -> str:
    """``modified_at``/``expires_at``: local zone with its offset."""
    return rfc3339nano(datetime.fromtimestamp(timestamp).astimezone())
