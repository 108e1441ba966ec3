"""A safe, pure-Python GGUF reader and validator.

llama.cpp's GGUF loader has had many memory-corruption bugs, so every file is read and checked
here first.  Nothing is allocated from an untrusted count before that count has been checked
against what the rest of the file could hold, and the file is read through a bounded buffer,
never whole.  What a parsed file keeps in memory is bounded too: large arrays and strings (a
vocabulary, a hostile ten-million-element array) are checked while they are skipped and stay in the
file (``gguf_io.LazyArray``), read on demand; keys and small values together may cost at most
``METADATA_MEMORY`` bytes.
"""

from __future__ import annotations

import io
import os
import struct
import sys
from dataclasses import dataclass, field
from typing import BinaryIO

from corral_common.gguf_io import (  # noqa: F401  (value types and InvalidGGUF are part of this module's API)
    ARRAY, BOOL, FLOAT32, FLOAT64, INT8, INT16, INT32, INT64, MAX_ARRAY_DEPTH, MAX_ARRAY_ELEMENTS,
    MAX_STRING_BYTES, SCALARS, STRING, UINT8, UINT16, UINT32, UINT64, InvalidGGUF,
    LazyArray, LazyString, Reader, ReadLimit, lazy_item, quoted, read_elements, read_lazy, scan_array,
)

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_ALIGNMENT = 1 << 16
MAX_KEY_BYTES = (1 << 16) - 1
MAX_TENSOR_NAME_BYTES = 63  # GGML_MAX_NAME is 64 including the terminating NUL
MAX_DIMS = 4
MAX_TENSOR_ELEMENTS = 1 << 62
MAX_BLOCK_COUNT = 512
MAX_KV_COUNT = 1 << 20  # real files have tens; bounds the memory a hostile header can cost
MAX_TENSOR_COUNT = 1 << 20  # real files have at most tens of thousands
# Arrays up to this size are kept in memory (per-layer values, small lists); larger ones (vocabularies)
# stay in the file. Strings up to INLINE_STRING_BYTES too (chat templates are tens of KiB).
INLINE_ARRAY_ELEMENTS = 1024
INLINE_ARRAY_BYTES = 64 * 1024
INLINE_STRING_BYTES = 1024 * 1024
METADATA_MEMORY = 16 * 1024 * 1024  # keys and in-memory values of one file, approximately
_ENTRY_BYTES = 200  # a key's dict slots, key object and type record: a generous estimate
_TENSOR_BYTES = 250  # one TensorInfo with its shape tuple, besides the name
_MIN_KV_BYTES = 8 + 4  # key length + value type
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length + n_dims + type + offset
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
Lazy = LazyArray | LazyString


