"""Human-readable sizes, counts, durations and times, as Ollama's ``format`` package writes them."""

from __future__ import annotations

import math
from datetime import UTC, datetime

KB, MB, GB, TB = 1000, 1000**2, 1000**3, 1000**4
_BYTE_UNITS = ((TB, "TB"), (GB, "GB"), (MB, "MB"), (KB, "KB"))
_SECOND_NS = 1_000_000_000
_MINUTE_NS = 60 * _SECOND_NS


def now_utc() -> datetime:
    """The current time, aware, for relative times."""
    return datetime.now(UTC)


def human_bytes(size: int) -> str:
    """Decimal units: ``4.7 GB``, ``637 MB``, ``98 MB``, ``512 B``."""
    scale = next(((limit, unit) for limit, unit in _BYTE_UNITS if size >= limit), None)
    if scale is None:
        return f"{size} B"
    value, unit = size / scale[0], scale[1]
    if value >= 10 or value == math.trunc(value):
        return f"{int(value)} {unit}"
    return f"{value:.1f} {unit}"


def human_number(count: int) -> str:
    """Parameter counts: ``8B``, ``3.2B``, ``137M``, ``22.57M``, ``12K``."""
    if count >= 1_000_000_000:
        value = count / 1_000_000_000
        return f"{value:.0f}B" if value == math.floor(value) else f"{value:.1f}B"
    if count >= 1_000_000:
        value = count / 1_000_000
        return f"{value:.0f}M" if value == math.floor(value) else f"{value:.2f}M"
    if count >= 1000:
        return f"{count / 1000:.0f}K"
    return str(count)


def human_duration(seconds: float) -> str:
    """An approximate span: ``Less than a second``, ``About a minute``, ``4 days``."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = _round_half_away(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def _round_half_away(value: float) -> int:
    """Go's math.Round (halves away from zero), for non-negative values."""
    return math.floor(value + 0.5)


def human_time(when: datetime | None, now: datetime, zero: str = "Never") -> str:
    """``4 days ago``, ``4 minutes from now``, ``Forever`` beyond 20 years ahead, ``zero`` when unset."""
    if when is None:
        return zero
    delta = (now - when).total_seconds()
    if _go_div(_go_trunc(delta / 3600), 24 * 365) < -20:
        return "Forever"
    if delta < 0:
        return human_duration(-delta) + " from now"
    return human_duration(delta) + " ago"


def _go_trunc(value: float) -> int:
    return int(value)  # int() truncates toward zero, like Go's conversion


def _go_div(a: int, b: int) -> int:
    """Integer division truncating toward zero, as Go does."""
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b >= 0) else -quotient


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp from the API; Go's zero time and missing values give None."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return None if parsed.year <= 1 else parsed


def go_duration(ns: int) -> str:
    """A nanosecond count as Go's ``time.Duration.String``: ``10.706818083s``, ``130.079ms``, ``1h0m0s``."""
    if ns == 0:
        return "0s"
    sign, value = ("-" if ns < 0 else ""), abs(ns)
    if value < 1000:
        return f"{sign}{value}ns"
    if value < 1_000_000:
        return f"{sign}{_fraction(value, 3)}µs"
    if value < _SECOND_NS:
        return f"{sign}{_fraction(value, 6)}ms"
    text = f"{_fraction(value % _MINUTE_NS, 9)}s"
    minutes = value // _MINUTE_NS
    if minutes:
        hours, minutes = divmod(minutes, 60)
        text = f"{hours}h{minutes}m{text}" if hours else f"{minutes}m{text}"
    return sign + text


def _fraction(value: int, precision: int) -> str:
    """``value / 10**precision`` with trailing zeros (and a bare point) dropped."""
    whole, fraction = divmod(value, 10**precision)
    digits = f"{fraction:0{precision}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def processor(size: int, size_vram: int) -> str:
    """The PROCESSOR column of ``ps``: ``100% GPU``, ``100% CPU``, ``48%/52% CPU/GPU``."""
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = _round_half_away((size - size_vram) / size * 100)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def until(expires: datetime | None, now: datetime) -> str:
    """The UNTIL column of ``ps``: ``4 minutes from now``, ``Forever``, or ``Stopping...`` once past."""
    if expires is None or now > expires:
        return "Stopping..."
    return human_time(expires, now)
