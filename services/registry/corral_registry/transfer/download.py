"""Blob downloads into the local store: parallel ranged parts, resumable, single flight, verified before commit.

On disk (Ollama's layout): ``blobs/sha256-<hex>-partial`` holds the bytes at their offsets and
``blobs/sha256-<hex>-partial-<N>`` the state of part N (``{"N","Offset","Size","Completed"}``), so a
crash or a killed worker resumes each part with ``Range: bytes=<offset+completed>-<end>``. A
``-partial.lock`` file locked with ``flock`` makes one process (or thread) download a digest while
the others wait and report its progress. Parts start in offset order, as many at once as ``streams.Ramp``
finds worth it, so the sha256 can follow close behind while they arrive (``OrderedHash``: no second pass over
the blob at the end); it is checked before the blob is renamed into place, and a mismatch deletes the partial
data. The data is flushed to disk in the background as it arrives (``Writeback``) and fsynced at the end while
the last bytes are hashed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import httpx

from corral_common.digest import Digest
from corral_common.errors import AppError, BadGateway, InsufficientStorage, NotFound
from corral_common.fsio import fsync_dir
from corral_common.logs import get_logger

from corral_registry.settings import TransferSettings
from corral_registry.store import ModelStore
from corral_registry.transfer.client import RegistryClient, error_text, raw_body
from corral_registry.transfer.ordered_hash import OrderedHash
from corral_registry.transfer.remote import Remote
from corral_registry.transfer.streams import INTERVAL_SECONDS, Ramp
from corral_registry.transfer.writeback import Writeback

log = get_logger("corral.registry.download")
Progress = Callable[[int], None]
# A part's state is saved this often (and when the part ends or fails): a killed pull fetches at most this long's
# worth of each part again. By time rather than bytes: a rename per few MiB costs more than the bytes on a fast link.
SAVE_EVERY_SECONDS = 0.5


class DigestMismatch(AppError):
    """The bytes downloaded do not hash to the digest the manifest promised."""

    status = 500


class Retryable(Exception):
    """A transient failure of one part (stall, short read, 5xx): try again after a backoff."""


@dataclass
class Part:
    """One ranged part of a download."""

    n: int
    offset: int
    size: int
    completed: int = 0

    @property
    def done(self) -> bool:
        """Whether every byte of the part is on disk."""
        return self.completed >= self.size

    def to_json(self) -> dict[str, int]:
        """Ollama's part file format."""
        return {"N": self.n, "Offset": self.offset, "Size": self.size, "Completed": self.completed}


