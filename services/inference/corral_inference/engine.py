"""The Engine seam: what the scheduler needs from a model runtime (llama.cpp, or a fake in unit tests)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


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


class Engine(Protocol):
    """A loaded model."""

    def n_ctx(self) -> int:
        """Context length the model was loaded with."""

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a rendered prompt (special tokens parsed, BOS as the model wants)."""

    def token_bytes(self, token: int, previous: list[int]) -> bytes:
        """The bytes one generated token adds after ``previous``."""

    def is_end(self, token: int) -> bool:
        """Whether a token ends generation (end-of-generation tokens)."""

    def cached_prefix(self, tokens: list[int]) -> int:
        """How many leading tokens are already in the KV cache."""

    def generate(self, tokens: list[int], sampling: Sampling) -> Iterator[int]:
        """Evaluate the prompt and yield sampled tokens until the caller stops."""

    def logprobs(self, token: int, top_n: int) -> dict[str, Any]:
        """Log-probability of the token just sampled, with the ``top_n`` most likely alternatives."""

    def embed(self, texts: list[str], truncate: bool) -> tuple[list[list[float]], int]:
        """One vector per text (not normalised) and the number of tokens evaluated."""

    def size_bytes(self) -> int:
        """Approximate memory the loaded model holds."""

    def close(self) -> None:
        """Free the model."""
