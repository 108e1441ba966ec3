"""A safe, pure-Python GGUF reader and validator.

llama.cpp's GGUF loader has had many memory-corruption bugs, so every file is read and checked
here first.  Nothing is allocated from an untrusted count before that count has been checked
against what the rest of the file could hold, and the file is read through a bounded buffer,
never whole.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_ALIGNMENT = 1 << 16
MAX_STRING_BYTES = 16 * 1024 * 1024
MAX_KEY_BYTES = (1 << 16) - 1
MAX_TENSOR_NAME_BYTES = 63  # GGML_MAX_NAME is 64 including the terminating NUL
MAX_ARRAY_ELEMENTS = 64 * 1024 * 1024
MAX_ARRAY_DEPTH = 2  # an array may hold arrays, those may not
MAX_DIMS = 4
MAX_TENSOR_ELEMENTS = 1 << 62
MAX_BLOCK_COUNT = 512
MAX_KV_COUNT = 1 << 20  # real files have tens; bounds the memory a hostile header can cost
MAX_TENSOR_COUNT = 1 << 20  # real files have at most tens of thousands
_MIN_KV_BYTES = 8 + 4  # key length + value type
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length + n_dims + type + offset
_CHUNK = 1 << 20

# GGUF metadata value types.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_SCALARS: dict[int, tuple[str, int]] = {
    UINT8: ("B", 1), INT8: ("b", 1), UINT16: ("H", 2), INT16: ("h", 2), UINT32: ("I", 4),
    INT32: ("i", 4), FLOAT32: ("f", 4), BOOL: ("B", 1), UINT64: ("Q", 8), INT64: ("q", 8),
    FLOAT64: ("d", 8),
}
_MIN_VALUE_BYTES = {**{t: size for t, (_, size) in _SCALARS.items()}, STRING: 8, ARRAY: 4 + 8}
_INTEGER_TYPES = frozenset({UINT8, INT8, UINT16, INT16, UINT32, INT32, UINT64, INT64})

# ggml_type id -> (name, elements per block, bytes per block), from ggml.h / ggml.c type_traits.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4),
    27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18), 42: ("Q2_0", 64, 18),
}

# llama_ftype (general.file_type) -> the name Ollama prints; removed ids are "unknown".
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}

_Metadata = dict[str, object]
_Types = dict[str, tuple[int, int | None]]  # key -> (value type, element type of arrays)
_BYTE_TOKEN = re.compile(r"<0x(..)>", re.DOTALL)
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")


def _q(name: str) -> str:
    """A key or name quoted for an error message, shortened when long."""
    return repr(name if len(name) <= 80 else name[:77] + "...")


class InvalidGGUF(ValueError):
    """The file is not a well-formed GGUF file that is safe to hand to llama.cpp."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"invalid GGUF: {detail}")
        self.detail = detail


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type: int
    type_name: str
    offset: int  # absolute offset of the tensor's data in the file

    def element_count(self) -> int:
        """Number of elements (product of the shape)."""
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    def nbytes(self) -> int:
        """Size of the tensor's data in bytes."""
        _, block, size = GGML_TYPES[self.type]
        return self.element_count() // block * size


@dataclass(frozen=True)
class GGUFFile:
    version: int
    metadata: dict[str, object]
    tensors: tuple[TensorInfo, ...]
    data_offset: int  # 0 when read with read_tensors=False
    file_size: int

    def _int(self, key: str) -> int | None:
        value = self.metadata.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _str(self, key: str) -> str | None:
        value = self.metadata.get(key)
        return value if isinstance(value, str) else None

    def architecture(self) -> str:
        """``general.architecture``, or "unknown" when absent."""
        return self._str("general.architecture") or "unknown"

    def file_type_name(self) -> str:
        """The quantisation name Ollama shows ("Q4_K_M", "F16", ...) from ``general.file_type``."""
        value = self._int("general.file_type")
        return "unknown" if value is None else FILE_TYPES.get(value, "unknown")

    def parameter_count(self) -> int:
        """``general.parameter_count`` if present, else the sum of the tensors' element counts."""
        value = self._int("general.parameter_count")
        if value is not None and value > 0:
            return value
        return sum(t.element_count() for t in self.tensors)

    def context_length(self) -> int | None:
        """``<arch>.context_length``, or None."""
        return self._int(f"{self.architecture()}.context_length")

    def embedding_length(self) -> int | None:
        """``<arch>.embedding_length``, or None."""
        return self._int(f"{self.architecture()}.embedding_length")

    def chat_template(self) -> str | None:
        """``tokenizer.chat_template``, or None."""
        return self._str("tokenizer.chat_template")

    def kind(self) -> str:
        """"model", "adapter" (LoRA) or "projector" (multimodal projector)."""
        general_type = self._str("general.type")
        if general_type == "adapter":
            return "adapter"
        if general_type == "mmproj" or self.architecture() == "clip":
            return "projector"
        return "model"


