"""A scripted Engine for unit tests: the real Generation logic on a thread of its own, without llama.cpp."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from corral_common.errors import AppError, InternalError
from corral_common.internal import CompletionEvent

from corral_inference.completion import Generation, job_tokens, reusable_prefix
from corral_inference.engine import CompletionJob, Emit, Engine, LoadSpec, Occupancy, Sampling
from corral_inference.vision import MARKER

END = 0
IMAGE_POSITIONS = 10
VOCABULARY = 0x110000  # the fake tokenizer's ids are code points


class FakeEngine:
    """Tokens are characters; every request replays the script, then the end token.

    Requests run one after another on the engine's own thread (as llama.cpp work does), each through
    ``Generation``; ``gate``, when given, must be open before each token is sampled."""

    loads: list[LoadSpec] = []
    slots = 1

    def __init__(self, spec: LoadSpec, script: str = "Hello, world!", gate: threading.Event | None = None) -> None:
        self.spec, self.script, self.gate = spec, script, gate
        self.cache: list[int] = []
        self.unbacked = 0  # what unbacked_bytes reports (a test sets it)
        self.tokenized_bytes = 0
        self.closed = False
        self.thread_ids: set[int] = {threading.get_ident()}  # threads the scheduler called the engine on
        self.inbox: queue.Queue[tuple[CompletionJob, Emit] | None] = queue.Queue()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="fake-engine", daemon=True)
        self.thread.start()
        FakeEngine.loads.append(spec)

    def submit(self, job: CompletionJob, emit: Emit) -> None:
        self.inbox.put((job, emit))

    def embed(self, texts: list[str], truncate: bool) -> tuple[list[list[float]], int]:
        self.thread_ids.add(threading.get_ident())
        return [[float(len(t)), 1.0, 0.0] for t in texts], sum(len(t) for t in texts)

    def tokenize(self, text: str) -> list[int]:
        self.thread_ids.add(threading.get_ident())
        return [ord(c) for c in text]

    def count_tokenized(self, data: bytes, _add_bos: bool) -> list[int]:
        """Code points (at most 4 bytes each) of a prompt's text; ``tokenized_bytes`` counts what it was given."""
        self.tokenized_bytes += len(data)
        return [ord(c) for c in data.decode("utf-8")]

    def size_bytes(self) -> int:
        self.thread_ids.add(threading.get_ident())
        return 1000

    def vram_bytes(self) -> int:
        return 0

    def unbacked_bytes(self) -> int:
        return self.unbacked

    def occupancy(self, active: int) -> Occupancy:
        return Occupancy.of_leases(active, self.slots)

    def close(self) -> None:
        self.thread_ids.add(threading.get_ident())
        self.stopping.set()
        self.inbox.put(None)
        self.thread.join(5)
        self.closed = True

    def _loop(self) -> None:
        while (item := self.inbox.get()) is not None:
            job, emit = item
            if self.stopping.is_set():
                emit(InternalError("model unloaded"))
            elif not job.cancel.is_set():
                self._run(job, emit)

    def _run(self, job: CompletionJob, emit: Emit) -> None:
        try:
            gen = self._admit(job, emit)
        except AppError as exc:
            emit(exc)
            return
        self._generate(gen)

    def _admit(self, job: CompletionJob, emit: Emit) -> Generation:
        """The prompt as tokens (an image prompt: its text and IMAGE_POSITIONS per image, none reusable)."""
        if job.images:
            self.cache = []
            used = len(MARKER.sub("", job.prompt)) + IMAGE_POSITIONS * len(job.images)
            return Generation(job, emit, [], 0, self.spec.num_ctx, image_positions=used)
        tokens, dropped = job_tokens(job, self.count_tokenized, self.spec.num_ctx, VOCABULARY, lambda: 4)
        cached = reusable_prefix(self.cache, tokens)
        self.cache = list(tokens)
        return Generation(job, emit, tokens, cached, self.spec.num_ctx, dropped)

    def _generate(self, gen: Generation) -> None:
        if not gen.start():
            return
        for token in [ord(c) for c in self.script] + [END]:
            if self.gate is not None:
                self.gate.wait(5)
            if gen.end_if_cancelled():
                return
            piece = None if token == END else chr(token).encode()
            logprobs = _logprobs(token, gen.job.top_logprobs) if gen.job.logprobs and piece else None
            if gen.step(token, piece, logprobs):
                return
            self.cache.append(token)


def _logprobs(token: int, top_n: int) -> dict[str, Any]:
    item: dict[str, Any] = {"token": chr(token), "logprob": -0.5, "bytes": list(chr(token).encode())}
    if top_n:
        item["top_logprobs"] = [{"token": chr(token), "logprob": -0.5}] * top_n
    return item


@dataclass
class Outcome:
    """What one request produced: its pieces' text, every event, and the final event (or the error)."""

    events: list[CompletionEvent] = field(default_factory=list)
    error: AppError | None = None

    @property
    def text(self) -> str:
        return "".join(e.content for e in self.events)

    @property
    def final(self) -> CompletionEvent:
        assert self.error is None, self.error
        assert self.events and self.events[-1].done, "the request ended without a final event"
        return self.events[-1]


def run(engine: Engine, prompt: str, cancel_after: int = 0, timeout: float = 120, **options: Any) -> Outcome:
    """Submit one job and wait for its end; ``cancel_after`` n: the client leaves after n pieces."""
    job_fields = {k: options.pop(k) for k in ("context", "logprobs", "top_logprobs", "truncate", "images")
                  if k in options}
    job = CompletionJob(prompt, job_fields.pop("context", []), Sampling(**options), **job_fields)
    outcome, ended = Outcome(), threading.Event()

    def emit(event: CompletionEvent | AppError) -> None:
        if isinstance(event, AppError):
            outcome.error = event
        else:
            outcome.events.append(event)
            if cancel_after and not event.done and len(outcome.events) >= cancel_after:
                job.cancel.set()
        if isinstance(event, AppError) or event.done:
            ended.set()

    engine.submit(job, emit)
    assert ended.wait(timeout), "the engine never ended the request"
    return outcome
