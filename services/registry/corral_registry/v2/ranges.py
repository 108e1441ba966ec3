"""Single byte ranges of RFC 9110 (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``)."""

from __future__ import annotations

import re

from corral_registry.v2.errors import RegistryError

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (start, end) a Range header asks for, None for the whole object; 416 if unsatisfiable."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    unsatisfiable = RegistryError("RANGE_INVALID", {"range": header}, {"Content-Range": f"bytes */{size}"})
    if match is None or (not match.group(1) and not match.group(2)):
        raise unsatisfiable
    first, last = match.group(1), match.group(2)
    if not first:
        length = int(last)
        if length == 0 or size == 0:
            raise unsatisfiable
        return max(size - length, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        raise unsatisfiable
    return start, min(end, size - 1)


def parse_content_range(header: str | None) -> tuple[int, int] | None:
    """A PATCH's ``Content-Range: <start>-<end>`` (Ollama sends it without ``bytes``), or None."""
    if not header:
        return None
    match = re.fullmatch(r"(?:bytes[= ])?(\d+)-(\d+)(?:/\d+|/\*)?", header.strip())
    if match is None:
        raise RegistryError("RANGE_INVALID", {"content-range": header})
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise RegistryError("RANGE_INVALID", {"content-range": header})
    return start, end
