"""Where every benchmark's results go: one Markdown and one JSON file under each of several names."""

from __future__ import annotations

import json
from pathlib import Path

from corral_common.fsio import atomic_write


def write_report(out: Path, stems: tuple[str, ...], markdown: str, data: dict) -> list[Path]:
    """``<stem>.md`` and ``<stem>.json`` in ``out`` for each stem (a timestamped one and a ``-latest`` one), each
    written whole or not at all; the paths written."""
    encoded = json.dumps(data, indent=1, default=str) + "\n"
    written = []
    for stem in stems:
        for suffix, content in ((".md", markdown), (".json", encoded)):
            path = out / f"{stem}{suffix}"
            atomic_write(path, content.encode())
            written.append(path)
    return written
