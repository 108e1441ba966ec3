"""The llama.cpp engine through llama-cpp-python. Every call happens on the runner's own thread."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

from functools import lru_cache
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import LlamaGrammar

from corral_inference.engine import LoadSpec, Sampling


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


class LlamaEngine:
    """A model loaded with llama.cpp."""

    def __init__(self, spec: LoadSpec) -> None:
        # A generative model has no pooling of its own: mean-pool it when used for embeddings.
        pooling = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if spec.pooling_in_model else llama_cpp.LLAMA_POOLING_TYPE_MEAN
        self.llm = llama_cpp.Llama(
            model_path=spec.model_path,
            n_ctx=spec.num_ctx, n_batch=spec.num_batch, n_ubatch=spec.num_batch,
            n_threads=_threads(spec.num_thread), n_threads_batch=_threads(spec.num_thread),
            n_gpu_layers=_gpu_layers(spec.num_gpu), main_gpu=spec.main_gpu, use_mmap=spec.use_mmap,
            lora_path=spec.adapters[0] if spec.adapters else None,
            embedding=spec.embedding, pooling_type=pooling if spec.embedding else llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED,
            verbose=False,
        )
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)

    def n_ctx(self) -> int:
        return self.llm.n_ctx()

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def token_bytes(self, token: int, previous: list[int]) -> bytes:
        return self.llm.detokenize([token], prev_tokens=previous)

    def is_end(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def cached_prefix(self, tokens: list[int]) -> int:
        cached = self.llm.input_ids[: self.llm.n_tokens]
        n = 0
        for a, b in zip(cached, tokens):
            if a != b:
                break
            n += 1
        return n

    def generate(self, tokens: list[int], sampling: Sampling) -> Iterator[int]:
        seed = sampling.seed if sampling.seed >= 0 else random.getrandbits(31)
        self.llm.set_seed(seed)
        self.llm.last_n_tokens_size = sampling.repeat_last_n if sampling.repeat_last_n >= 0 else self.n_ctx()
        return self.llm.generate(
            tokens, top_k=sampling.top_k, top_p=sampling.top_p, min_p=sampling.min_p,
            typical_p=sampling.typical_p, temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty, frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty, reset=True,
            grammar=_grammar(sampling.grammar) if sampling.grammar else None,
        )

    def logprobs(self, token: int, top_n: int) -> dict[str, Any]:
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(self.llm.n_vocab(),))
        peak = float(logits.max())
        logp = logits - (peak + np.log(np.exp(logits - peak).sum()))
        item = self._token_logprob(token, float(logp[token]))
        if top_n > 0:
            best = np.argpartition(-logp, top_n)[:top_n]
            best = best[np.argsort(-logp[best])]
            item["top_logprobs"] = [self._token_logprob(int(t), float(logp[t])) for t in best]
        return item

    def _token_logprob(self, token: int, logprob: float) -> dict[str, Any]:
        piece = self.llm.detokenize([token], special=True)
        return {"token": piece.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(piece)}

    def embed(self, texts: list[str], truncate: bool) -> tuple[list[list[float]], int]:
        vectors, count = self.llm.embed(texts, normalize=False, truncate=truncate, return_count=True)
        return [list(map(float, v)) for v in vectors], count

    def size_bytes(self) -> int:
        return int(self.llm._model.size()) + self._kv_bytes()

    def _kv_bytes(self) -> int:
        """K and V caches in f16: 2 × layers × ctx × embedding width × 2 bytes (an estimate)."""
        n_layer = llama_cpp.llama_model_n_layer(self.llm.model)
        n_embd = llama_cpp.llama_model_n_embd(self.llm.model)
        return 2 * n_layer * self.n_ctx() * n_embd * 2

    def close(self) -> None:
        self.llm.close()
