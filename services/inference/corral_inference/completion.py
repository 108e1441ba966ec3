"""One request's generation, shared by every engine: the prompt that fits, the token limit, stop strings,
end of generation, cancellation and the final event with Ollama's metrics.

An engine owns the model calls (tokenize, decode, sample); for each sampled token it calls ``Generation.step``,
which decides what the client sees and when the request is over.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from corral_common.errors import AppError, BadRequest
from corral_common.internal import CompletionEvent

from corral_inference.engine import CompletionJob, Emit, Sampling
from corral_inference.textstream import TextStream

# (UTF-8 text, add BOS) → token ids, special tokens parsed: the engine's tokenizer.
Tokenize = Callable[[bytes, bool], list[int]]
# Tokens tokenized beyond the ones kept where a long prompt is cut, so that a word the cut splits (tokenized
# differently from its whole) never reaches the kept tokens.
CUT_MARGIN = 64


class ContextOverflow(BadRequest):
    """A prompt longer than the context when the request asked not to truncate."""

    def __init__(self) -> None:
        super().__init__("the input length exceeds the context length")


class UnknownToken(BadRequest):
    """A token id in the request's ``context`` that the model's vocabulary does not have."""

    def __init__(self, token: int, n_vocab: int) -> None:
        super().__init__(f"context holds token id {token}, which is not in the model's vocabulary"
                         f" (ids 0 to {n_vocab - 1})")


def known_context(context: list[int], n_vocab: int) -> list[int]:
    """The request's context tokens, each checked against the vocabulary before the model sees it."""
    for token in context:
        if not 0 <= token < n_vocab:
            raise UnknownToken(token, n_vocab)
    return context


def prompt_tokens(job: CompletionJob, prompt: list[int], n_ctx: int, n_vocab: int) -> tuple[list[int], int]:
    """The context then the prompt, fitted to the context window, and how many tokens were dropped to fit."""
    tokens = known_context(job.context, n_vocab) + prompt
    fitted = fit_context(tokens, n_ctx, job.sampling.num_keep)
    if len(fitted) < len(tokens) and not job.truncate:
        raise ContextOverflow()
    return fitted, len(tokens) - len(fitted)


def certainly_longer(data: bytes, tokens: int, piece_max: Callable[[], int]) -> bool:
    """Whether text has more than ``tokens`` tokens whatever it says: no token covers more than the model's
    longest piece (``piece_max``, asked for only when the text is long enough to matter)."""
    bound = tokens + CUT_MARGIN
    return len(data) > bound and len(data) > bound * piece_max()


def _head(data: bytes, size: int) -> bytes:
    """The first ``size`` bytes of UTF-8 text, cut back to a character boundary."""
    while 0 < size < len(data) and data[size] & 0xC0 == 0x80:
        size -= 1
    return data[:size]


def _tail(data: bytes, size: int) -> bytes:
    """The last ``size`` bytes of UTF-8 text, cut forward to a character boundary."""
    start = max(0, len(data) - size)
    while start < len(data) and data[start] & 0xC0 == 0x80:
        start += 1
    return data[start:]


