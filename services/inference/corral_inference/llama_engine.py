"""The embedding engine (llama-cpp-python's ``Llama``) and the llama.cpp helpers the batch engine shares.

Every call happens on the runner's own thread."""

from __future__ import annotations

import ctypes
import os
from functools import cached_property, lru_cache
from typing import Any

import llama_cpp
from llama_cpp.llama_grammar import LlamaGrammar

from corral_common.errors import BadRequest, InternalError

from corral_inference import zeropages
from corral_inference.completion import CUT_MARGIN, certainly_longer
from corral_inference.engine import CompletionJob, Emit, LoadSpec, Occupancy
from corral_inference.kvcache import F16, KvShape


@lru_cache(maxsize=64)
def _grammar(gbnf: str) -> LlamaGrammar:
    """Parsed grammars are reused across requests with the same format."""
    return LlamaGrammar.from_string(gbnf, verbose=False)


def grammar_sampler(model: Any, gbnf: str) -> Any:
    """llama.cpp's grammar sampler for a GBNF grammar; a 400 when llama.cpp cannot build it (a chain holding the
    null it returns then would crash the process at the first token)."""
    grammar = _grammar(gbnf)
    handle = llama_cpp.llama_sampler_init_grammar(model.vocab, grammar._grammar.encode("utf-8"),
                                                  grammar._root.encode("utf-8"))
    if not handle:
        raise BadRequest("invalid format: llama.cpp cannot build a grammar this large; ask for fewer repetitions")
    return handle


def longest_piece(model: Any) -> int:
    """The byte length of the model's longest token (special tokens included): no token covers more text."""
    return max((len(model.token_to_piece(token, special=True)) for token in range(model.n_vocab())), default=1)


def _meta_int(model: Any, key: str) -> int:
    """An integer of the model's GGUF metadata under its architecture's prefix; 0 when absent."""
    buf = ctypes.create_string_buffer(64)
    arch = llama_cpp.llama_model_meta_val_str(model.model, b"general.architecture", buf, len(buf))
    if arch < 0:
        return 0
    key_bytes = buf.value + b"." + key.encode()
    if llama_cpp.llama_model_meta_val_str(model.model, key_bytes, buf, len(buf)) < 0:
        return 0
    try:
        return int(buf.value)
    except ValueError:
        return 0


def model_kv_shape(model: Any) -> KvShape:
    """The KV cache's rows of a loaded model (head widths from its metadata, else embedding width / heads)."""
    m = model.model
    heads = max(1, llama_cpp.llama_model_n_head(m))
    head_k = _meta_int(model, "attention.key_length") or llama_cpp.llama_model_n_embd(m) // heads
    return KvShape(layers=llama_cpp.llama_model_n_layer(m), kv_heads=llama_cpp.llama_model_n_head_kv(m),
                   head_k=head_k, head_v=_meta_int(model, "attention.value_length") or head_k)


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
        texts = [self._bounded(text, truncate) for text in texts]
        try:
            with zeropages.GUARD.shared():
                vectors, count = self.llm.embed(texts, normalize=False, truncate=truncate, return_count=True)
        except ValueError as exc:
            if "exceed" in str(exc):
                raise BadRequest("the input length exceeds the context length") from None
            raise InternalError(str(exc)) from None
        return [list(map(float, v)) for v in vectors], count

    def _bounded(self, text: str, truncate: bool) -> str:
        """An input certainly longer than one batch (llama.cpp embeds only that much) cut to its first batch and a
        margin, so it is never tokenized whole; without truncate it is refused before tokenizing."""
        data = text.encode("utf-8")
        if not certainly_longer(data, self.llm.n_batch, lambda: self.piece_max):
            return text
        if not truncate:
            raise BadRequest("the input length exceeds the context length")
        return data[:(self.llm.n_batch + CUT_MARGIN) * self.piece_max].decode("utf-8", "ignore")

    @cached_property
    def piece_max(self) -> int:
        """The longest token's text in bytes (read once, when an input first is long enough to ask)."""
        return longest_piece(self.llm._model)

    def tokenize(self, text: str) -> list[int]:
        """The text's tokens with BOS, special tokens parsed."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def size_bytes(self) -> int:
        """Weights plus the f16 KV cache of the context."""
        return int(self.llm._model.size()) + model_kv_shape(self.llm._model).bytes(F16, self.llm.n_ctx())

    def vram_bytes(self) -> int:
        """Bytes offloaded to a GPU."""
        return offloaded_bytes(self.size_bytes(), self.spec.num_gpu)

    def unbacked_bytes(self) -> int:
        """All of it is in RAM (an embedding context's cache is small: nothing is handed back)."""
        return 0

    def occupancy(self, active: int) -> Occupancy:
        """One embedding at a time under the runner's lock: the leases say it all."""
        return Occupancy.of_leases(active, self.slots)

    def close(self) -> None:
        """Free the model."""
        with zeropages.GUARD.shared():
            self.llm.close()
