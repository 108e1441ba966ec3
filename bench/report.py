"""Where every benchmark's results go: one Markdown and one JSON file under each of several names."""

from __future__ import annotations

import json
from pathlib import Path

from corral_common.fsio import atomic_write


def target_line(check: dict) -> str:
    """A checked target as a Markdown list item (``item`` may be absent: targets reported for another issue)."""
    mark = {True: "met", False: "MISSED", None: "n/a"}[check["met"]]
    item = f"item {check['item']}: " if check.get("item") else ""
    return f"- {item}{check['target']}: **{mark}** ({check['detail']})"


def machine_line(meta: dict) -> str:
    """The sentence that says what the figures were measured on, and how busy it was."""
    return (f"Machine: {meta['cpu']}, {meta['cpus']} CPUs; load average {meta['loadavg_start']} at the start, "
            f"{meta['loadavg_end']} at the end (other work on the machine makes the figures noisy).")


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
