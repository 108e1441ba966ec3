"""Usage of authenticated callers: each model call's tokens, reported to the auth service (which counts them
per user, key, model and hour and holds them against the caller's quotas).

The gateway wraps the inference client of a request made with a credential: the final event of each
completion (its whole prompt, cached part included, and the tokens generated) and each embedding call
are reported, once, as the request goes. Requests forwarded to a remote host are the host's to count.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from corral_common.internal import CompletionEvent, CompletionRequest, EmbedInputs, EmbedOutput

Report = Callable[[str, int, int], None]  # (model, prompt tokens, completion tokens)


def reporter(auth: Any, principal: dict[str, Any]) -> Report:
    """A report function that sends usage events for ``principal`` through the auth client."""

    def report(model: str, prompt_tokens: int, completion_tokens: int) -> None:
        auth.usage({"user": principal.get("user") or "", "key_id": principal.get("key_id") or "", "model": model,
                    "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens})

    return report


class MeteredInference:
    """An inference client whose completions and embeddings are reported; every other call goes straight
    through to the client it wraps."""

    def __init__(self, inner: Any, report: Report) -> None:
        self._inner, self._report = inner, report

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def complete(self, req: CompletionRequest, request_id: str) -> AsyncIterator[CompletionEvent]:
        """The wrapped client's events; the final one's counts are reported."""
        async with aclosing(self._inner.complete(req, request_id)) as events:
            async for event in events:
                if event.done:
                    self._report(req.model.name, event.prompt_eval_count + event.cached_tokens, event.eval_count)
                yield event

    async def embed(self, req: EmbedInputs, request_id: str) -> EmbedOutput:
        """The wrapped client's vectors; their prompt tokens are reported."""
        result = await self._inner.embed(req, request_id)
        self._report(req.model.name, result.prompt_eval_count, 0)
        return result
