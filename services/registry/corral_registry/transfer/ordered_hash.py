"""sha256 of a file that parallel ranged parts write at many offsets at once, computed in offset order as it fills.

A part's thread hashes its bytes from memory as it writes them whenever they land exactly where the hash has
reached, so a download in one part (and the head part of a parallel one) costs no second read. Bytes written
ahead of that point (later parts, or what an interrupted pull left on disk) are read back from the local file
once the hash reaches them, by the next writer whose bytes on disk reach back to the hash, or by ``finish``. The
registry is never asked for a byte twice: a resumed pull hashes its finished part from the local disk, once.

(hashlib's sha256 state cannot be saved to disk, so a crashed pull cannot skip that local read of the finished
part; it can only keep it off the network, which is what matters for a slow link.)
"""

from __future__ import annotations

import hashlib
import os
import threading

from corral_common.digest import Digest

READ_BACK_BLOCK = 4 << 20


class OrderedHash:
    """The running sha256 of ``fd`` from byte 0 up to ``hashed``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.hashed = 0
        self.read_back = 0  # bytes hashed from the file rather than from memory
        self._sha = hashlib.sha256()
        self._buffer: bytearray | None = None
        self._lock = threading.Lock()

    def wrote(self, start: int, position: int, data: bytes) -> None:
        """``data`` was just written at ``position`` by a writer whose bytes from ``start`` to ``position`` are on disk."""
        if not start <= self.hashed <= position:  # most calls: the hash is elsewhere (checked again under the lock)
            return
        with self._lock:
            if start <= self.hashed <= position:
                self._read_back(position)
                if self.hashed == position:
                    self._sha.update(data)
                    self.hashed += len(data)

    def finish(self, total: int) -> tuple[Digest, int]:
        """The digest of the first ``total`` bytes and how many there were (fewer when the file is short)."""
        with self._lock:
            self._read_back(total)
            return Digest(self._sha.hexdigest()), self.hashed

    def _read_back(self, end: int) -> None:
        """Hash the file from ``hashed`` to ``end`` (stops early at its end).

        Into one buffer, reused (the lock makes this the only read-back running): a fresh 4 MiB block per read,
        in whichever part thread is catching up, left several of them held in glibc's per-thread arenas."""
        if self.hashed >= end:
            return
        if self._buffer is None:
            self._buffer = bytearray(READ_BACK_BLOCK)
        view = memoryview(self._buffer)
        while self.hashed < end:
            got = os.preadv(self.fd, [view[:min(READ_BACK_BLOCK, end - self.hashed)]], self.hashed)
            if not got:
                return
            self._sha.update(view[:got])
            self.hashed += got
            self.read_back += got
