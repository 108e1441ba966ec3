"""The KV cache's element type and flash attention: OLLAMA_KV_CACHE_TYPE and OLLAMA_FLASH_ATTENTION mapped onto
llama.cpp's context parameters, and the bytes a cache of each type holds (for /api/ps and memory estimates).

Importable without llama.cpp: the ggml type numbers are those of ggml.h's ``enum ggml_type``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from corral_common.errors import InternalError
from corral_common.logs import get_logger

log = get_logger("corral.inference.kvcache")

FLASH_ATTN_AUTO, FLASH_ATTN_DISABLED, FLASH_ATTN_ENABLED = -1, 0, 1  # llama.cpp's enum llama_flash_attn_type


@dataclass(frozen=True)
class KvType:
    """One element type a KV cache can hold: ggml's number for it and its block layout."""

    name: str
    ggml_type: int
    block_bytes: int
    block_elements: int

    @property
    def quantized(self) -> bool:
        """Blocks of several elements: llama.cpp holds such a V cache only with flash attention."""
        return self.block_elements > 1

    def row_bytes(self, elements: int) -> int:
        """Bytes of one row of ``elements`` values (ggml_row_size)."""
        return -(-elements // self.block_elements) * self.block_bytes

    def fits(self, *widths: int) -> bool:
        """Whether rows of these widths split into whole blocks (llama.cpp refuses the cache otherwise)."""
        return all(width % self.block_elements == 0 for width in widths)


KV_TYPES = {t.name: t for t in (KvType("f16", 1, 2, 1), KvType("q8_0", 8, 34, 32), KvType("q4_0", 2, 18, 32))}
F16 = KV_TYPES["f16"]


def kv_type(name: str) -> KvType:
    """The type OLLAMA_KV_CACHE_TYPE names (empty: f16); a server error naming the choices otherwise."""
    found = KV_TYPES.get(name.strip().lower() or "f16")
    if found is None:
        raise InternalError(f'OLLAMA_KV_CACHE_TYPE "{name}" is not a KV cache type: set it to f16, q8_0 or q4_0')
    return found


@dataclass(frozen=True)
class KvShape:
    """What a model's KV cache rows look like: layers, KV heads and the K and V width of each head."""

    layers: int
    kv_heads: int
    head_k: int
    head_v: int

    def bytes(self, kind: KvType, cells: int) -> int:
        """K and V for every layer and cell: layers × cells × (row of K + row of V) in the cache's type."""
        return self.layers * cells * (kind.row_bytes(self.kv_heads * self.head_k)
                                      + kind.row_bytes(self.kv_heads * self.head_v))


def checked(name: str, flash_attention: bool | None, shape: KvShape) -> KvType:
    """The KV type a model is loaded with: a quantized cache needs flash attention (an error saying so when
    OLLAMA_FLASH_ATTENTION turns it off); a model whose heads do not split into blocks keeps f16, as in Ollama."""
    wanted = kv_type(name)
    if not wanted.quantized:
        return wanted
    if flash_attention is False:
        raise InternalError(f"OLLAMA_KV_CACHE_TYPE={wanted.name} needs flash attention (llama.cpp quantizes the V "
                            "cache only with it), but OLLAMA_FLASH_ATTENTION turns it off: set "
                            "OLLAMA_FLASH_ATTENTION=1 (or unset it), or OLLAMA_KV_CACHE_TYPE=f16")
    if not wanted.fits(shape.head_k, shape.head_v):
        _warn_unsupported(wanted.name, shape.head_k, shape.head_v)
        return F16
    return wanted


@lru_cache(maxsize=64)
def _warn_unsupported(name: str, head_k: int, head_v: int) -> None:
    """Said once per kind of model, not on every request's load check."""
    log.warning("kv cache type not supported by model", type=name, head_k=head_k, head_v=head_v)


def flash_attn_type(kind: KvType, flash_attention: bool | None) -> int:
    """llama.cpp's flash_attn_type: as set, on for a quantized cache, else llama.cpp decides (auto)."""
    if flash_attention is not None:
        return FLASH_ATTN_ENABLED if flash_attention else FLASH_ATTN_DISABLED
    return FLASH_ATTN_ENABLED if kind.quantized else FLASH_ATTN_AUTO