class _Reader:
    """Buffered little-endian reads that never go past the end of the file."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self.size = size
        self.pos = 0
        self._buf = b""
        self._off = 0

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

    def _fill(self, n: int) -> None:
        rest = self._buf[self._off:]
        chunk = self._f.read(max(_CHUNK, n) - len(rest))
        self._buf, self._off = rest + chunk, 0
        if len(self._buf) < n:
            raise InvalidGGUF(f"unexpected end of file at offset {self.pos + len(self._buf)}")

    def scalar(self, vtype: int, what: str) -> int | float:
        """One scalar of a GGUF value type."""
        code, size = _SCALARS[vtype]
        value: int | float = struct.unpack("<" + code, self.read(size, what))[0]
        return value

    def u32(self, what: str) -> int:
        """One uint32."""
        return int(struct.unpack("<I", self.read(4, what))[0])

    def u64(self, what: str) -> int:
        """One uint64."""
        return int(struct.unpack("<Q", self.read(8, what))[0])

    def string(self, what: str, limit: int = MAX_STRING_BYTES) -> str:
        """A uint64-length-prefixed UTF-8 string (invalid bytes replaced)."""
        n = self.u64(f"{what} length")
        if n > limit:
            raise InvalidGGUF(f"{what} length {n} exceeds limit")
        return self.read(n, what).decode("utf-8", errors="replace")


def _read_scalar_array(r: _Reader, etype: int, count: int, key: str) -> list[object]:
    code, size = _SCALARS[etype]
    values = list(struct.unpack(f"<{count}{code}", r.read(count * size, f"array {_q(key)}")))
    if etype == BOOL:
        if any(v > 1 for v in values):
            raise InvalidGGUF(f"array {_q(key)} holds a bool that is neither 0 nor 1")
        return [v == 1 for v in values]
    return values


def _read_array(r: _Reader, depth: int, key: str) -> tuple[list[object], int]:
    etype = r.u32(f"array type of {_q(key)}")
    count = r.u64(f"array length of {_q(key)}")
    if etype not in _MIN_VALUE_BYTES:
        raise InvalidGGUF(f"array {_q(key)} has unknown element type {etype}")
    if etype == ARRAY and depth >= MAX_ARRAY_DEPTH:
        raise InvalidGGUF(f"array {_q(key)} nests arrays deeper than {MAX_ARRAY_DEPTH} levels")
    if count > MAX_ARRAY_ELEMENTS:
        raise InvalidGGUF(f"array length {count} of {_q(key)} exceeds limit")
    if count * _MIN_VALUE_BYTES[etype] > r.remaining():
        raise InvalidGGUF(f"array {_q(key)} of {count} elements does not fit in the file")
    if etype in _SCALARS:
        return _read_scalar_array(r, etype, count, key), etype
    if etype == STRING:
        return [r.string("string") for _ in range(count)], etype
    return [_read_array(r, depth + 1, key)[0] for _ in range(count)], etype


def _read_value(r: _Reader, vtype: int, key: str) -> tuple[object, int | None]:
    """One metadata value and, for arrays, their element type."""
    if vtype == STRING:
        return r.string("string"), None
    if vtype == ARRAY:
        return _read_array(r, 1, key)
    if vtype not in _SCALARS:
        raise InvalidGGUF(f"key {_q(key)} has unknown value type {vtype}")
    value = r.scalar(vtype, f"value of {_q(key)}")
    if vtype == BOOL:
        if value > 1:
            raise InvalidGGUF(f"key {_q(key)} holds a bool that is neither 0 nor 1")
        return value == 1, None
    return value, None


def _read_metadata(r: _Reader, n_kv: int) -> tuple[_Metadata, _Types]:
    metadata: _Metadata = {}
    types: _Types = {}
    for _ in range(n_kv):
        key = r.string("key", MAX_KEY_BYTES)
        if key in metadata:
            raise InvalidGGUF(f"duplicate key {_q(key)}")
        vtype = r.u32(f"value type of {_q(key)}")
        value, etype = _read_value(r, vtype, key)
        metadata[key] = value
        types[key] = (vtype, etype)
    return metadata, types


def _require_type(key: str, types: _Types, vtype: int, etype: int | None, label: str) -> None:
    if key in types and types[key] != (vtype, etype):
        raise InvalidGGUF(f"{key} must be {label}")


def _check_alignment(metadata: _Metadata, types: _Types) -> int:
    if "general.alignment" not in metadata:
        return DEFAULT_ALIGNMENT
    _require_type("general.alignment", types, UINT32, None, "a uint32")
    alignment = metadata["general.alignment"]
    if not isinstance(alignment, int) or not 1 <= alignment <= MAX_ALIGNMENT or alignment & (alignment - 1):
        raise InvalidGGUF(f"general.alignment {alignment} is not a power of two in 1..{MAX_ALIGNMENT}")
    return alignment


def _check_block_count(metadata: _Metadata, types: _Types) -> None:
    arch = metadata.get("general.architecture")
    key = f"{arch}.block_count"
    if not isinstance(arch, str) or key not in metadata:
        return
    value = metadata[key]
    if types[key][0] not in _INTEGER_TYPES or not isinstance(value, int):
        raise InvalidGGUF(f"{_q(key)} must be an integer in 1..{MAX_BLOCK_COUNT}")
    if not 1 <= value <= MAX_BLOCK_COUNT:
        raise InvalidGGUF(f"{_q(key)} must be an integer in 1..{MAX_BLOCK_COUNT}, got {value}")


def _check_byte_tokens(tokens: list[str]) -> None:
    for token in tokens:
        if token.startswith("<0x"):
            match = _BYTE_TOKEN.fullmatch(token)
            if match and not _HEX2.fullmatch(match.group(1)):
                raise InvalidGGUF(f"byte token {token!r} is not <0x00>..<0xFF>")


def _check_tokenizer(metadata: _Metadata, types: _Types) -> None:
    _require_type("tokenizer.ggml.tokens", types, ARRAY, STRING, "an array of strings")
    _require_type("tokenizer.ggml.merges", types, ARRAY, STRING, "an array of strings")
    _require_type("tokenizer.ggml.scores", types, ARRAY, FLOAT32, "an array of float32")
    _require_type("tokenizer.ggml.token_type", types, ARRAY, INT32, "an array of int32")
    tokens = metadata.get("tokenizer.ggml.tokens")
    if tokens is None:
        return
    assert isinstance(tokens, list)
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        values = metadata.get(key)
        if isinstance(values, list) and len(values) != len(tokens):
            raise InvalidGGUF(f"{key} has {len(values)} entries for {len(tokens)} tokens")
    _check_byte_tokens(tokens)


def _read_tensor_info(r: _Reader) -> tuple[str, tuple[int, ...], int, int]:
    name = r.string("tensor name", MAX_TENSOR_NAME_BYTES)
    n_dims = r.u32(f"dimension count of tensor {name!r}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise InvalidGGUF(f"tensor {name!r} has {n_dims} dimensions, must be 1..{MAX_DIMS}")
    shape = struct.unpack(f"<{n_dims}Q", r.read(8 * n_dims, f"shape of tensor {name!r}"))
    ttype = r.u32(f"type of tensor {name!r}")
    offset = r.u64(f"offset of tensor {name!r}")
    return name, shape, ttype, offset


def _check_tensor(name: str, shape: tuple[int, ...], ttype: int, offset: int, alignment: int) -> int:
    """Validate one tensor info and return its data size in bytes."""
    count = 1
    for dim in shape:
        if dim < 1:
            raise InvalidGGUF(f"tensor {name!r} has a dimension of {dim}")
        count *= dim
        if count >= MAX_TENSOR_ELEMENTS:
            raise InvalidGGUF(f"tensor {name!r} with shape {list(shape)} has too many elements")
    if ttype not in GGML_TYPES:
        raise InvalidGGUF(f"tensor {name!r} has unknown type {ttype}")
    type_name, block, size = GGML_TYPES[ttype]
    if shape[0] % block:
        raise InvalidGGUF(f"tensor {name!r} of type {type_name}: first dimension {shape[0]} "
                          f"is not a multiple of the block size {block}")
    if offset % alignment:
        raise InvalidGGUF(f"tensor {name!r} offset {offset} is not aligned to {alignment}")
    return count // block * size


def _read_tensors(r: _Reader, n_tensors: int, alignment: int) -> tuple[list[tuple[TensorInfo, int]], int]:
    """Tensor infos with their data sizes, and the aligned start of the data section."""
    infos: list[tuple[str, tuple[int, ...], int, int, int]] = []
    names: set[str] = set()
    for _ in range(n_tensors):
        name, shape, ttype, offset = _read_tensor_info(r)
        if name in names:
            raise InvalidGGUF(f"duplicate tensor name {name!r}")
        names.add(name)
        infos.append((name, shape, ttype, offset, _check_tensor(name, shape, ttype, offset, alignment)))
    data_offset = -(-r.pos // alignment) * alignment
    return [(TensorInfo(name, tuple(shape), ttype, GGML_TYPES[ttype][0], data_offset + offset), nbytes)
            for name, shape, ttype, offset, nbytes in infos], data_offset


def _check_layout(tensors: list[tuple[TensorInfo, int]], file_size: int) -> None:
    end, previous = 0, ""
    for info, nbytes in sorted(tensors, key=lambda item: item[0].offset):
        if info.offset + nbytes > file_size:
            raise InvalidGGUF(f"data of tensor {info.name!r} ({nbytes} bytes at offset {info.offset}) "
                              f"extends past the end of the file ({file_size} bytes)")
        if info.offset < end:
            raise InvalidGGUF(f"data of tensors {previous!r} and {info.name!r} overlap")
        end, previous = info.offset + nbytes, info.name


def _read_header(r: _Reader) -> tuple[int, int, int]:
    if r.remaining() < len(MAGIC) or r.read(len(MAGIC), "magic") != MAGIC:
        raise InvalidGGUF("not a GGUF file (bad magic)")
    version = r.u32("version")
    if version not in SUPPORTED_VERSIONS:
        raise InvalidGGUF(f"unsupported GGUF version {version}")
    n_tensors = r.u64("tensor count")
    n_kv = r.u64("key-value count")
    if n_kv > MAX_KV_COUNT or n_tensors > MAX_TENSOR_COUNT:
        raise InvalidGGUF(f"{n_kv} key-value pairs or {n_tensors} tensors exceed the limit of "
                          f"{MAX_KV_COUNT} and {MAX_TENSOR_COUNT}")
    if n_kv * _MIN_KV_BYTES + n_tensors * _MIN_TENSOR_INFO_BYTES > r.remaining():
        raise InvalidGGUF(f"{n_kv} key-value pairs and {n_tensors} tensors cannot fit "
                          f"in the remaining {r.remaining()} bytes")
    return version, n_tensors, n_kv


def _parse(f: BinaryIO, file_size: int, read_tensors: bool) -> GGUFFile:
    r = _Reader(f, file_size)
    version, n_tensors, n_kv = _read_header(r)
    metadata, types = _read_metadata(r, n_kv)
    alignment = _check_alignment(metadata, types)
    _check_block_count(metadata, types)
    _check_tokenizer(metadata, types)
    if not read_tensors:
        return GGUFFile(version, metadata, (), 0, file_size)
    tensors, data_offset = _read_tensors(r, n_tensors, alignment)
    _check_layout(tensors, file_size)
    return GGUFFile(version, metadata, tuple(info for info, _ in tensors), data_offset, file_size)


def read_gguf(path: str | os.PathLike[str], *, read_tensors: bool = True) -> GGUFFile:
    """Read and validate a GGUF file; raises InvalidGGUF for any malformed or unsafe content."""
    with open(path, "rb", buffering=0) as f:
        return _parse(f, os.fstat(f.fileno()).st_size, read_tensors)


def is_gguf(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts with the GGUF magic (nothing else is checked)."""
    with open(path, "rb") as f:
        return f.read(4) == MAGIC


def human_number(n: int) -> str:
    """Ollama's format.HumanNumber: 134515008 -> "134.52M", 8030261248 -> "8.0B", 7000 -> "7K"."""
    if n < 0:
        raise ValueError("human_number takes a non-negative integer")
    for scale, suffix, decimals in ((1_000_000_000, "B", 1), (1_000_000, "M", 2)):
        if n >= scale:
            number = float(n) / scale
            if number == int(number):
                return f"{number:.0f}{suffix}"
            return f"{number:.{decimals}f}{suffix}"
    if n >= 1000:
        return f"{float(n) / 1000:.0f}K"
    return str(n)
