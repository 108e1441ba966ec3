"""An authenticated caller's model calls are reported as usage: the final event's tokens, once per call."""

from __future__ import annotations

import asyncio

from corral_common.internal import CompletionEvent, CompletionRequest, EmbedInputs, EmbedOutput, EngineModel
from corral_api.testing import FakeInference
from corral_api.usage import MeteredInference, reporter

MODEL = EngineModel(name="m:latest", model_digest="a" * 64)


class _Auth:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def usage(self, event: dict) -> None:
        self.events.append(event)


class _Embedder(FakeInference):
    async def embed(self, req: EmbedInputs, request_id: str) -> EmbedOutput:
        return EmbedOutput(embeddings=[[1.0]], prompt_eval_count=3)


def test_completions_and_embeddings_are_reported_with_the_whole_prompt() -> None:
    auth = _Auth()
    events = [CompletionEvent(content="Hi"),
              CompletionEvent(done=True, done_reason="stop", prompt_eval_count=5, cached_tokens=7, eval_count=2)]
    metered = MeteredInference(_Embedder(events=events), reporter(auth, {"user": "alice", "key_id": "k1"}))

    async def run() -> list[CompletionEvent]:
        got = [e async for e in metered.complete(CompletionRequest(model=MODEL, prompt="x"), "rid")]
        await metered.embed(EmbedInputs(model=MODEL, inputs=["x"]), "rid")
        return got

    assert [e.content for e in asyncio.run(run())] == ["Hi", ""]
    assert auth.events == [
        {"user": "alice", "key_id": "k1", "model": "m:latest", "prompt_tokens": 12, "completion_tokens": 2},
        {"user": "alice", "key_id": "k1", "model": "m:latest", "prompt_tokens": 3, "completion_tokens": 0}]
    assert metered.tokenized == []  # everything else is the wrapped client's
