"""Low-level GGUF value reading for ``corral_common.gguf``: bounded reads, skipping, and values kept in the file.

A metadata value that would cost much memory (a tokenizer's vocabulary, a hostile ten-million-element
array) is not materialised: the reader checks it while skipping over it and records where it lies
(``LazyArray``, ``LazyString``). Its elements are read on demand, a few at a time or up to a
``ReadLimit``, so what a process keeps per file stays small whatever the file holds.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from typing import BinaryIO

MAX_STRING_BYTES = 16 * 1024 * 1024
MAX_ARRAY_ELEMENTS = 64 * 1024 * 1024
MAX_ARRAY_DEPTH = 2  # an array may hold arrays, those may not
STRIDE = 4096  # an array of variable-size elements remembers where every STRIDE-th element starts
_CHUNK = 1 << 20

# GGUF metadata value types.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
SCALARS: dict[int, tuple[str, int]] = {
    UINT8: ("B", 1), INT8: ("b", 1), UINT16: ("H", 2), INT16: ("h", 2), UINT32: ("I", 4),
    INT32: ("i", 4), FLOAT32: ("f", 4), BOOL: ("B", 1), UINT64: ("Q", 8), INT64: ("q", 8),
    FLOAT64: ("d", 8),
}
MIN_VALUE_BYTES = {**{t: size for t, (_, size) in SCALARS.items()}, STRING: 8, ARRAY: 4 + 8}
TOKENS_KEY = "tokenizer.ggml.tokens"
_U64 = struct.Struct("<Q")
_BYTE_TOKEN = re.compile(rb"<0x(..)>", re.DOTALL)
_HEX2 = re.compile(rb"[0-9A-Fa-f]{2}")


def quoted(name: str) -> str:
    """A key or name quoted for an error message, shortened when long."""
    return repr(name if len(name) <= 80 else name[:77] + "...")


class InvalidGGUF(ValueError):
    """The file is not a well-formed GGUF file that is safe to hand to llama.cpp."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"invalid GGUF: {detail}")
        self.detail = detail


@dataclass(frozen=True, slots=True)
class LazyArray:
    """An array left in the file: element type, length, where it lies, and where every STRIDE-th element starts."""

    etype: int
    count: int
    offset: int  # file offset of the first element
    nbytes: int  # bytes the elements take in the file
    marks: tuple[int, ...] = ()  # offsets of elements 0, STRIDE, 2*STRIDE, ... (variable-size elements only)

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True, slots=True)
class LazyString:
    """A string too long to keep in memory, left in the file."""

    nbytes: int
    offset: int

    def __len__(self) -> int:
        return self.nbytes


class ReadLimit:
    """How many more elements and in-file bytes a caller will materialise from lazily kept values."""

    def __init__(self, items: int, nbytes: int) -> None:
        self.items, self.nbytes = items, nbytes

    def take(self, items: int, nbytes: int) -> bool:
        """Spend ``items`` and ``nbytes`` if both are left; False (nothing spent) when not."""
        if items > self.items or nbytes > self.nbytes:
            return False
        self.items, self.nbytes = self.items - items, self.nbytes - nbytes
        return True


