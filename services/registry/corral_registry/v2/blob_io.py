"""Blob bytes between HTTP and storage: request bodies pumped and hashed off the event loop, digests kept per
upload session, and blob reads streamed in blocks.

A blob pushed in chunks (Ollama's client sends 16 PATCHes of 100 MB - 1 GB) is hashed as its chunks arrive, so
finishing the upload reads nothing back. hashlib's state cannot be stored, so the running digest of a session
lives in this process's memory only: a session continued by another process, or after a restart, is hashed
from storage when it finishes, as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

from corral_registry.storage import FileWriter
from corral_registry.v2.errors import RegistryError

BLOCK = 4 << 20  # bytes handed to the storage thread at a time; two blocks at most are in memory per request
SEND_BLOCK = 256 << 10  # bytes of a blob read per response message (16 parallel ranged reads hold 16 of them)
KEPT_SESSIONS = 1024
_NOWAIT = getattr(os, "RWF_NOWAIT", 0)


def _store(writer: FileWriter, sha: Any, pieces: list[bytes]) -> None:
    for piece in pieces:
        if sha is not None:
            sha.update(piece)
        writer.write(piece)


async def pump(body: AsyncIterator[bytes], writer: FileWriter, sha: Any, limit: int | None) -> int:
    """Copy a request body into a writer (hashing it into ``sha`` unless None); returns its size.

    The pieces of one block are hashed and written in a thread while the next block arrives, so the network, the
    hash and the disk overlap instead of taking turns (and the pieces are not joined: one copy fewer)."""
    total, pieces, held = 0, [], 0
    pending: asyncio.Future[None] | None = None
    try:
        async for chunk in body:
            total += len(chunk)
            if limit is not None and total > limit:
                raise RegistryError("SIZE_INVALID", {"limit": limit})
            if chunk:
                pieces.append(chunk)
                held += len(chunk)
            if held >= BLOCK:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(_store, writer, sha, pieces))
                pieces, held = [], 0
        if pending is not None:
            await pending
            pending = None
        if pieces:
            await asyncio.to_thread(_store, writer, sha, pieces)
    finally:
        if pending is not None:  # the body failed mid-way: let the write in flight end before the writer is closed
            await asyncio.gather(pending, return_exceptions=True)
    return total


class RunningDigests:
    """The sha256 of each upload session's bytes so far, for the sessions this process appended to in place."""

    def __init__(self, limit: int = KEPT_SESSIONS) -> None:
        self._by_session: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def resume(self, session: str, offset: int) -> Any:
        """A copy of the session's hash at ``offset`` to continue from (a fresh one at 0), or None when unknown."""
        if offset == 0:
            return hashlib.sha256()
        with self._lock:
            found = self._by_session.get(session)
        return found[1].copy() if found is not None and found[0] == offset else None

    def record(self, session: str, offset: int, sha: Any) -> None:
        """The session now holds ``offset`` bytes hashing to ``sha`` (None: its hash is unknown from here on)."""
        with self._lock:
            self._by_session.pop(session, None)
            if sha is not None:
                self._by_session[session] = (offset, sha)
                while len(self._by_session) > self._limit:
                    self._by_session.popitem(last=False)

    def take(self, session: str, offset: int) -> Any:
        """The session's hash if it covers exactly ``offset`` bytes, else None; forgets the session either way."""
        with self._lock:
            found = self._by_session.pop(session, None)
        return found[1] if found is not None and found[0] == offset else None


async def read_blocks(stream: BinaryIO, length: int) -> AsyncIterator[bytes | memoryview]:
    """``length`` bytes of a stream (from where it stands) in blocks, then close it.

    From a local file, blocks already in the page cache are read on the event loop with ``preadv(RWF_NOWAIT)``,
    which copies from the cache or returns at once, so a hot blob costs no thread hop per block; a block that
    must come from the disk, and any other stream (S3, memory), is read in a thread."""
    try:
        fd, position = _file_position(stream)
        while length > 0:
            want = min(SEND_BLOCK, length)
            block = _read_cached(fd, want, position) if fd is not None else None
            if block is None:
                block = await asyncio.to_thread(_read_at, stream, fd, want, position)
            else:  # a turn for the rest of the loop: Starlette's disconnect listener ends a stream whose client left
                await asyncio.sleep(0)
            if not block:
                return
            position, length = position + len(block), length - len(block)
            yield block
    finally:
        stream.close()


def _file_position(stream: BinaryIO) -> tuple[int | None, int]:
    """The descriptor and offset of a local file, or (None, 0) for other streams."""
    try:
        return stream.fileno(), stream.tell()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None, 0


def _read_cached(fd: int, want: int, position: int) -> memoryview | None:
    """What the page cache holds from position (up to want bytes), or None when it would have to wait for the disk."""
    if not _NOWAIT:
        return None
    buffer = bytearray(want)
    try:
        got = os.preadv(fd, [buffer], position, _NOWAIT)
    except OSError:  # EAGAIN: not cached; EOPNOTSUPP: a filesystem without it
        return None
    return memoryview(buffer)[:got]


def _read_at(stream: BinaryIO, fd: int | None, want: int, position: int) -> bytes:
    return os.pread(fd, want, position) if fd is not None else stream.read(want)
