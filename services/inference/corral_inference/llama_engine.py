"""The embedding engine (llama-cpp-python's ``Llama``) and the llama.cpp helpers the batch engine shares.

Every call happens on the runner's own thread."""

from __future__ import annotations

import os
from functools import lru_cache

import llama_cpp
from llama_cpp.llama_grammar import LlamaGrammar

from corral_common.errors import BadRequest, InternalError

from corral_inference.engine import CompletionJob, Emit, LoadSpec, Occupancy


@lru_cache(maxsize=64)
def _grammar(gbnf: str) -> LlamaGrammar:
    """Parsed grammars are reused across requests with the same format."""
    return LlamaGrammar.from_string(gbnf, verbose=False)


def _threads(requested: int) -> int:
    """num_thread, or every core this process may use."""
    return requested if requested > 0 else max(1, len(os.sched_getaffinity(0)))


def _gpu_layers(num_gpu: int) -> int:
    """Ollama's num_gpu: -1 = as many as fit (llama.cpp: all), otherwise that many layers."""
    if not llama_cpp.llama_supports_gpu_offload():
        return 0
    return -1 if num_gpu < 0 else num_gpu


def offloaded_bytes(size: int, num_gpu: int) -> int:
    """All of a model's bytes when its layers are offloaded to a GPU; 0 on CPU builds or with num_gpu 0."""
    return size if llama_cpp.llama_supports_gpu_offload() and _gpu_layers(num_gpu) != 0 else 0


class LlamaEngine:
    """An embedding model loaded with llama.cpp: one context, one request at a time."""

    slots = 1

    def __init__(self, spec: LoadSpec) -> None:
        # A generative model has no pooling of its own: mean-pool it when used for embeddings.
        pooling = (llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if spec.pooling_in_model
                   else llama_cpp.LLAMA_POOLING_TYPE_MEAN)
        self.spec = spec
        self.llm = llama_cpp.Llama(
            model_path=spec.model_path,
            n_ctx=spec.num_ctx, n_batch=spec.num_batch, n_ubatch=spec.num_batch,
            n_threads=_threads(spec.num_thread), n_threads_batch=_threads(spec.num_thread),
            n_gpu_layers=_gpu_layers(spec.num_gpu), main_gpu=spec.main_gpu, use_mmap=spec.use_mmap,
            lora_path=spec.adapters[0] if spec.adapters else None,
            embedding=True, pooling_type=pooling, verbose=False,
        )

    def submit(self, job: CompletionJob, emit: Emit) -> None:
        """Generation runs on the batch engine; a model loaded for embeddings answers with a 400."""
        emit(BadRequest("this model was loaded for embeddings and does not support generate"))

    def embed(self, texts: list[str], truncate: bool) -> tuple[list[list[float]], int]:
        """Raw vectors and the tokens evaluated; an input over the context without truncate is a 400."""
        try:
            vectors, count = self.llm.embed(texts, normalize=False, truncate=truncate, return_count=True)
        except ValueError as exc:
            if "exceed" in str(exc):
                raise BadRequest("the input length exceeds the context length") from None
            raise InternalError(str(exc)) from None
        return [list(map(float, v)) for v in vectors], count

    def tokenize(self, text: str) -> list[int]:
        """The text's tokens with BOS, special tokens parsed."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def size_bytes(self) -> int:
        """Weights plus the f16 KV cache: 2 × layers × ctx × embedding width × 2 bytes (an estimate)."""
        n_layer = llama_cpp.llama_model_n_layer(self.llm.model)
        n_embd = llama_cpp.llama_model_n_embd(self.llm.model)
        return int(self.llm._model.size()) + 2 * n_layer * self.llm.n_ctx() * n_embd * 2

    def vram_bytes(self) -> int:
        """Bytes offloaded to a GPU."""
        return offloaded_bytes(self.size_bytes(), self.spec.num_gpu)

    def occupancy(self, active: int) -> Occupancy:
        """One embedding at a time under the runner's lock: the leases say it all."""
        return Occupancy.of_leases(active, self.slots)

    def close(self) -> None:
        """Free the model."""
        self.llm.close()