@dataclass(frozen=True, slots=True)
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
    metadata: dict[str, object]  # large arrays and strings are LazyArray / LazyString: see value()
    tensors: tuple[TensorInfo, ...]
    data_offset: int  # 0 when read with read_tensors=False
    file_size: int
    path: str = ""  # where lazily kept values are read from
    memory: int = field(default=0, compare=False)  # approximate bytes this object holds

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
        value = self.value("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    def value(self, key: str) -> object:
        """A metadata value (None when absent), read from the file if it was left there."""
        return self.bounded_value(key, None)[0]

    def bounded_value(self, key: str, limit: ReadLimit | None) -> tuple[object, bool]:
        """A metadata value; one left in the file is read only until ``limit`` is spent (True: it was cut short)."""
        value = self.metadata.get(key)
        if isinstance(value, (LazyArray, LazyString)):
            return read_lazy(self.path, value, key, limit)
        return value, False

    def item(self, key: str, index: int) -> object | None:
        """Element ``index`` of an array value (read from the file if kept there); None when out of range."""
        value = self.metadata.get(key)
        if isinstance(value, list):
            return value[index] if 0 <= index < len(value) else None
        if isinstance(value, LazyArray) and 0 <= index < value.count:
            return lazy_item(self.path, value, index, key)
        return None

    def kind(self) -> str:
        """"model", "adapter" (LoRA) or "projector" (multimodal projector)."""
        general_type = self._str("general.type")
        if general_type == "adapter":
            return "adapter"
        if general_type == "mmproj" or self.architecture() == "clip":
            return "projector"
        return "model"


class _Budget:
    """The approximate memory a file's keys and in-memory values may still take."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, n: int) -> bool:
        """Spend n bytes if they are left."""
        if n > self.left:
            return False
        self.left -= n
        return True

    def require(self, n: int, n_kv: int) -> None:
        """Spend n bytes on what must stay in memory (keys, scalars, records of lazy values), or refuse the file."""
        if not self.take(n):
            raise InvalidGGUF(f"metadata of {n_kv} keys needs more than {METADATA_MEMORY // (1024 * 1024)} MiB "
                              "of memory")


def _inline_array(r: Reader, lazy: LazyArray, key: str, budget: _Budget) -> object:
    """A small array's elements (read again from the region just checked), or the lazy record if too big."""
    if lazy.count > INLINE_ARRAY_ELEMENTS or lazy.nbytes > INLINE_ARRAY_BYTES or lazy.nbytes > budget.left:
        return lazy
    data = r.region(lazy.offset, lazy.nbytes)
    values, _ = read_elements(Reader(io.BytesIO(data), len(data)), lazy.etype, lazy.count, 1, key)
    return values if budget.take(_size_of(values)) else lazy


def _size_of(value: object) -> int:
    """Approximate memory of an in-memory value or of the record of a lazily kept one."""
    if isinstance(value, list):
        return sys.getsizeof(value) + sum(_size_of(item) for item in value)
    if isinstance(value, LazyArray):
        return sys.getsizeof(value) + sys.getsizeof(value.marks) + 32 * len(value.marks)
    return sys.getsizeof(value)


def _read_string_value(r: Reader, key: str, budget: _Budget) -> object:
    n = r.string_length("string")
    if n > INLINE_STRING_BYTES or n > budget.left:
        lazy = LazyString(n, r.pos)
        r.skip(n, "string")
        return lazy
    text = r.read(n, "string").decode("utf-8", errors="replace")
    return text if budget.take(sys.getsizeof(text)) else LazyString(n, r.pos - n)


def _read_value(r: Reader, vtype: int, key: str, budget: _Budget) -> tuple[object, int | None]:
    """One metadata value and, for arrays, their element type."""
    if vtype == STRING:
        return _read_string_value(r, key, budget), None
    if vtype == ARRAY:
        lazy = scan_array(r, key)
        return _inline_array(r, lazy, key, budget), lazy.etype
    if vtype not in SCALARS:
        raise InvalidGGUF(f"key {quoted(key)} has unknown value type {vtype}")
    value = r.scalar(vtype, f"value of {quoted(key)}")
    if vtype == BOOL:
        if value > 1:
            raise InvalidGGUF(f"key {quoted(key)} holds a bool that is neither 0 nor 1")
        return value == 1, None
    return value, None


def _read_metadata(r: Reader, n_kv: int, budget: _Budget) -> tuple[_Metadata, _Types]:
    metadata: _Metadata = {}
    types: _Types = {}
    for _ in range(n_kv):
        key = r.string("key", MAX_KEY_BYTES)
        if key in metadata:
            raise InvalidGGUF(f"duplicate key {quoted(key)}")
        budget.require(_ENTRY_BYTES + len(key), n_kv)
        vtype = r.u32(f"value type of {quoted(key)}")
        value, etype = _read_value(r, vtype, key, budget)
        if isinstance(value, (LazyArray, LazyString)):
            budget.require(_size_of(value), n_kv)
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
        raise InvalidGGUF(f"{quoted(key)} must be an integer in 1..{MAX_BLOCK_COUNT}")
    if not 1 <= value <= MAX_BLOCK_COUNT:
        raise InvalidGGUF(f"{quoted(key)} must be an integer in 1..{MAX_BLOCK_COUNT}, got {value}")


def _check_tokenizer(metadata: _Metadata, types: _Types) -> None:
    """Vocabulary arrays of the types llama.cpp reads them as, one entry per token (byte tokens are checked
    while the vocabulary is read)."""
    _require_type("tokenizer.ggml.tokens", types, ARRAY, STRING, "an array of strings")
    _require_type("tokenizer.ggml.merges", types, ARRAY, STRING, "an array of strings")
    _require_type("tokenizer.ggml.scores", types, ARRAY, FLOAT32, "an array of float32")
    _require_type("tokenizer.ggml.token_type", types, ARRAY, INT32, "an array of int32")
    tokens = metadata.get("tokenizer.ggml.tokens")
    if tokens is None:
        return
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        values = metadata.get(key)
        if values is not None and len(values) != len(tokens):  # type: ignore[arg-type]
            raise InvalidGGUF(f"{key} has {len(values)} entries for {len(tokens)} tokens")  # type: ignore[arg-type]


def _read_tensor_info(r: Reader) -> tuple[str, tuple[int, ...], int, int]:
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


def _read_tensors(r: Reader, n_tensors: int, alignment: int) -> tuple[list[tuple[TensorInfo, int]], int]:
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


def _read_header(r: Reader) -> tuple[int, int, int]:
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


def _parse(f: BinaryIO, file_size: int, read_tensors: bool, path: str) -> GGUFFile:
    r = Reader(f, file_size)
    version, n_tensors, n_kv = _read_header(r)
    budget = _Budget(METADATA_MEMORY)
    metadata, types = _read_metadata(r, n_kv, budget)
    alignment = _check_alignment(metadata, types)
    _check_block_count(metadata, types)
    _check_tokenizer(metadata, types)
    memory = METADATA_MEMORY - budget.left
    if not read_tensors:
        return GGUFFile(version, metadata, (), 0, file_size, path, memory)
    tensors, data_offset = _read_tensors(r, n_tensors, alignment)
    _check_layout(tensors, file_size)
    memory += sum(_TENSOR_BYTES + len(info.name) for info, _ in tensors)
    return GGUFFile(version, metadata, tuple(info for info, _ in tensors), data_offset, file_size, path, memory)


def read_gguf(path: str | os.PathLike[str], *, read_tensors: bool = True) -> GGUFFile:
    """Read and validate a GGUF file; raises InvalidGGUF for any malformed or unsafe content.

    Large arrays and strings are checked but left in the file (see ``GGUFFile.value``)."""
    with open(path, "rb", buffering=0) as f:
        return _parse(f, os.fstat(f.fileno()).st_size, read_tensors, os.fspath(path))


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
