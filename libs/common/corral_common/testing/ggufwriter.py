"""A tiny GGUF writer for tests: builds valid files and, through its raw pieces, malformed ones."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from corral_common.gguf import (
    ARRAY,
    BOOL,
    FLOAT32,
    FLOAT64,
    GGML_TYPES,
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
)

_CODES = {UINT8: "B", INT8: "b", UINT16: "H", INT16: "h", UINT32: "I", INT32: "i",
          FLOAT32: "f", BOOL: "?", UINT64: "Q", INT64: "q", FLOAT64: "d"}


def u32(n: int) -> bytes:
    """A little-endian uint32."""
    return struct.pack("<I", n)


def u64(n: int) -> bytes:
    """A little-endian uint64."""
    return struct.pack("<Q", n)


def gstr(s: str | bytes, length: int | None = None) -> bytes:
    """A GGUF string; ``length`` overrides the declared length (the bytes stay as given)."""
    data = s.encode() if isinstance(s, str) else s
    return u64(len(data) if length is None else length) + data


@dataclass(frozen=True)
class Arr:
    """A typed array value: element type and items (items of nested arrays are Arr too)."""

    etype: int
    items: list
    count: int | None = None  # overrides the declared element count


def value(vtype: int, v: object) -> bytes:
    """The encoding of one value of type ``vtype`` (without the type tag)."""
    if vtype == STRING:
        return gstr(v)  # type: ignore[arg-type]
    if vtype == ARRAY:
        assert isinstance(v, Arr)
        count = len(v.items) if v.count is None else v.count
        return u32(v.etype) + u64(count) + b"".join(value(v.etype, item) for item in v.items)
    return struct.pack("<" + _CODES[vtype], v)


def kv(key: str, vtype: int, v: object) -> bytes:
    """One key-value pair."""
    return gstr(key) + u32(vtype) + value(vtype, v)


def tensor_info(name: str, shape: list[int], ttype: int, offset: int) -> bytes:
    """One tensor info record."""
    return gstr(name) + u32(len(shape)) + b"".join(u64(d) for d in shape) + u32(ttype) + u64(offset)


def nbytes(shape: list[int], ttype: int) -> int:
    """Data size of a tensor."""
    _, block, size = GGML_TYPES[ttype]
    count = 1
    for dim in shape:
        count *= dim
    return count // block * size


@dataclass
class Tensor:
    name: str
    shape: list[int]
    ttype: int = 0
    offset: int | None = None  # None: laid out after the previous tensor
    data: bytes | None = None  # None: zeros of the right size


@dataclass
class GGUF:
    """A GGUF file under construction; ``build()`` returns its bytes."""

    kvs: list[tuple[str, int, object]] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    version: int = 3
    alignment: int = 32
    n_kv: int | None = None  # override the declared counts
    n_tensors: int | None = None
    raw_kvs: bytes = b""  # appended after the encoded kvs (count them in n_kv)
    raw_tensor_infos: bytes = b""  # appended after the encoded tensor infos (count them in n_tensors)

    def add(self, key: str, vtype: int, v: object) -> GGUF:
        """Append a key-value pair."""
        self.kvs.append((key, vtype, v))
        return self

    def setting(self, key: str, vtype: int, v: object) -> GGUF:
        """This file with one key's type and value replaced (a file llama.cpp may refuse)."""
        self.kvs = [(k, vtype, v) if k == key else (k, t, old) for k, t, old in self.kvs]
        return self

    def without_tensor(self, name: str) -> GGUF:
        """This file without one tensor."""
        self.tensors = [t for t in self.tensors if t.name != name]
        return self

    def tensor(self, name: str, shape: list[int], ttype: int = 0, **kw: object) -> GGUF:
        """Append a tensor."""
        self.tensors.append(Tensor(name, shape, ttype, **kw))  # type: ignore[arg-type]
        return self

    def _layout(self) -> list[tuple[Tensor, int, bytes]]:
        placed, cursor = [], 0
        for t in self.tensors:
            data = t.data if t.data is not None else bytes(nbytes(t.shape, t.ttype))
            offset = cursor if t.offset is None else t.offset
            placed.append((t, offset, data))
            cursor = -(-(offset + len(data)) // self.alignment) * self.alignment
        return placed

    def build(self) -> bytes:
        """The file's bytes."""
        placed = self._layout()
        n_kv = len(self.kvs) if self.n_kv is None else self.n_kv
        n_tensors = len(self.tensors) if self.n_tensors is None else self.n_tensors
        out = bytearray(b"GGUF" + u32(self.version) + u64(n_tensors) + u64(n_kv))
        out += b"".join(kv(*item) for item in self.kvs) + self.raw_kvs
        out += b"".join(tensor_info(t.name, t.shape, t.ttype, off) for t, off, _ in placed)
        out += self.raw_tensor_infos
        start = -(-len(out) // self.alignment) * self.alignment
        out += bytes(start - len(out))
        for _, offset, data in placed:
            end = start + offset + len(data)
            if len(out) < end:
                out += bytes(end - len(out))
            out[start + offset:end] = data
        return bytes(out)


def small_model(arch: str = "llama") -> GGUF:
    """A small valid file: metadata, a tiny vocabulary, three tensors. Our validator accepts it; llama.cpp
    does not load it as a model (too few tensors): use ``runnable_model`` for that."""
    tokens = ["<unk>", "<s>", "</s>", "<0x0A>", "hello", "world"]
    return (GGUF()
            .add("general.architecture", STRING, arch)
            .add("general.type", STRING, "model")
            .add("general.file_type", UINT32, 2)
            .add(f"{arch}.block_count", UINT32, 1)
            .add(f"{arch}.context_length", UINT32, 2048)
            .add(f"{arch}.embedding_length", UINT32, 64)
            .add("general.tags", ARRAY, Arr(STRING, ["a", "b"]))
            .add("general.flag", BOOL, True)
            .add("tokenizer.ggml.tokens", ARRAY, Arr(STRING, tokens))
            .add("tokenizer.ggml.scores", ARRAY, Arr(FLOAT32, [0.0] * len(tokens)))
            .add("tokenizer.ggml.token_type", ARRAY, Arr(INT32, [2, 3, 3, 6, 1, 1]))
            .add("tokenizer.chat_template", STRING, "{{ messages }}")
            .tensor("token_embd.weight", [64, 6], 2)
            .tensor("output_norm.weight", [64], 0)
            .tensor("blk.0.attn_q.weight", [32, 2], 1))


# A vocabulary that can spell any text: sentencepiece falls back to the 256 byte tokens (llama.cpp aborts
# when one it needs is missing).
_TOKENS = ["<unk>", "<s>", "</s>", *(f"<0x{i:02X}>" for i in range(256)), "\u2581hello", "\u2581world"]
_TOKEN_TYPES = [2, 3, 3, *([6] * 256), 1, 1]  # unknown, control, control, bytes, normal, normal


def runnable_model(n_embd: int = 64, n_ff: int | None = None) -> GGUF:
    """A complete one-layer llama that llama.cpp loads, quantizes and generates with (F32 zeros: it says nothing
    useful); about ``(2 * n_vocab + 4 * n_embd + 3 * n_ff) * n_embd * 4`` bytes."""
    n_vocab, n_ff = len(_TOKENS), n_ff or 2 * n_embd
    f = (GGUF()
         .add("general.architecture", STRING, "llama")
         .add("general.type", STRING, "model")
         .add("general.file_type", UINT32, 0)
         .add("llama.block_count", UINT32, 1)
         .add("llama.context_length", UINT32, 256)
         .add("llama.embedding_length", UINT32, n_embd)
         .add("llama.feed_forward_length", UINT32, n_ff)
         .add("llama.attention.head_count", UINT32, 2)
         .add("llama.attention.layer_norm_rms_epsilon", FLOAT32, 1e-5)
         .add("tokenizer.ggml.model", STRING, "llama")
         .add("tokenizer.ggml.tokens", ARRAY, Arr(STRING, _TOKENS))
         .add("tokenizer.ggml.scores", ARRAY, Arr(FLOAT32, [0.0] * n_vocab))
         .add("tokenizer.ggml.token_type", ARRAY, Arr(INT32, _TOKEN_TYPES)))
    f.tensor("token_embd.weight", [n_embd, n_vocab]).tensor("output_norm.weight", [n_embd])
    f.tensor("output.weight", [n_embd, n_vocab])
    for name in ("attn_norm", "ffn_norm"):
        f.tensor(f"blk.0.{name}.weight", [n_embd])
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        f.tensor(f"blk.0.{name}.weight", [n_embd, n_embd])
    f.tensor("blk.0.ffn_gate.weight", [n_embd, n_ff]).tensor("blk.0.ffn_up.weight", [n_embd, n_ff])
    return f.tensor("blk.0.ffn_down.weight", [n_ff, n_embd])
