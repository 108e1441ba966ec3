"""In-memory driver: the fake for unit tests, with the same visibility rules as the real ones."""

from __future__ import annotations

import io
import threading
import time
from typing import BinaryIO, Iterator

from corral_registry.storage.base import FileInfo, InvalidOffset, ObjectBusy, PathNotFound, check_key, check_prefix


class MemoryWriter:
    """Buffers until commit."""

    def __init__(self, driver: "MemoryDriver", key: str) -> None:
        self.driver, self.key, self.size = driver, key, 0
        self._parts: list[bytes] = []
        self._done = False

    def write(self, data: bytes) -> int:
        assert not self._done, "writer is closed"
        self._parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def commit(self) -> None:
        assert not self._done, "writer is closed"
        self.driver.put_content(self.key, b"".join(self._parts))
        self._done = True

    def cancel(self) -> None:
        self._parts, self._done = [], True

    def __enter__(self) -> "MemoryWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.cancel()


class MemoryAppender(MemoryWriter):
    """Buffers until commit, then replaces the object with its first ``offset`` bytes and the new ones."""

    def __init__(self, driver: "MemoryDriver", key: str, offset: int) -> None:
        super().__init__(driver, key)
        self.offset, self._closed = offset, False

    def commit(self) -> None:
        assert not self._done, "writer is closed"
        with self.driver._lock:
            base = self.driver._objects.get(self.key, (b"", 0.0))[0][: self.offset]
            self.driver._objects[self.key] = (base + b"".join(self._parts), time.time())
        self._done = True

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        if not self._closed:
            self._closed = True
            with self.driver._lock:
                self.driver._appending.discard(self.key)


class MemoryDriver:
    """Objects in a dict, guarded by a lock."""

    name = "inmemory"
    can_append = True

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._appending: set[str] = set()
        self._lock = threading.Lock()

    def get_content(self, key: str) -> bytes:
        with self._lock:
            found = self._objects.get(check_key(key))
        if found is None:
            raise PathNotFound(key)
        return found[0]

    def put_content(self, key: str, data: bytes) -> None:
        with self._lock:
            self._objects[check_key(key)] = (bytes(data), time.time())

    def reader(self, key: str, offset: int = 0) -> BinaryIO:
        data = self.get_content(key)
        if offset < 0 or offset > len(data):
            raise InvalidOffset(f"{key}: offset {offset} beyond size {len(data)}")
        stream = io.BytesIO(data)
        stream.seek(offset)
        return stream

    def writer(self, key: str) -> MemoryWriter:
        return MemoryWriter(self, check_key(key))

    def appender(self, key: str, offset: int) -> MemoryAppender:
        with self._lock:
            found = self._objects.get(check_key(key))
            if found is None and offset > 0:
                raise PathNotFound(key)
            if offset < 0 or offset > (len(found[0]) if found else 0):
                raise InvalidOffset(f"{key}: append at {offset}")
            if key in self._appending:
                raise ObjectBusy(key)
            if found is None:
                self._objects[key] = (b"", time.time())
            self._appending.add(key)
        return MemoryAppender(self, key, offset)

    def stat(self, key: str) -> FileInfo | None:
        with self._lock:
            found = self._objects.get(check_key(key))
        return None if found is None else FileInfo(key, len(found[0]), found[1])

    def _under(self, prefix: str) -> list[str]:
        base = check_prefix(prefix).rstrip("/")
        with self._lock:
            keys = sorted(self._objects)
        return [k for k in keys if not base or k.startswith(base + "/")]

    def list(self, prefix: str) -> list[str]:
        base = prefix.rstrip("/")
        keys = self._under(prefix)
        if not keys:
            raise PathNotFound(prefix)
        depth = len(base.split("/")) + 1 if base else 1
        return sorted({"/".join(k.split("/")[:depth]) for k in keys})

    def walk(self, prefix: str) -> Iterator[FileInfo]:
        for key in self._under(prefix):
            info = self.stat(key)
            if info is not None:
                yield info

    def move(self, source: str, destination: str) -> None:
        check_key(destination)
        with self._lock:
            found = self._objects.pop(check_key(source), None)
            if found is None:
                raise PathNotFound(source)
            self._objects[destination] = (found[0], time.time())

    def delete(self, key: str) -> None:
        with self._lock:
            if self._objects.pop(check_key(key), None) is not None:
                return
        keys = self._under(key)
        if not keys:
            raise PathNotFound(key)
        with self._lock:
            for k in keys:
                self._objects.pop(k, None)

    def url_for(self, key: str, expires_seconds: int = 1200) -> str | None:
        return None
