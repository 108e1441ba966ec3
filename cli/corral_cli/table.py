"""Borderless tables laid out the way Ollama's tablewriter setup prints them.

Ollama configures tablewriter v0.0.5 with no borders, left alignment, no white space and a
four-space padding: every cell is padded to its column width and followed by the padding
(so lines carry trailing spaces), header cells are followed by the padding except the last,
which gets one space, and cells wider than the column limit are word-wrapped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

PADDING = "    "
DEFAULT_MAX_WIDTH = 30
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TOO_LONG_PENALTY = 100_000


def display_width(text: str) -> int:
    """Terminal columns taken by ``text`` (wide East Asian characters count twice, ANSI codes zero)."""
    return sum(_char_width(ch) for ch in _ANSI.sub("", text))


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or ch in "\u200b\u200d":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def wrap_words(words: list[str], limit: int) -> list[list[str]]:
    """tablewriter's minimal-raggedness line breaking (one space between words)."""
    n = len(words)
    widths = [display_width(w) for w in words]
    cost, breaks = [0] * n, [n] * n
    for i in range(n - 1, -1, -1):
        if sum(widths[i:]) + (n - 1 - i) <= limit:
            continue
        best, length = None, widths[i]
        for j in range(i + 1, n):  # the line holds words[i:j]
            gap = limit - length
            candidate = gap * gap + cost[j] + (_TOO_LONG_PENALTY if length > limit else 0)
            if best is None or candidate < best:
                best, breaks[i] = candidate, j
            length += 1 + widths[j]
        cost[i] = best if best is not None else 0
    lines, i = [], 0
    while i < n:
        lines.append(words[i:breaks[i]])
        i = breaks[i]
    return lines


def wrap_string(text: str, limit: int) -> list[str]:
    """A paragraph split into lines of at most ``limit`` columns where words allow."""
    words = text.replace("\n", " ").split(" ")
    limit = max([limit, *(display_width(w) for w in words)])
    return [" ".join(line) for line in wrap_words(words, limit)]


def _cell_lines(text: str, max_width: int) -> tuple[list[str], int]:
    """A cell's printed lines and the width it needs (tablewriter's parseDimension)."""
    paragraphs = text.split("\n")
    width = min(max(display_width(p) for p in paragraphs), max_width)
    lines: list[str] = []
    needed = width
    for index, paragraph in enumerate(paragraphs):
        wrapped = wrap_string(paragraph, width)
        needed = max([needed, *(display_width(line) for line in wrapped)])
        if index:
            lines.append(" ")
        lines.extend(wrapped)
    return lines, needed


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


def render_table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None,
                 max_width: int = DEFAULT_MAX_WIDTH) -> str:
    """The table as text, one ``\\n``-terminated line per printed line; rows may be ragged."""
    widths: dict[int, int] = {}
    cells_by_row: list[list[list[str]]] = []
    for row in ([header] if header else []) + [list(r) for r in rows]:
        cells = []
        for column, text in enumerate(row):
            lines, needed = _cell_lines(text, max_width)
            widths[column] = max(widths.get(column, 0), needed)
            cells.append(lines)
        cells_by_row.append(cells)
    out: list[str] = []
    if header:
        out.append(_header_line(cells_by_row.pop(0), widths))
    for cells in cells_by_row:
        out.extend(_row_lines(cells, widths))
    return "".join(out)


def _header_line(cells: list[list[str]], widths: dict[int, int]) -> str:
    last = len(widths) - 1
    parts = []
    for column in range(last + 1):
        text = cells[column][0] if column < len(cells) else ""
        parts.append(_pad(text, widths[column]) + (" " if column == last else PADDING))
    return "".join(parts) + "\n"


def _row_lines(cells: list[list[str]], widths: dict[int, int]) -> list[str]:
    height = max((len(c) for c in cells), default=0)
    lines = []
    for index in range(height):
        parts = [_pad(c[index] if index < len(c) else "  ", widths[col]) + PADDING for col, c in enumerate(cells)]
        lines.append("".join(parts) + "\n")
    return lines