def job_tokens(job: CompletionJob, tokenize: Tokenize, n_ctx: int, n_vocab: int,
               piece_max: Callable[[], int]) -> tuple[list[int], int]:
    """``prompt_tokens`` for a job's text, tokenizing a prompt certainly longer than the context only where it
    can reach the window (Ollama's truncation: its first num_keep tokens and its last ones), never whole; with
    truncate false such a prompt is refused before any of it is tokenized."""
    data = job.prompt.encode("utf-8")
    if not certainly_longer(data, n_ctx, piece_max):
        return prompt_tokens(job, tokenize(data, True), n_ctx, n_vocab)
    if not job.truncate:
        raise ContextOverflow()
    limit = n_ctx - 1
    keep = max(0, min(job.sampling.num_keep, limit // 2))
    head = (known_context(job.context, n_vocab) + tokenize(_head(data, (keep + CUT_MARGIN) * piece_max()), True))
    end = _tail(data, (limit - keep + CUT_MARGIN) * piece_max())
    tail = tokenize(end, False)
    fitted = head[:keep] + tail[len(tail) - (limit - keep):]
    # The middle was never tokenized: its count is estimated at the tail's bytes per token.
    total = len(job.context) + math.ceil(len(data) * len(tail) / max(1, len(end)))
    return fitted, max(1, total - len(fitted))


def fit_context(tokens: list[int], n_ctx: int, num_keep: int) -> list[int]:
    """Keep the prompt inside the context: the first num_keep tokens plus the most recent ones."""
    limit = n_ctx - 1
    if len(tokens) <= limit:
        return tokens
    keep = max(0, min(num_keep, limit // 2))
    return tokens[:keep] + tokens[len(tokens) - (limit - keep):]


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two sequences share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def reusable_prefix(cached: list[int], tokens: list[int]) -> int:
    """Cached tokens a prompt can reuse: its last token is always evaluated again, for its logits."""
    return max(0, min(common_prefix(cached, tokens), len(tokens) - 1))


def max_tokens(sampling: Sampling, n_ctx: int, prompt_len: int) -> int:
    """num_predict (-1 unbounded, -2 fill the context) capped by the room left in the context."""
    room = max(0, n_ctx - prompt_len)
    return room if sampling.num_predict < 0 else min(sampling.num_predict, room)


class Generation:
    """A request being generated: engines feed it sampled tokens, it emits pieces and the final event."""

    def __init__(self, job: CompletionJob, emit: Emit, tokens: list[int], cached: int, n_ctx: int,
                 dropped: int = 0, image_positions: int = 0) -> None:
        self.job, self.emit = job, emit
        self.tokens, self.cached, self.dropped = tokens, cached, dropped
        self.image_positions = image_positions  # KV positions an image prompt filled (not tokens)
        self.limit = max_tokens(job.sampling, n_ctx, len(tokens) + image_positions)
        self.stream = TextStream(job.sampling.stop)
        self.generated: list[int] = []
        self.started = time.perf_counter_ns()
        self.first_token_at = 0
        self.done = False

    def start(self) -> bool:
        """Whether there is room to generate; if not, the request ends here with "length"."""
        if self.limit > 0:
            return True
        self.finish("length")
        return False

    def end_if_cancelled(self) -> bool:
        """End with "cancel" if the client left; True when it did."""
        if self.job.cancel.is_set():
            self.finish("cancel")
            return True
        return False

    def step(self, token: int, piece: bytes | None, logprobs: dict[str, Any] | None = None) -> bool:
        """Take one sampled token (piece None: an end-of-generation token); True when the request is over."""
        self.first_token_at = self.first_token_at or time.perf_counter_ns()
        if piece is None:
            self.finish("stop")
            return True
        text, stopped = self.stream.push(piece)
        self.generated.append(token)
        if logprobs is not None:
            self.emit(CompletionEvent.model_construct(content=text, logprobs=[logprobs]))
        elif text:
            self.emit(CompletionEvent.model_construct(content=text))
        if stopped:
            self.finish("stop")
        elif len(self.generated) >= self.limit:
            self.finish("length")
        return self.done

    def finish(self, reason: str) -> None:
        """Emit what the stop-string guard held back (unless cancelled) and the final event with the metrics."""
        tail = self.stream.flush()
        if tail and reason != "cancel":
            self.emit(CompletionEvent.model_construct(content=tail))
        ended = time.perf_counter_ns()
        first = self.first_token_at or ended
        self.done = True
        self.emit(CompletionEvent.model_construct(
            done=True, done_reason=reason,
            context=[] if self.image_positions else self.tokens + self.generated,  # image positions are no tokens
            prompt_eval_count=len(self.tokens) - self.cached + self.image_positions,
            cached_tokens=self.cached,
            prompt_eval_duration=first - self.started, eval_count=len(self.generated), eval_duration=ended - first,
            truncated_tokens=self.dropped))

    def fail(self, error: AppError) -> None:
        """End the request with an error line instead of a final event."""
        self.done = True
        self.emit(error)
