"""Go-style durations (``5m``, ``1h30m``, ``300ms``) and Ollama's ``keep_alive`` semantics."""

from __future__ import annotations

import math
import re

FOREVER_NS = 2**63 - 1
_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
             "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class InvalidDuration(ValueError):
    """A value that is not a valid keep_alive / Go duration."""


def parse_go_duration(text: str) -> int:
    """Parse a Go duration string into nanoseconds (``"5"`` without a unit is an error)."""
    raw, body, sign = text, text, 1
    if body[:1] in "+-" and body:
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    if body == "0":
        return 0
    if not body:
        raise InvalidDuration(f'time: invalid duration "{raw}"')
    total, pos = 0.0, 0
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None:
            if re.fullmatch(r"[\d.]+", body[pos:]):
                raise InvalidDuration(f'time: missing unit in duration "{raw}"')
            raise InvalidDuration(f'time: invalid duration "{raw}"')
        total += float(match.group(1)) * _UNITS_NS[match.group(2)]
        pos = match.end()
    if total > FOREVER_NS:
        raise InvalidDuration(f'time: invalid duration "{raw}"')  # Go's message for an overflow
    return sign * int(total)


def _seconds_ns(seconds: int | float) -> int:
    """Seconds as nanoseconds; a number beyond Go's Duration (about 292 years either way) is refused."""
    if (isinstance(seconds, float) and not math.isfinite(seconds)) or abs(seconds) * 1_000_000_000 > FOREVER_NS:
        shown = str(seconds) if len(str(seconds)) <= 24 else f"{str(seconds)[:20]}..."
        raise InvalidDuration(f"keep_alive {shown} is out of range: at most {FOREVER_NS // 10**9} seconds"
                              " (a negative number such as -1 keeps the model loaded forever)")
    return int(seconds * 1_000_000_000)


def parse_keep_alive(value: object) -> int | None:
    """keep_alive from JSON: number = seconds, string = Go duration; negative → forever; None → unset."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidDuration("Unsupported type: 'bool'")
    if isinstance(value, (int, float)):
        ns = _seconds_ns(value)
    elif isinstance(value, str):
        ns = parse_go_duration(value)
    else:
        raise InvalidDuration(f"Unsupported type: '{type(value).__name__}'")
    return FOREVER_NS if ns < 0 else ns


def parse_env_duration(text: str, default_ns: int) -> int:
    """OLLAMA_KEEP_ALIVE style: Go duration or integer seconds; negative = forever."""
    text = text.strip().strip("\"'")
    if not text:
        return default_ns
    try:
        if re.fullmatch(r"-?\d+", text):
            return parse_keep_alive(int(text)) or 0
        return parse_keep_alive(text) or 0
    except InvalidDuration:
        return default_ns