class Reader:
    """Buffered little-endian reads that never go past the end of the file."""

    def __init__(self, f: BinaryIO, size: int, pos: int = 0) -> None:
        self._f = f
        self.size = size
        self.pos = pos
        self._buf = b""
        self._off = 0
        if pos:
            f.seek(pos)

    def remaining(self) -> int:
        """Bytes left in the file after the current position."""
        return self.size - self.pos

    def read(self, n: int, what: str) -> bytes:
        """Exactly n bytes, or InvalidGGUF when the file ends first."""
        if n > self.size - self.pos:
            raise InvalidGGUF(f"unexpected end of file reading {what} at offset {self.pos}")
        if self._off + n > len(self._buf):
            self._fill(n)
        out = self._buf[self._off:self._off + n]
        self._off += n
        self.pos += n
        return out

    def skip(self, n: int, what: str) -> None:
        """Move past n bytes without reading them (InvalidGGUF when the file ends first)."""
        if n > self.size - self.pos:
            raise InvalidGGUF(f"unexpected end of file reading {what} at offset {self.pos}")
        if self._off + n <= len(self._buf):
            self._off += n
        else:
            self._f.seek(self.pos + n)
            self._buf, self._off = b"", 0
        self.pos += n

    def region(self, offset: int, n: int) -> bytes:
        """n bytes at ``offset`` (already checked to lie in the file), leaving the read position alone."""
        return os.pread(self._f.fileno(), n, offset)

    def _fill(self, n: int) -> None:
        rest = self._buf[self._off:]
        chunk = self._f.read(max(_CHUNK, n) - len(rest))
        self._buf, self._off = rest + chunk, 0
        if len(self._buf) < n:
            raise InvalidGGUF(f"unexpected end of file at offset {self.pos + len(self._buf)}")

    def scalar(self, vtype: int, what: str) -> int | float:
        """One scalar of a GGUF value type."""
        code, size = SCALARS[vtype]
        value: int | float = struct.unpack("<" + code, self.read(size, what))[0]
        return value

    def u32(self, what: str) -> int:
        """One uint32."""
        return int(struct.unpack("<I", self.read(4, what))[0])

    def u64(self, what: str) -> int:
        """One uint64."""
        return int(_U64.unpack(self.read(8, what))[0])

    def string_length(self, what: str, limit: int = MAX_STRING_BYTES) -> int:
        """The uint64 length prefix of a string, checked against ``limit``."""
        n = self.u64(f"{what} length")
        if n > limit:
            raise InvalidGGUF(f"{what} length {n} exceeds limit")
        return n

    def string(self, what: str, limit: int = MAX_STRING_BYTES) -> str:
        """A uint64-length-prefixed UTF-8 string (invalid bytes replaced)."""
        return self.read(self.string_length(what, limit), what).decode("utf-8", errors="replace")

    def skip_strings(self, count: int, key: str, marks: list[int] | None) -> None:
        """Move past ``count`` strings, checking each length (and byte tokens in the vocabulary), noting marks.

        The loop works on the buffer directly: a hostile array of tens of millions of empty strings is
        skipped in seconds, not minutes."""
        check_tokens, index = key == TOKENS_KEY, 0
        while index < count:
            buf, off, end, start = self._buf, self._off, len(self._buf), self._off
            while index < count and off + 8 <= end:
                n = _U64.unpack_from(buf, off)[0]
                if n > MAX_STRING_BYTES:
                    raise InvalidGGUF(f"string length {n} exceeds limit")
                if off + 8 + n > end:
                    break
                if marks is not None and index % STRIDE == 0:
                    marks.append(self.pos + off - start)
                if check_tokens and buf.startswith(b"<0x", off + 8):
                    _check_byte_token(buf[off + 8:off + 8 + n])
                off += 8 + n
                index += 1
            self.pos += off - start
            self._off = off
            if index < count:  # the next string straddles the buffer's end
                if marks is not None and index % STRIDE == 0:
                    marks.append(self.pos)
                n = self.string_length("string")
                if check_tokens:
                    token = self.read(n, "string")
                    if token.startswith(b"<0x"):
                        _check_byte_token(token)
                else:
                    self.skip(n, "string")
                index += 1

    def check_bools(self, count: int, key: str) -> None:
        """Move past ``count`` bools, each of which must be 0 or 1."""
        while count:
            n = min(count, _CHUNK)
            if max(self.read(n, f"array {quoted(key)}")) > 1:
                raise InvalidGGUF(f"array {quoted(key)} holds a bool that is neither 0 nor 1")
            count -= n


def _check_byte_token(token: bytes) -> None:
    match = _BYTE_TOKEN.fullmatch(token)
    if match and not _HEX2.fullmatch(match.group(1)):
        shown = token.decode("utf-8", errors="replace")
        raise InvalidGGUF(f"byte token {shown!r} is not <0x00>..<0xFF>")


def array_header(r: Reader, depth: int, key: str) -> tuple[int, int]:
    """An array's element type and count, checked against the limits and against what the file could hold."""
    etype = r.u32(f"array type of {quoted(key)}")
    count = r.u64(f"array length of {quoted(key)}")
    if etype not in MIN_VALUE_BYTES:
        raise InvalidGGUF(f"array {quoted(key)} has unknown element type {etype}")
    if etype == ARRAY and depth >= MAX_ARRAY_DEPTH:
        raise InvalidGGUF(f"array {quoted(key)} nests arrays deeper than {MAX_ARRAY_DEPTH} levels")
    if count > MAX_ARRAY_ELEMENTS:
        raise InvalidGGUF(f"array length {count} of {quoted(key)} exceeds limit")
    if count * MIN_VALUE_BYTES[etype] > r.remaining():
        raise InvalidGGUF(f"array {quoted(key)} of {count} elements does not fit in the file")
    return etype, count


