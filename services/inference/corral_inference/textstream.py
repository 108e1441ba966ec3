"""Turn a token byte stream into text pieces: UTF-8 safe, with stop strings held back and cut."""

from __future__ import annotations

import codecs

from corral_common.text import partial_suffix


class TextStream:
    """Accumulates token bytes; ``push`` returns text safe to emit and whether a stop string was hit."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""

    def push(self, data: bytes) -> tuple[str, bool]:
        """Add bytes; return (text to emit now, stopped)."""
        self.pending += self.decoder.decode(data)
        cut = self._first_stop()
        if cut is not None:
            text, self.pending = self.pending[:cut], ""
            return text, True
        keep = self._held_suffix()
        text = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep:]
        return text, False

    def flush(self) -> str:
        """Whatever is left at the end of generation."""
        text = self.pending + self.decoder.decode(b"", final=True)
        self.pending = ""
        return text

    def _first_stop(self) -> int | None:
        """Index of the earliest complete stop string in the pending text."""
        hits = [i for i in (self.pending.find(stop) for stop in self.stops) if i >= 0]
        return min(hits) if hits else None

    def _held_suffix(self) -> int:
        """Length of the longest pending suffix that could still grow into a stop string."""
        return max((partial_suffix(self.pending, stop) for stop in self.stops), default=0)