def plan_parts(total: int, settings: TransferSettings) -> list[Part]:
    """Parts of total/16 bytes, clamped to [part_min, part_max] (Ollama's sizing)."""
    if total == 0:
        return []
    size = min(max(total // settings.max_parts, settings.part_min), settings.part_max)
    return [Part(n, offset, min(size, total - offset)) for n, offset in enumerate(range(0, total, size))]


class PartialState:
    """The ``-partial`` files of one digest."""

    def __init__(self, store: ModelStore, digest: Digest, total: int) -> None:
        self.store, self.digest, self.total = store, digest, total
        self.data = store.partial_path(digest)

    def part_files(self) -> list[Path]:
        """The ``-partial-<N>`` state files on disk."""
        return sorted(self.data.parent.glob(f"{self.data.name}-[0-9]*"))

    def load(self) -> list[Part] | None:
        """The saved parts, or None when they are missing or do not describe this blob."""
        files = self.part_files()
        if not files or not self.data.exists():
            return None
        try:
            parts = sorted((Part(int(r["N"]), int(r["Offset"]), int(r["Size"]), int(r["Completed"]))
                            for r in (json.loads(f.read_bytes()) for f in files)), key=lambda p: p.offset)
        except (ValueError, KeyError, TypeError, OSError):
            return None
        expected = 0
        for part in parts:
            if part.offset != expected or part.size <= 0 or not 0 <= part.completed <= part.size:
                return None
            expected += part.size
        if expected != self.total or self.data.stat().st_size > self.total:
            return None
        return parts

    def save(self, part: Part) -> None:
        """Write one part's state (a crash leaves the old or the new state, both consistent with the data)."""
        path = self.store.part_path(self.digest, part.n)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(part.to_json()))
        os.replace(tmp, path)

    def reset(self, parts: list[Part]) -> None:
        """Start over: drop old state, then record the fresh plan."""
        self.clear()
        self.data.touch()
        for part in parts:
            self.save(part)

    def clear(self) -> None:
        """Remove the partial data and every part file."""
        for path in [self.data, *self.part_files()]:
            path.unlink(missing_ok=True)

    def completed(self) -> int:
        """Bytes done so far, read from disk (what a waiting caller reports)."""
        parts = self.load()
        return sum(p.completed for p in parts) if parts else 0


class DigestLock:
    """An exclusive ``flock`` on the digest's lock file, waited for while reporting the holder's progress."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = None

    def acquire(self, while_waiting: Callable[[], None], poll: float = 0.25) -> None:
        """Block until this process holds the lock, calling ``while_waiting`` between tries."""
        while True:
            handle = open(self.path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                while_waiting()
                time.sleep(poll)
                continue
            if os.path.exists(self.path) and os.fstat(handle.fileno()).st_ino == os.stat(self.path).st_ino:
                self.handle = handle
                return
            handle.close()  # the holder finished and removed the file: lock the new one

    def release(self) -> None:
        """Remove the file while still holding it (waiters notice the new inode), then unlock."""
        if self.handle is None:
            return
        self.path.unlink(missing_ok=True)
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
        self.handle = None


class BlobDownloader:
    """Downloads one blob of a remote into the store."""

    def __init__(self, store: ModelStore, client: RegistryClient, settings: TransferSettings) -> None:
        self.store, self.client, self.settings = store, client, settings

    def fetch(self, remote: Remote, digest: Digest, size: int, progress: Progress) -> bool:
        """Make the blob present and verified; True if this call downloaded it, False if it was there."""
        if self.store.has_blob(digest):
            progress(size)
            return False
        state = PartialState(self.store, digest, size)
        lock = DigestLock(self.store.lock_path(digest))
        lock.acquire(lambda: progress(state.completed()))
        try:
            if self.store.has_blob(digest):  # another caller finished it while we waited
                progress(size)
                return False
            _Transfer(self, remote, digest, state, progress).run()
            return True
        finally:
            lock.release()


class _Transfer:
    """One locked download: plan or resume parts, fetch them in parallel, verify, commit."""

    def __init__(self, owner: BlobDownloader, remote: Remote, digest: Digest, state: PartialState,
                 progress: Progress) -> None:
        self.owner, self.remote, self.digest, self.state, self.report = owner, remote, digest, state, progress
        self.settings, self.client = owner.settings, owner.client
        self.url: httpx.URL = httpx.URL(remote.blob_url(digest))
        self.origin = self.url
        self.cancelled = threading.Event()
        self.lock = threading.Lock()
        self.parts: list[Part] = []
        self.queue: deque[Part] = deque()  # parts not started yet, in offset order
        self.running = self.streams = 0  # workers running, workers wanted

    def run(self) -> None:
        """Download what is missing, then verify and commit."""
        self._check_remote_size()
        parts = self.state.load()
        if parts is None:
            parts = plan_parts(self.state.total, self.settings)
            self.state.reset(parts)
        else:
            log.info("resuming download", digest=str(self.digest), done=sum(p.completed for p in parts))
        self.parts = parts
        self._progress()
        fd = os.open(self.state.data, os.O_RDWR | os.O_CREAT, 0o644)
        self.writeback = Writeback(fd)
        try:
            self.hash = OrderedHash(fd)
            pending = [p for p in parts if not p.done]
            if pending:
                self._download(fd, pending)
            self.writeback.close()  # before the final fsync: an error it met must not go unreported
            digest, size = self._seal(fd)
        finally:
            with suppress(OSError):  # a failure is on its way already
                self.writeback.close()
            os.close(fd)
        self._commit(digest, size)

    def _progress(self) -> None:
        self.report(self._done())

    def _check_remote_size(self) -> None:
        """HEAD the blob: it must exist and have the size the manifest says (no byte written otherwise)."""
        response, _ = self.client.follow("HEAD", self.url, origin=self.origin)
        try:
            if response.status_code == 404:
                raise NotFound(f"blob {self.digest} not found in registry")
            if response.status_code >= 400:
                raise BadGateway(f"HEAD {self.digest}: {error_text(response)}")
            length = response.headers.get("content-length")
        finally:
            response.close()
        if length is not None and length.isdigit() and int(length) != self.state.total:
            raise BadGateway(f"registry reports {length} bytes for {self.digest}, the manifest says "
                             f"{self.state.total}")

    def _download(self, fd: int, pending: list[Part]) -> None:
        """Fetch the pending parts in offset order, as many at once as the ramp says; the first failure cancels."""
        self.queue = deque(pending)
        ramp = Ramp(min(len(pending), self.settings.max_parts))
        with ThreadPoolExecutor(max_workers=ramp.limit, thread_name_prefix="part") as pool:
            futures = self._start_streams(pool, fd, ramp.streams)
            done_before, since = self._done(), time.monotonic()
            while True:
                done, running = wait(futures, timeout=INTERVAL_SECONDS, return_when=FIRST_EXCEPTION)
                failed = next((f for f in done if f.exception() is not None), None)
                if failed is not None:
                    self.cancelled.set()
                    wait(futures)
                    raise failed.exception()  # type: ignore[misc]
                if not running:
                    return
                done_now, now = self._done(), time.monotonic()
                streams = ramp.step((done_now - done_before) / max(now - since, 1e-6))
                futures |= self._start_streams(pool, fd, streams)
                done_before, since = done_now, now

    def _start_streams(self, pool: ThreadPoolExecutor, fd: int, streams: int) -> set[Future[None]]:
        """Workers until ``streams`` run (or every queued part has one); extra ones end after their part."""
        with self.lock:
            self.streams = streams
            add = max(min(streams - self.running, len(self.queue)), 0)
            self.running += add
        return {pool.submit(self._stream, fd) for _ in range(add)}

    def _stream(self, fd: int) -> None:
        """One connection's work: the next queued part, until none is left or there are more streams than wanted."""
        while not self.cancelled.is_set():
            with self.lock:
                if not self.queue or self.running > self.streams:
                    self.running -= 1
                    return
                part = self.queue.popleft()
            self._part_with_retries(fd, part)
        with self.lock:
            self.running -= 1

    def _done(self) -> int:
        """Bytes of the blob on disk so far."""
        with self.lock:
            return sum(p.completed for p in self.parts)

    def _part_with_retries(self, fd: int, part: Part) -> None:
        for attempt in range(self.settings.retries + 1):
            if self.cancelled.is_set():
                return
            try:
                self._part(fd, part)
                return
            except (Retryable, httpx.TransportError) as exc:
                self.state.save(part)
                if attempt == self.settings.retries:
                    raise BadGateway(f"download of {self.digest} failed: {exc or type(exc).__name__}") from None
                delay = self.settings.backoff_seconds * 2 ** attempt
                log.info("part failed, retrying", digest=str(self.digest), part=part.n, error=str(exc) or
                         type(exc).__name__, delay_seconds=delay)
                self.cancelled.wait(delay)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise InsufficientStorage("no space left on device") from None
                raise

    def _part(self, fd: int, part: Part) -> None:
        start, end = part.offset + part.completed, part.offset + part.size - 1
        response, url = self.client.follow("GET", self.url, {"Range": f"bytes={start}-{end}"}, origin=self.origin)
        try:
            if response.status_code >= 500 or response.status_code in (408, 429):
                raise Retryable(error_text(response))
            if response.status_code == 416:
                raise BadGateway(f"registry cannot serve {self.digest} from byte {start}: the blob is shorter")
            if response.status_code not in (200, 206):
                raise BadGateway(f"GET {self.digest}: {error_text(response)}")
            self.url = url  # later parts go straight to the resolved (possibly presigned) location
            skip = start if response.status_code == 200 else self._range_start(response, start)
            self._copy(fd, part, response, skip, end)
        finally:
            response.close()
        if not part.done and not self.cancelled.is_set():
            raise Retryable(f"connection closed after {part.completed} of {part.size} bytes of part {part.n}")

    @staticmethod
    def _range_start(response: httpx.Response, start: int) -> int:
        header = response.headers.get("content-range", "")
        try:
            first = int(header.split()[1].split("-")[0])
        except (IndexError, ValueError):
            raise BadGateway(f"invalid Content-Range {header!r}") from None
        if first != start:
            raise BadGateway(f"registry answered range from {first}, asked {start}")
        return 0

    def _copy(self, fd: int, part: Part, response: httpx.Response, skip: int, end: int) -> None:
        """Write the body at its offsets; a 200 (Range ignored) is skipped up to the part and cut after it."""
        position = part.offset + part.completed
        saved_at = time.monotonic()
        for chunk in raw_body(response, self.settings.stall_seconds):
            if skip:
                dropped = min(skip, len(chunk))
                chunk, skip = chunk[dropped:], skip - dropped
            room = end + 1 - position
            if len(chunk) > room:
                if response.status_code == 206:
                    raise BadGateway(f"registry sent more bytes than part {part.n} of {self.digest} holds")
                chunk = chunk[:room]
            if chunk:
                _pwrite_all(fd, chunk, position)
                self.writeback.wrote(len(chunk))
                self.hash.wrote(self._on_disk_from(part), position, chunk)
                position += len(chunk)
                with self.lock:
                    part.completed += len(chunk)
                self._progress()
            if time.monotonic() - saved_at > SAVE_EVERY_SECONDS:
                self.state.save(part)
                saved_at = time.monotonic()
            if position > end or self.cancelled.is_set():  # a chunk read is written first: nothing is fetched twice
                break
        self.state.save(part)

    def _on_disk_from(self, part: Part) -> int:
        """Where the bytes on disk up to ``part``'s position begin: its offset, or earlier when the parts before it
        are complete (the hash can then catch up through them even though their own streams have moved on)."""
        index = self.parts.index(part)
        while index and self.parts[index - 1].done:
            index -= 1
        return self.parts[index].offset

    def _seal(self, fd: int) -> tuple[Digest, int]:
        """Hash whatever is not hashed yet while the data is flushed to disk; the digest and size on disk."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsync") as pool:
            flushed = pool.submit(os.fsync, fd)
            digest, size = self.hash.finish(self.state.total)
            flushed.result()
        return digest, size

    def _commit(self, got: Digest, size: int) -> None:
        """Only a match becomes ``blobs/sha256-<hex>``; a mismatch drops the partial data."""
        if got != self.digest or size != self.state.total:
            self.state.clear()
            raise DigestMismatch(f"digest mismatch, file must be downloaded again: want {self.digest}, got {got}")
        target = self.owner.store.blob_path(self.digest)
        os.replace(self.state.data, target)
        fsync_dir(target.parent)
        self.state.clear()


def _pwrite_all(fd: int, data: bytes, position: int) -> None:
    """Write all of data at position (a regular file may take less than asked at a time)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, position)
        view, position = view[written:], position + written
