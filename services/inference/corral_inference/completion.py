"""One completion on a loaded engine: prompt in, text pieces and Ollama's final metrics out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral_inference.engine import Engine, Sampling
from corral_inference.textstream import TextStream

Emit = Callable[[dict[str, Any]], None]


@dataclass
class CompletionJob:
    """What to generate: prompt tokens are made on the runner thread from ``prompt`` and ``context``."""

    prompt: str
    context: list[int]
    sampling: Sampling
    cancel: threading.Event
    logprobs: bool = False
    top_logprobs: int = 0
    truncate: bool = True
    images: tuple[bytes, ...] = ()


class ContextOverflow(ValueError):
    """A prompt longer than the context when the request asked not to truncate."""


def prompt_tokens(job: CompletionJob, tokens: list[int], n_ctx: int) -> tuple[list[int], int]:
    """The prompt that fits the context and how many tokens were dropped to make it fit."""
    fitted = fit_context(tokens, n_ctx, job.sampling.num_keep)
    if len(fitted) < len(tokens) and not job.truncate:
        raise ContextOverflow("the input length exceeds the context length")
    return fitted, len(tokens) - len(fitted)


def fit_context(tokens: list[int], n_ctx: int, num_keep: int) -> list[int]:
    """Keep the prompt inside the context: the first num_keep tokens plus the most recent ones."""
    limit = n_ctx - 1
    if len(tokens) <= limit:
        return tokens
    keep = max(0, min(num_keep, limit // 2))
    return tokens[:keep] + tokens[len(tokens) - (limit - keep):]


def _max_tokens(sampling: Sampling, n_ctx: int, prompt_len: int) -> int:
    """num_predict (-1 unbounded, -2 fill the context) capped by the room left in the context."""
    room = max(0, n_ctx - prompt_len)
    return room if sampling.num_predict < 0 else min(sampling.num_predict, room)


def run_completion(engine: Engine, job: CompletionJob, emit: Emit) -> None:
    """Generate, calling emit for each text piece and once with the final metrics."""
    started = time.perf_counter_ns()
    tokens, _dropped = prompt_tokens(job, job.context + engine.tokenize(job.prompt), engine.n_ctx())
    cached = min(engine.cached_prefix(tokens), max(0, len(tokens) - 1))
    limit = _max_tokens(job.sampling, engine.n_ctx(), len(tokens))
    stream, generated = TextStream(job.sampling.stop), []
    first_token_at, reason = 0, "length"
    for token in (engine.generate(tokens, job.sampling) if limit > 0 else ()):
        first_token_at = first_token_at or time.perf_counter_ns()
        if job.cancel.is_set():
            reason = "cancel"
            break
        if engine.is_end(token):
            reason = "stop"
            break
        text, stopped = stream.push(engine.token_bytes(token, generated))
        generated.append(token)
        if job.logprobs:
            emit({"content": text, "logprobs": [engine.logprobs(token, job.top_logprobs)]})
        elif text:
            emit({"content": text})
        if stopped:
            reason = "stop"
            break
        if len(generated) >= limit:
            break
    tail = stream.flush()
    if tail and reason != "cancel":
        emit({"content": tail})
    ended = time.perf_counter_ns()
    first_token_at = first_token_at or ended
    emit({"done": True, "done_reason": reason, "context": tokens + generated,
          "prompt_eval_count": len(tokens) - cached, "prompt_eval_duration": first_token_at - started,
          "eval_count": len(generated), "eval_duration": ended - first_token_at})
