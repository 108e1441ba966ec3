"""A fake Engine for unit tests of the scheduler and the completion loop (never used by a server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from corral_inference.engine import LoadSpec, Sampling

END = 0


class FakeEngine:
    """Tokens are characters; generation replays a script, then the end token."""

    loads: list[LoadSpec] = []

    def __init__(self, spec: LoadSpec, script: str = "Hello, world!", gate: threading.Event | None = None) -> None:
        self.spec, self.script, self.gate = spec, script, gate
        self.cache: list[int] = []
        self.closed = False
        self.thread_ids: set[int] = {threading.get_ident()}
        FakeEngine.loads.append(spec)

    def n_ctx(self) -> int:
        return self.spec.num_ctx

    def tokenize(self, text: str) -> list[int]:
        self.thread_ids.add(threading.get_ident())
        return [ord(c) for c in text]

    def token_bytes(self, token: int, previous: list[int]) -> bytes:
        return chr(token).encode()

    def is_end(self, token: int) -> bool:
        return token == END

    def cached_prefix(self, tokens: list[int]) -> int:
        n = 0
        for a, b in zip(self.cache, tokens):
            if a != b:
                break
            n += 1
        return n

    def generate(self, tokens: list[int], sampling: Sampling) -> Iterator[int]:
        self.thread_ids.add(threading.get_ident())
        self.cache = list(tokens)
        for char in self.script:
            if self.gate is not None:
                self.gate.wait(5)
            self.cache.append(ord(char))
            yield ord(char)
        yield END

    def logprobs(self, token: int, top_n: int) -> dict:
        item = {"token": chr(token), "logprob": -0.5, "bytes": list(chr(token).encode())}
        if top_n:
            item["top_logprobs"] = [{"token": chr(token), "logprob": -0.5}] * top_n
        return item

    def embed(self, texts: list[str], truncate: bool) -> tuple[list[list[float]], int]:
        return [[float(len(t)), 1.0, 0.0] for t in texts], sum(len(t) for t in texts)

    def size_bytes(self) -> int:
        return 1000

    def close(self) -> None:
        self.closed = True
