"""Flush a download to disk while it is still arriving, so the fsync before the commit only waits for the tail.

The kernel left a 2 GiB pull's pages dirty until the end, and the fsync that must come before the rename then
took about a second on its own. Here a thread of its own runs ``fdatasync`` each time another ``EVERY`` bytes
have been written, while the network threads go on. Linux reports a write-back error once per open file, to
whichever sync asks first, so an error met here is kept and raised by ``close``: a failed write can never
pass as durable.
"""

from __future__ import annotations

import os
import threading

EVERY = 128 << 20


class Writeback:
    """Background ``fdatasync`` of one descriptor after every ``every`` bytes written to it."""

    def __init__(self, fd: int, every: int = EVERY) -> None:
        self.fd, self.every = fd, every
        self._unsynced = 0
        self._requested = False
        self._error: OSError | None = None
        self._lock = threading.Lock()
        self._due = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="writeback", daemon=True)
        self._thread.start()

    def wrote(self, size: int) -> None:
        """``size`` more bytes were written; wakes the sync thread once a whole ``every`` has built up."""
        with self._lock:
            self._unsynced += size
            if self._unsynced < self.every:
                return
            self._unsynced, self._requested = 0, True
        self._due.set()

    def close(self) -> None:
        """Stop the thread (after the sync asked for last); raises the first error a sync met, once."""
        with self._lock:
            self._stop = True
        self._due.set()
        self._thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _run(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            with self._lock:
                requested, stop, self._requested = self._requested, self._stop, False
            if requested:
                try:
                    os.fdatasync(self.fd)
                except OSError as exc:
                    self._error = self._error or exc
            if stop:
                return
