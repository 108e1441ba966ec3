"""Native chat chunks → Anthropic Messages events, and the final message built from the same blocks
(the non-streamed answer is the stream's last state, so both forms always agree).

Event order: ``message_start``, ``ping``, then per content block ``content_block_start``,
``content_block_delta`` (``thinking_delta`` / ``text_delta`` / ``input_json_delta``), ``content_block_stop``,
and last ``message_delta`` (stop_reason, usage) and ``message_stop``. A failure after the first event is an
``error`` event.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

from corral_common.errors import AppError

from corral_api.anthropic.errors import error_body
from corral_api.compat import prompt_tokens, translated

# Native done_reason → stop_reason; a tool call makes it "tool_use" (Ollama's mapStopReason).
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "": None}
DELTAS = {"thinking": "thinking_delta", "text": "text_delta"}


def new_id(prefix: str = "msg") -> str:
    """``msg_`` + 24 hex characters, as Ollama makes them."""
    return f"{prefix}_{secrets.token_hex(12)}"


def stop_reason(done_reason: str | None, called: bool) -> str | None:
    """Anthropic's stop_reason for a native done_reason."""
    if called:
        return "tool_use"
    return STOP_REASONS.get(done_reason or "", "stop_sequence")


def usage(final: dict[str, Any]) -> dict[str, int]:
    """Anthropic usage from a native final chunk: ``input_tokens`` is the whole prompt, cached part included."""
    return {"input_tokens": prompt_tokens(final)[0], "output_tokens": final.get("eval_count", 0)}


def _empty_block(kind: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking" else {"type": "text", "text": ""}


class MessagesStream:
    """Native chat chunks → Messages events; ``message`` is the final message once the last chunk is in."""

    def __init__(self, model: str, message_id: str | None = None) -> None:
        self.id, self.model = message_id or new_id(), model
        self.started = False
        self.blocks: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None
        self.message: dict[str, Any] | None = None

    def _object(self, **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0},
                **extra}

    def _start(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """message_start: the prompt's size is known only when the first chunk is already the last."""
        self.started = True
        counts = {"input_tokens": usage(chunk)["input_tokens"], "output_tokens": 0} if chunk.get("done") else None
        message = self._object(usage=counts) if counts else self._object()
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _begin(self, block: dict[str, Any], shown: dict[str, Any]) -> dict[str, Any]:
        self.blocks.append(block)
        return {"type": "content_block_start", "index": len(self.blocks) - 1, "content_block": shown}

    def _close(self) -> list[dict[str, Any]]:
        if self.open is None:
            return []
        self.open = None
        return [{"type": "content_block_stop", "index": len(self.blocks) - 1}]

    def _delta(self, kind: str, piece: str) -> list[dict[str, Any]]:
        """Append to the open block of this kind, opening one (and closing the other) first if needed."""
        events: list[dict[str, Any]] = []
        if self.open is None or self.open["type"] != kind:
            events = self._close()
            self.open = _empty_block(kind)
            events.append(self._begin(self.open, _empty_block(kind)))
        self.open[kind] += piece
        delta = {"type": DELTAS[kind], kind: piece}
        return events + [{"type": "content_block_delta", "index": len(self.blocks) - 1, "delta": delta}]

    def _tool_use(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        """One whole tool_use block: start (empty input), the arguments as one JSON delta, stop."""
        function = call.get("function", {})
        block = {"type": "tool_use", "id": call.get("id") or new_id("toolu"), "name": function.get("name", ""),
                 "input": function.get("arguments") or {}}
        events = self._close() + [self._begin(block, {**block, "input": {}})]
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"], ensure_ascii=False)}
        return events + [{"type": "content_block_delta", "index": len(self.blocks) - 1, "delta": delta},
                         {"type": "content_block_stop", "index": len(self.blocks) - 1}]

    def _finish(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        called = any(b["type"] == "tool_use" for b in self.blocks)
        reason, counts = stop_reason(chunk.get("done_reason"), called), usage(chunk)
        self.message = self._object(content=[dict(b) for b in self.blocks], stop_reason=reason, usage=counts)
        return self._close() + [{"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
                                 "usage": counts}, {"type": "message_stop"}]

    def translate(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The events for one native chat chunk (the first starts the message, the last ends it)."""
        events = [] if self.started else self._start(chunk)
        message = chunk.get("message", {})
        if message.get("thinking"):
            events += self._delta("thinking", message["thinking"])
        if message.get("content"):
            events += self._delta("text", message["content"])
        for call in message.get("tool_calls") or []:
            events += self._tool_use(call)
        if chunk.get("done"):
            events += self._finish(chunk)
        return events

    def failed(self, exc: AppError) -> dict[str, Any]:
        """The ``error`` event when generation fails after the stream started."""
        return error_body(exc.status, exc.message)

    def events(self, chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Translate a whole native stream; an error before the first event keeps its HTTP status."""
        return translated(chunks, self)
