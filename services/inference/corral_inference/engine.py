"""The Engine seam: a loaded model that runs whole requests (llama.cpp batching, embeddings, or a fake in tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from corral_common.errors import AppError
from corral_common.internal import CompletionEvent


@dataclass(frozen=True)
class LoadSpec:
    """How to load a model: the runner options that force a reload when they change."""

    model_path: str
    adapters: tuple[str, ...] = ()
    projector: str = field(default="", metadata={"doc": "vision projector (mmproj) GGUF path, if the model has one"})
    num_ctx: int = 4096
    num_batch: int = 512
    num_gpu: int = -1
    main_gpu: int = 0
    use_mmap: bool = True
    num_thread: int = 0
    embedding: bool = False
    kv_cache_type: str = field(default="f16", metadata={"doc": "f16, q8_0 or q4_0 (OLLAMA_KV_CACHE_TYPE)"})
    flash_attention: bool | None = field(default=None, metadata={"doc": "OLLAMA_FLASH_ATTENTION; None: auto"})
    pooling_in_model: bool = field(default=False, compare=False)
    estimate_bytes: int = field(default=0, compare=False, metadata={"doc": "weights + KV cache, before loading"})


@dataclass(frozen=True)
class Sampling:
    """Sampling options for one request (never force a reload)."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_last_n: int = 64
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1
    mirostat: int = field(default=0, metadata={"doc": "0 off, 1 Mirostat, 2 Mirostat 2.0 (replaces top_k/p sampling)"})
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    num_predict: int = -1
    num_keep: int = 4
    stop: tuple[str, ...] = field(default_factory=tuple)
    grammar: str | None = field(default=None, metadata={"doc": "GBNF that constrains sampling"})

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "Sampling":
        """Pick the sampling fields out of validated options."""
        known = {k: v for k, v in options.items() if k in cls.__dataclass_fields__}
        if "stop" in known:
            known["stop"] = tuple(known["stop"])
        return cls(**known)


@dataclass
class CompletionJob:
    """What to generate: the engine makes prompt tokens from ``context`` + ``prompt`` on its own thread."""

    prompt: str
    context: list[int]
    sampling: Sampling
    cancel: threading.Event = field(default_factory=threading.Event)
    logprobs: bool = False
    top_logprobs: int = 0
    truncate: bool = True
    images: tuple[bytes, ...] = ()


# Text pieces, then one final event (``done``); or a typed error, after which nothing follows.
Emit = Callable[[CompletionEvent | AppError], None]


@dataclass(frozen=True)
class Occupancy:
    """An engine's slots in use, requests waiting for one, and KV cache cells used of its capacity."""

    busy: int
    waiting: int
    kv_used: int
    kv_total: int

    @classmethod
    def of_leases(cls, active: int, slots: int) -> "Occupancy":
        """What a lease count implies for an engine that keeps no queue or KV accounting of its own."""
        return cls(min(active, slots), max(0, active - slots), 0, 0)


class Engine(Protocol):
    """A loaded model. The scheduler calls every method but ``submit`` on the runner's own thread."""

    slots: int  # requests generated at once; more wait inside the engine

    def submit(self, job: CompletionJob, emit: Emit) -> None:
        """Queue a completion; its events arrive through emit, from any thread, until one is final or an error.

        Setting ``job.cancel`` ends it at the next token with ``done_reason`` "cancel"."""

    def embed(self, texts: list[str], truncate: bool) -> tuple[list[list[float]], int]:
        """One vector per text (not normalised) and the number of tokens evaluated."""

    def tokenize(self, text: str) -> list[int]:
        """The prompt's token ids as a completion would evaluate them (BOS added, special tokens parsed)."""

    def size_bytes(self) -> int:
        """Approximate memory the loaded model holds."""

    def vram_bytes(self) -> int:
        """The part of size_bytes held in GPU memory."""

    def unbacked_bytes(self) -> int:
        """The part of size_bytes not in RAM yet, which it takes as it is written (may be called from any thread)."""

    def occupancy(self, active: int) -> Occupancy:
        """Slots busy, requests waiting, KV cells used and held; ``active`` is the scheduler's lease count."""

    def close(self) -> None:
        """Free the model; requests still queued end with an error."""
