"""The StorageDriver seam: a flat key space of byte objects, as distribution's storagedriver.

Keys are ``/``-separated segments of ``[A-Za-z0-9_.:-]``, never empty, never starting with a
dot (temporary files use dot-names, so they can never collide with a key). Every driver makes
content visible atomically: ``put_content`` and a committed ``writer`` replace the whole object
at once, and nothing a writer wrote is visible before ``commit``. Drivers that can extend an
object in place (``can_append``: the filesystem, memory) also offer ``appender``, which upload
sessions use so that a blob pushed in chunks is written once and renamed into place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Protocol

_SEGMENT = re.compile(r"[A-Za-z0-9_:-][A-Za-z0-9_.:-]*")


class StorageError(Exception):
    """Base of the driver errors."""


class PathNotFound(StorageError):
    """No object (or prefix) at the key."""


class InvalidKey(StorageError):
    """A key outside the grammar (``..``, empty segments, leading dots, odd characters)."""


class InvalidOffset(StorageError):
    """A read offset beyond the end of the object."""


class ObjectBusy(StorageError):
    """Another appender holds the object."""


def check_key(key: str) -> str:
    """Return the key if it follows the grammar, else raise InvalidKey."""
    if not isinstance(key, str) or not key or len(key) > 1024:
        raise InvalidKey(repr(key))
    if not all(_SEGMENT.fullmatch(part) for part in key.split("/")):
        raise InvalidKey(repr(key))
    return key


def check_prefix(prefix: str) -> str:
    """A prefix is a key or the empty string (the root)."""
    return prefix if prefix == "" else check_key(prefix.rstrip("/"))


@dataclass(frozen=True)
class FileInfo:
    """One stored object."""

    key: str
    size: int
    modified: float


class FileWriter(Protocol):
    """A streaming write whose content becomes visible at ``commit`` (and never on ``cancel``)."""

    size: int

    def write(self, data: bytes) -> int:
        """Append bytes; returns how many were taken."""

    def commit(self) -> None:
        """Make the content visible at the key, atomically."""

    def cancel(self) -> None:
        """Discard everything written (aborts an S3 multipart upload)."""

    def __enter__(self) -> "FileWriter":
        ...

    def __exit__(self, *exc: object) -> None:
        """Cancel unless committed."""


class StorageDriver(Protocol):
    """What the registry needs from a blob store."""

    name: str
    can_append: bool

    def get_content(self, key: str) -> bytes:
        """The whole object; PathNotFound if absent."""

    def put_content(self, key: str, data: bytes) -> None:
        """Replace the object atomically."""

    def reader(self, key: str, offset: int = 0) -> BinaryIO:
        """A readable stream from ``offset``; PathNotFound, or InvalidOffset beyond the end."""

    def writer(self, key: str) -> FileWriter:
        """A writer that replaces the object at ``commit``."""

    def appender(self, key: str, offset: int) -> FileWriter:
        """Continue the object at ``key`` from byte ``offset`` (0 creates it); only where ``can_append``.

        The object is held against other appenders (ObjectBusy) until the writer is exited, so the caller can
        record the new length elsewhere first. Nothing changes before the first write, which drops whatever lies
        past ``offset``; ``commit`` keeps the bytes (durable once ``move`` puts the object in place); ``cancel``
        (or an exit without commit) cuts the object back to ``offset``. Unlike ``writer``'s, appended bytes may be
        visible before commit: this is for upload data, whose valid length the caller keeps. PathNotFound or
        InvalidOffset when the object is missing or shorter than ``offset``."""

    def stat(self, key: str) -> FileInfo | None:
        """Size and modification time of an object, None if there is no object at the key."""

    def list(self, prefix: str) -> list[str]:
        """Direct children of a prefix (objects and sub-prefixes), sorted; PathNotFound if none."""

    def walk(self, prefix: str) -> Iterator[FileInfo]:
        """Every object under a prefix, recursively (nothing if the prefix is empty)."""

    def move(self, source: str, destination: str) -> None:
        """Rename an object, replacing the destination, which is durable afterwards; PathNotFound if the source is
        absent."""

    def delete(self, key: str) -> None:
        """Remove an object or everything under a prefix; PathNotFound if nothing was there."""

    def url_for(self, key: str, expires_seconds: int = 1200) -> str | None:
        """A direct (presigned) URL for reading the object, or None if the driver cannot presign."""
