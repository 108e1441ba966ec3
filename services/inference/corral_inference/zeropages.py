"""Memory a new llama.cpp context cleared to zeros, handed back to the kernel until something is written there.

llama.cpp fills a context's KV cache with zeros when it makes it (``ggml_backend_buffer_clear``), so every page
of it is in RAM from the start: 360 MiB for smollm2 at 4 slots x 4096 cells, before a single token. A private
anonymous page that holds only zeros can be given back with ``madvise(MADV_DONTNEED)``: reading it again gives
zeros, the very bytes it held, and writing it takes a fresh page then. So a cache is in RAM as far as it has been
written, as the kernel does for any memory nobody has touched; a context that fills every cell ends where it
would have been.

What is handed back, and why that is safe. A zero page given back reads as zeros again, so the only danger is a
write into it between the comparison that found it zero and the ``madvise`` (lost), or memory unmapped while it
is read (a crash). So:

- only address ranges that were not mapped before the context was made (its KV cache and compute buffers; the
  weights are mapped before), and in them only runs of at least ``MIN_RUN`` bytes of zeros, in
  ``CHUNK``-aligned pieces;
- while no other llama.cpp work of this process runs: each engine does its steps, image encoding, embedding and
  freeing under ``GUARD.shared()``, and the scan holds ``GUARD.exclusive()``; engines are made one at a time
  (``LOADS``);
- while this thread holds the GIL from the check that a range is still mapped (``mincore``) to its last
  ``madvise``: the calls go through ``ctypes.PyDLL``, which keeps it, and the switch interval is raised meanwhile,
  so no Python thread writes or frees anything then;
- only on Linux and only in builds without GPU offload: a GPU backend pins host buffers for its transfers, and
  a page dropped there would no longer be the one the device reads.

``Released.unbacked()`` says how much of it is still not in RAM: memory the model will take as its cache fills,
which the scheduler counts as taken (``corral_inference.scheduler``).
"""

from __future__ import annotations

import bisect
import ctypes
import functools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

PAGE = 4096
CHUNK = 64 * 1024  # compared and handed back in pieces of this size, aligned to it
MIN_RUN = 16 * 1024 * 1024  # shorter runs of zeros are left alone
MADV_DONTNEED = 4
SWITCH_INTERVAL_WHILE_SCANNING = 60.0  # seconds: longer than any scan, so this thread keeps the GIL
LOADS = threading.Lock()  # engines are made one at a time
Range = tuple[int, int]  # [start, end) addresses


@dataclass
class Released:
    """The ranges handed back for one context, and their size."""

    ranges: list[Range] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(end - start for start, end in self.ranges)

    def unbacked(self) -> int:
        """Bytes of the handed-back ranges still not in RAM (any thread may ask: one ``mincore`` per range). A page
        only read since counts as in RAM: it maps the kernel's one shared page of zeros, which mincore reports."""
        return sum(_unbacked(start, end) for start, end in self.ranges)


