"""Filesystem driver: objects are files under a root; writes go to a dot-named temp file and ``os.replace``."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path
from typing import BinaryIO, Iterator

from corral_common.fsio import fsync_dir, fsync_path, temp_name

from corral_registry.storage.base import FileInfo, InvalidOffset, ObjectBusy, PathNotFound, check_key, check_prefix


class FilesystemWriter:
    """Writes to a temporary sibling of the target; commit fsyncs and renames it into place."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.tmp, self.size = path, temp_name(path), 0
        self._handle: BinaryIO | None = open(self.tmp, "wb")
        self._done = False

    def write(self, data: bytes) -> int:
        assert self._handle is not None and not self._done, "writer is closed"
        self._handle.write(data)
        self.size += len(data)
        return len(data)

    def commit(self) -> None:
        assert self._handle is not None and not self._done, "writer is closed"
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)
        self._done = True

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self.tmp.unlink(missing_ok=True)
        self._done = True

    def __enter__(self) -> "FilesystemWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.cancel()


class FilesystemAppender:
    """Extends a file in place under an exclusive ``flock`` (other processes' appenders get ObjectBusy)."""

    def __init__(self, path: Path, key: str, offset: int) -> None:
        if offset == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | (os.O_CREAT if offset == 0 else 0), 0o644)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(key) from None
        try:
            _lock_current(fd, path, key)
            size = os.fstat(fd).st_size
            if offset < 0 or offset > size:
                raise InvalidOffset(f"{key}: append at {offset}, the object holds {size} bytes")
        except BaseException:
            os.close(fd)
            raise
        self.fd, self.offset, self.size = fd, offset, 0
        self._committed = self._closed = False

    def write(self, data: bytes) -> int:
        assert not self._closed and not self._committed, "appender is closed"
        if self.size == 0:
            os.ftruncate(self.fd, self.offset)  # a crashed append's tail is no part of the object
        view, position = memoryview(data), self.offset + self.size
        while view:
            written = os.pwrite(self.fd, view, position)
            view, position = view[written:], position + written
        self.size += len(data)
        return len(data)

    def commit(self) -> None:
        # No fsync per chunk: a push would wait on one per PATCH. The data is synced once, when ``move`` puts the
        # finished upload in place; a power cut before then costs the upload (its digest no longer matches), never
        # a wrong blob.
        assert not self._closed and not self._committed, "appender is closed"
        self._committed = True

    def cancel(self) -> None:
        if not self._committed and self.size and not self._closed:
            os.ftruncate(self.fd, self.offset)
        self._committed = True  # nothing more to undo

    def __enter__(self) -> "FilesystemAppender":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._closed:
            return
        self.cancel()
        os.close(self.fd)  # releases the lock
        self._closed = True


def _lock_current(fd: int, path: Path, key: str) -> None:
    """flock fd, which must still be the file at path (a finished upload renames it away while holding the lock)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ObjectBusy(key) from None
    try:
        current = os.stat(path).st_ino
    except FileNotFoundError:
        current = None
    if current != os.fstat(fd).st_ino:
        raise PathNotFound(key)


class FilesystemDriver:
    """Objects as files under ``root`` (the key is the relative path)."""

    name = "filesystem"
    can_append = True

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file of a key (keys are checked, so the path stays under the root)."""
        return self.root.joinpath(*check_key(key).split("/"))

    def _prefix_path(self, prefix: str) -> Path:
        prefix = check_prefix(prefix)
        return self.root.joinpath(*prefix.split("/")) if prefix else self.root

    def get_content(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise PathNotFound(key) from None

    def put_content(self, key: str, data: bytes) -> None:
        with self.writer(key) as writer:
            writer.write(data)
            writer.commit()

    def reader(self, key: str, offset: int = 0) -> BinaryIO:
        path = self.path(key)
        try:
            handle = open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise PathNotFound(key) from None
        size = os.fstat(handle.fileno()).st_size
        if offset < 0 or offset > size:
            handle.close()
            raise InvalidOffset(f"{key}: offset {offset} beyond size {size}")
        handle.seek(offset)
        return handle

    def writer(self, key: str) -> FilesystemWriter:
        return FilesystemWriter(self.path(key))

    def appender(self, key: str, offset: int) -> FilesystemAppender:
        return FilesystemAppender(self.path(key), key, offset)

    def stat(self, key: str) -> FileInfo | None:
        try:
            info = self.path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not os.path.isfile(self.path(key)):
            return None
        return FileInfo(key, info.st_size, info.st_mtime)

    def list(self, prefix: str) -> list[str]:
        directory = self._prefix_path(prefix)
        try:
            entries = sorted(e for e in os.listdir(directory) if not e.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(prefix) from None
        base = prefix.rstrip("/")
        return [f"{base}/{e}" if base else e for e in entries]

    def walk(self, prefix: str) -> Iterator[FileInfo]:
        top = self._prefix_path(prefix)
        for directory, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = Path(directory) / name
                try:
                    info = path.stat()
                except FileNotFoundError:
                    continue
                yield FileInfo(path.relative_to(self.root).as_posix(), info.st_size, info.st_mtime)

    def move(self, source: str, destination: str) -> None:
        src, dst = self.path(source), self.path(destination)
        if not src.is_file():
            raise PathNotFound(source)
        dst.parent.mkdir(parents=True, exist_ok=True)
        fsync_path(src)  # appended upload data arrives durable (cheap for a file a writer already synced)
        os.replace(src, dst)
        fsync_dir(dst.parent)

    def delete(self, key: str) -> None:
        path = self._prefix_path(key)
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            raise PathNotFound(key) from None
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
            raise PathNotFound(key) from None

    def url_for(self, key: str, expires_seconds: int = 1200) -> str | None:
        return None