def _skip_elements(r: Reader, etype: int, count: int, depth: int, key: str, marks: list[int] | None) -> None:
    """Check and move past ``count`` elements of type ``etype``."""
    if etype == BOOL:
        r.check_bools(count, key)
    elif etype in SCALARS:
        r.skip(count * SCALARS[etype][1], f"array {quoted(key)}")
    elif etype == STRING:
        r.skip_strings(count, key, marks)
    else:
        for index in range(count):
            if marks is not None and index % STRIDE == 0:
                marks.append(r.pos)
            inner_type, inner_count = array_header(r, depth + 1, key)
            _skip_elements(r, inner_type, inner_count, depth + 1, key, None)


def scan_array(r: Reader, key: str) -> LazyArray:
    """Check a top-level array while moving past it; returns where it lies."""
    etype, count = array_header(r, 1, key)
    start, marks = r.pos, ([] if etype in (STRING, ARRAY) else None)
    _skip_elements(r, etype, count, 1, key, marks)
    return LazyArray(etype, count, start, r.pos - start, tuple(marks or ()))


def _scalars(r: Reader, etype: int, count: int, key: str) -> list[object]:
    code, size = SCALARS[etype]
    values = list(struct.unpack(f"<{count}{code}", r.read(count * size, f"array {quoted(key)}")))
    if etype == BOOL:
        if any(v > 1 for v in values):
            raise InvalidGGUF(f"array {quoted(key)} holds a bool that is neither 0 nor 1")
        return [v == 1 for v in values]
    return values


def read_elements(r: Reader, etype: int, count: int, depth: int, key: str,
                  limit: ReadLimit | None = None) -> tuple[list[object], bool]:
    """Up to ``count`` elements (fewer once ``limit`` is spent); True when some were left out."""
    if etype in SCALARS:
        size = SCALARS[etype][1]
        if limit is not None:
            fits = min(count, limit.items, limit.nbytes // size)
            limit.take(fits, fits * size)
            return _scalars(r, etype, fits, key), fits < count
        return _scalars(r, etype, count, key), False
    out: list[object] = []
    for _ in range(count):
        if etype == STRING:
            n = r.string_length("string")
            if limit is not None and not limit.take(1, 8 + n):
                return out, True
            out.append(r.read(n, "string").decode("utf-8", errors="replace"))
        else:
            if limit is not None and not limit.take(1, MIN_VALUE_BYTES[ARRAY]):
                return out, True
            inner_type, inner_count = array_header(r, depth + 1, key)
            inner, cut = read_elements(r, inner_type, inner_count, depth + 1, key, limit)
            out.append(inner)
            if cut:
                return out, True
    return out, False


def open_at(path: str, offset: int) -> tuple[BinaryIO, Reader]:
    """The file, and a reader positioned at ``offset`` in it (close the file when done)."""
    f = open(path, "rb", buffering=0)
    try:
        return f, Reader(f, os.fstat(f.fileno()).st_size, offset)
    except BaseException:
        f.close()
        raise


def lazy_item(path: str, value: LazyArray, index: int, key: str) -> object:
    """Element ``index`` of an array left in the file, read from it now."""
    if not 0 <= index < value.count:
        raise IndexError(index)
    f, r = open_at(path, value.offset)
    with f:
        if value.etype in SCALARS:
            r.skip(index * SCALARS[value.etype][1], f"array {quoted(key)}")
        else:
            r = Reader(f, r.size, value.marks[index // STRIDE])
            _skip_elements(r, value.etype, index % STRIDE, 1, key, None)
        return read_elements(r, value.etype, 1, 1, key)[0][0]


def read_lazy(path: str, value: LazyArray | LazyString, key: str,
              limit: ReadLimit | None = None) -> tuple[object, bool]:
    """A value left in the file, read now (cut short once ``limit`` is spent); True when it was cut."""
    f, r = open_at(path, value.offset)
    with f:
        if isinstance(value, LazyString):
            n = value.nbytes if limit is None else min(value.nbytes, limit.nbytes)
            if limit is not None:
                limit.take(0, n)
            return r.read(n, "string").decode("utf-8", errors="replace"), n < value.nbytes
        return read_elements(r, value.etype, value.count, 1, key, limit)