class Guard:
    """Shared by llama.cpp work, exclusive for a scan; a waiting scan goes first (a stream of steps cannot starve
    it), and waits at most for the steps already running."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.readers = 0
        self.writing = False
        self.writers_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self.cond:
            while self.writing or self.writers_waiting:
                self.cond.wait()
            self.readers += 1
        try:
            yield
        finally:
            with self.cond:
                self.readers -= 1
                if self.readers == 0:
                    self.cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self.cond:
            self.writers_waiting += 1
            while self.writing or self.readers:
                self.cond.wait()
            self.writers_waiting -= 1
            self.writing = True
        try:
            yield
        finally:
            with self.cond:
                self.writing = False
                self.cond.notify_all()


GUARD = Guard()


class _Libc:
    """madvise, mincore and memcmp called with the GIL held (``PyDLL``)."""

    def __init__(self) -> None:
        libc = ctypes.PyDLL(None)
        self.madvise = libc.madvise
        self.madvise.argtypes, self.madvise.restype = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int), ctypes.c_int
        self.mincore = libc.mincore
        self.mincore.argtypes, self.mincore.restype = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p), ctypes.c_int
        self.memcmp = libc.memcmp
        self.memcmp.argtypes, self.memcmp.restype = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t), ctypes.c_int


_ZEROS = bytes(CHUNK)


@functools.cache
def _libc() -> _Libc:
    return _Libc()


def supported(gpu_offload: bool) -> bool:
    """Whether contexts may hand back their zero pages here: Linux, a build without GPU offload."""
    return sys.platform.startswith("linux") and not gpu_offload


def mappings() -> list[tuple[int, int, str, str]]:
    """This process's mappings from /proc/self/maps: (start, end, permissions, path or "")."""
    found = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(None, 5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            found.append((start, end, parts[1], parts[5].strip() if len(parts) > 5 else ""))
    return found


def new_private_ranges(before: list[tuple[int, int, str, str]], after: list[tuple[int, int, str, str]]) -> list[Range]:
    """Addresses of private anonymous read-write mappings in ``after`` that no mapping in ``before`` covered."""
    old = sorted((start, end) for start, end, _, _ in before)
    unchanged = set(old)
    fresh: list[Range] = []
    for start, end, perms, path in after:
        if perms == "rw-p" and not path and (start, end) not in unchanged:
            fresh += _subtract((start, end), old)
    return fresh


def _subtract(span: Range, old: list[Range]) -> list[Range]:
    """The parts of ``span`` outside the sorted, non-overlapping ranges ``old``."""
    pieces, cursor = [], span[0]
    for o_start, o_end in old[max(0, bisect.bisect_right(old, (span[0], span[0])) - 1):]:
        if o_start >= span[1]:
            break
        if o_end <= cursor:
            continue
        if o_start > cursor:
            pieces.append((cursor, o_start))
        cursor = max(cursor, o_end)
    if cursor < span[1]:
        pieces.append((cursor, span[1]))
    return pieces


def _first_chunk(span: Range) -> int:
    """The first ``CHUNK``-aligned address in ``span``."""
    return -(-span[0] // CHUNK) * CHUNK


def _in_ram(start: int, length: int) -> bytes | None:
    """One byte per page of [start, start + length) from ``mincore`` (bit 0: in RAM); None if not all mapped."""
    vector = ctypes.create_string_buffer(length // PAGE)
    return vector.raw if _libc().mincore(start, length, vector) == 0 else None


def zero_runs(span: Range, is_zero: Callable[[int], bool]) -> Iterator[Range]:
    """The runs of ``CHUNK``-aligned zero chunks in ``span``, at least ``MIN_RUN`` long, as found by ``is_zero``."""
    first = _first_chunk(span)
    run = None
    for chunk in range(first, span[1] - CHUNK + 1, CHUNK):
        if is_zero(chunk):
            run = chunk if run is None else run
            continue
        if run is not None and chunk - run >= MIN_RUN:
            yield run, chunk
        run = None
    if run is not None:
        end = first + (span[1] - first) // CHUNK * CHUNK
        if end - run >= MIN_RUN:
            yield run, end


def release_zero_runs(spans: list[Range]) -> Released:
    """Hand back every long run of zeros in ``spans``: each chunk is compared, then its run is given back. A chunk
    none of whose pages is in RAM reads as zeros without being read (mapped, never written)."""
    libc, released = _libc(), Released()
    for span in spans:
        if span[1] - span[0] < MIN_RUN:
            continue
        absent = _absent_chunks(span)
        if absent is None:  # no longer mapped as a whole: not ours to touch
            continue
        for start, end in zero_runs(span, lambda chunk: chunk in absent or libc.memcmp(chunk, _ZEROS, CHUNK) == 0):
            if libc.madvise(start, end - start, MADV_DONTNEED) == 0:
                released.ranges.append((start, end))
    return released


def _absent_chunks(span: Range) -> set[int] | None:
    """The ``CHUNK``-aligned chunks of ``span`` with no page in RAM; None when part of it is not mapped."""
    first = _first_chunk(span)
    count = (span[1] - first) // CHUNK
    if count <= 0:
        return set()
    raw, pages = _in_ram(first, count * CHUNK), CHUNK // PAGE
    if raw is None:
        return None
    none = bytes(pages)
    return {first + i * CHUNK for i in range(count) if raw[i * pages:(i + 1) * pages] == none}


def _unbacked(start: int, end: int) -> int:
    """Bytes of [start, end) not in RAM (0 if the range is no longer mapped)."""
    raw = _in_ram(start, end - start)
    return 0 if raw is None else raw.count(b"\x00") * PAGE  # bit 0 set: in RAM; the other bits are reserved (0)


@contextmanager
def released_after(enabled: bool) -> Iterator[Released]:
    """Around the making of a context (under ``LOADS``): afterwards its zero pages are handed back, and ``Released``
    says which. With ``enabled`` false nothing is handed back."""
    released = Released()
    if not enabled:
        yield released
        return
    before = mappings()
    yield released
    with GUARD.exclusive():
        spans = new_private_ranges(before, mappings())
        with _gil_kept():
            released.ranges = release_zero_runs(spans).ranges


@contextmanager
def _gil_kept() -> Iterator[None]:
    """No other Python thread runs inside (this one does no I/O there). A thread already waiting for the GIL
    measured its wait with the old interval: letting it run once first makes every later wait use the new one."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_WHILE_SCANNING)
    time.sleep(0.001)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
