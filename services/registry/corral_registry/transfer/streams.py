"""How many parts of a download run at once: two to start, more only while more paid off.

Ollama runs every part (up to 16) at once, which hides a long round trip. On a fast link (loopback, a LAN) the
parts then only compete for the CPU, and because they arrive side by side, about 15/16 of the blob can only be
hashed after its last byte has arrived (sha256 runs in offset order). So parts start in offset order, two at a
time; after each interval whose throughput beat the best one so far by a fifth, the count doubles (up to the
number of parts), and the first interval that does not settles it back on the count that last helped.
"""

from __future__ import annotations

START = 2
GAIN = 1.2  # what one more doubling must add to the throughput to be kept
INTERVAL_SECONDS = 0.5  # how long each count runs before it is judged


class Ramp:
    """The number of parts to run at once, stepped once per interval from the throughput measured in it."""

    def __init__(self, limit: int, start: int = START) -> None:
        self.limit = max(limit, 1)
        self.streams = min(start, self.limit)
        self.settled = self.streams >= self.limit
        self._best: float | None = None  # throughput of the count that last paid off
        self._kept = self.streams
        self._warm = False

    def step(self, rate: float) -> int:
        """The count for the next interval, given the bytes per second of the one that just ended."""
        if self.settled:
            return self.streams
        if not self._warm:  # the first interval holds connection setup: it would make any doubling look good
            self._warm = True
            return self.streams
        if self._best is not None and rate < self._best * GAIN:
            self.streams, self.settled = self._kept, True
        elif self.streams >= self.limit:
            self.settled = True
        else:
            self._best, self._kept = rate, self.streams
            self.streams = min(self.streams * 2, self.limit)
        return self.streams
