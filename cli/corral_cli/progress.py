"""Spinners and progress bars on stderr, redrawn in place like Ollama's ``progress`` package.

On a terminal a background thread redraws every state ten times a second. Elsewhere (a pipe,
a log file) a state is printed as a plain line when it is added, and again when a later state
is added or progress stops if its text changed by then (``copying file ... 0%`` → ``100%``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Protocol, TextIO

from corral_cli.formatting import human_bytes

DEFAULT_WIDTH = 80
_SPINNER = ("⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏")


class State(Protocol):
    """One line of progress."""

    def render(self, width: int) -> str:
        """The line as drawn on a terminal ``width`` columns wide."""

    def plain(self) -> str:
        """The line without animation, for non-terminal output ("" prints nothing)."""


class Spinner:
    """A status message with a spinning glyph until stopped."""

    def __init__(self, message: str) -> None:
        self.message = message
        self._started = time.monotonic()
        self._stopped = False

    def stop(self) -> None:
        """Freeze the spinner: the glyph disappears, the message stays."""
        self._stopped = True

    def render(self, width: int) -> str:
        """The message and the current glyph."""
        text = f"{self.message.strip()} " if self.message else ""
        if not self._stopped:
            text += _SPINNER[int((time.monotonic() - self._started) * 10) % len(_SPINNER)] + " "
        return text

    def plain(self) -> str:
        """The message alone."""
        return self.message.strip()


class Bar:
    """A byte-count progress bar: ``message  45% ▕████      ▏ 2.1 GB/4.7 GB  95 MB/s  27s``."""

    def __init__(self, message: str, total: int, completed: int = 0) -> None:
        self.message, self.total, self.initial, self.current = message, total, completed, completed
        self._started = time.monotonic()
        self._stopped: float | None = self._started if completed >= total else None
        self._samples: list[tuple[float, int]] = []

    def set(self, value: int) -> None:
        """Record the completed count (samples kept once a second for the rate)."""
        self.current = min(value, self.total)
        now = time.monotonic()
        if self.current >= self.total and self._stopped is None:
            self._stopped = now
        if not self._samples or now - self._samples[-1][0] > 1:
            self._samples = [*self._samples, (now, self.current)][-10:]

    def percent(self) -> float:
        """Completion in percent."""
        return self.current / self.total * 100 if self.total > 0 else 0.0

    def rate(self) -> float:
        """Bytes per second over the recent samples (or the whole run once stopped)."""
        if self._stopped is not None:
            numerator, seconds = self.current - self.initial, round(self._stopped - self._started)
        elif len(self._samples) == 1:
            numerator, seconds = self._samples[0][1] - self.initial, round(self._samples[0][0] - self._started)
        elif self._samples:
            (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
            numerator, seconds = v1 - v0, round(t1 - t0)
        else:
            return 0.0
        return numerator / seconds if seconds else 0.0

    def render(self, width: int) -> str:
        """Percentage, bar, sizes, rate and time left, filling ``width`` columns."""
        prefix = (f"{self.message.strip()} " if self.message else "") + f"{self.percent():3.0f}%"
        suffix = self._suffix()
        room = width - len(prefix) - len(suffix) - 5
        filled = int(room * self.percent() / 100)
        return prefix + " ▕" + "█" * max(filled, 0) + " " * max(room - filled, 0) + "▏ " + suffix

    def _suffix(self) -> str:
        running, rate = self._stopped is None, self.rate()
        size = f"{human_bytes(self.total):>6}"
        text = f"{human_bytes(self.current):>6}/{size}" if running else size + " " * 7
        if running and rate > 0:
            remaining = int((self.total - self.current) / rate)
            text += f"  {human_bytes(int(rate)):>6}/s  {_short_duration(remaining):>6}"
        else:
            text += " " * 18
        return text

    def plain(self) -> str:
        """The message and the percentage."""
        return f"{self.message.strip()} {self.percent():.0f}%".strip()


def _short_duration(seconds: int) -> str:
    """At most two units: ``59m59s``, ``1h5m``, ``99h+``."""
    if seconds >= 100 * 3600:
        return "99h+"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds // 60 % 60}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60}s"
    return f"{seconds}s"


class Progress:
    """A stack of states drawn on one stream; call ``stop`` or ``stop_and_clear`` when done."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = _isatty(self._stream) if tty is None else tty
        self._states: list[State] = []
        self._shown: list[str] = []  # plain mode: the text last written for each state
        self._lines = 0  # terminal mode: lines drawn last time
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if self._tty:
            self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
            self._thread.start()

    def add(self, state: State) -> None:
        """Append a state below the others (plain mode prints the ones before it)."""
        with self._lock:
            self._states.append(state)
            if not self._tty:
                self._print_plain()

    def stop(self) -> None:
        """Stop spinners, draw the final state of every line and end the block with a newline."""
        if not self._halt():
            return
        with self._lock:
            if self._tty:
                self._draw()
                if self._lines:
                    self._stream.write("\n")
            else:
                self._print_plain()
            self._stream.flush()

    def stop_and_clear(self) -> None:
        """Stop and erase every line drawn (plain mode prints nothing more)."""
        if not self._halt():
            return
        with self._lock:
            if self._tty and self._lines:
                self._stream.write("\x1b[?25l" + "\x1b[A".join(["\x1b[2K\x1b[1G"] * self._lines) + "\x1b[?25h")
            self._shown = [state.plain() for state in self._states]
            self._lines = 0
            self._stream.flush()

    def _halt(self) -> bool:
        """End the redraw thread; False when already stopped."""
        if self._done.is_set():
            return False
        self._done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        for state in self._states:
            if isinstance(state, Spinner):
                state.stop()
        return True

    def _loop(self) -> None:
        while not self._done.wait(0.1):
            with self._lock:
                self._draw()
                self._stream.flush()

    def _draw(self) -> None:
        """Redraw all states in place (caller holds the lock)."""
        if not self._states:
            return
        width, height = _terminal_size(self._stream)
        shown = self._states[-height:]
        out = ["\x1b[?25l", "\x1b[A" * max(self._lines - 1, 0), "\x1b[1G"]
        out.append("\n".join(state.render(width) + "\x1b[K" for state in shown))
        out.append("\x1b[?25h")
        self._stream.write("".join(out))
        self._lines = len(shown)

    def _print_plain(self) -> None:
        """Write each state whose text is new or changed since it was last written."""
        for index, state in enumerate(self._states):
            line = state.plain()
            if index == len(self._shown):
                self._shown.append("")
            if line and line != self._shown[index]:
                self._stream.write(line + "\n")
            self._shown[index] = line
        self._stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _terminal_size(stream: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
        return size.columns, size.lines
    except (AttributeError, ValueError, OSError):
        return DEFAULT_WIDTH, 24
