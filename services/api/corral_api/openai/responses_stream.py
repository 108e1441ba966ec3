"""Native chat chunks → Responses API objects and SSE events (reference §4.5).

One converter serves both forms: a stream feeds it every native chunk and sends the events; a
non-streamed call feeds it the one collected chunk and returns the final response object.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from typing import Any

from corral_common.errors import AppError

from corral_api.compat import prompt_tokens, translated
from corral_api.openai.responses import tool_calls
from corral_api.openai.schemas import ResponsesRequest


def new_id(prefix: str) -> str:
    """``resp_<n>`` / ``msg_<n>`` / ``rs_<n>``, numbered like Ollama's."""
    return f"{prefix}_{random.randrange(999999)}"


def usage(final: dict[str, Any]) -> dict[str, Any]:
    """Responses usage from a native final chunk: the whole prompt, and the part reused from the cache."""
    (prompt, cached), completion = prompt_tokens(final), final.get("eval_count", 0)
    return {"input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion,
            "input_tokens_details": {"cached_tokens": cached}, "output_tokens_details": {"reasoning_tokens": 0}}


def echo(req: ResponsesRequest) -> dict[str, Any]:
    """The request settings every response object repeats back."""
    text_format = req.text.format.model_dump(by_alias=True, exclude_none=True) if req.text and req.text.format \
        else {"type": "text"}
    reasoning = {"effort": req.reasoning.effort or None, "summary": req.reasoning.summary} if req.reasoning else None
    return {"instructions": req.instructions, "tools": req.tools or [], "tool_choice": req.tool_choice or "auto",
            "truncation": req.truncation or "disabled", "parallel_tool_calls": req.parallel_tool_calls is not False,
            "text": {"format": text_format}, "top_p": 1.0 if req.top_p is None else req.top_p,
            "temperature": 1.0 if req.temperature is None else req.temperature, "presence_penalty": 0,
            "frequency_penalty": 0, "top_logprobs": 0, "reasoning": reasoning,
            "max_output_tokens": req.max_output_tokens, "max_tool_calls": None, "store": False,
            "background": False, "service_tier": "default", "metadata": req.metadata or {},
            "safety_identifier": None, "prompt_cache_key": None}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


class ResponsesStream:
    """Native chat chunks → Responses events; ``response`` is the final object once the last chunk is in."""

    def __init__(self, req: ResponsesRequest, response_id: str | None = None) -> None:
        self.id, self.model, self.settings = response_id or new_id("resp"), req.model, echo(req)
        self.single_call = req.parallel_tool_calls is False
        self.created_at = int(time.time())
        self.sequence = 0
        self.started = False
        self.output: list[dict[str, Any]] = []
        self.reasoning: dict[str, Any] | None = None
        self.message: dict[str, Any] | None = None
        self.thought: str | None = None
        self.text: str | None = None
        self.call_count = 0
        self.response: dict[str, Any] | None = None

    def _event(self, kind: str, **data: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return event

    def _object(self, status: str, **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "object": "response", "created_at": self.created_at, "completed_at": None,
                "status": status, "incomplete_details": None, "model": self.model, "previous_response_id": None,
                "output": [dict(item) for item in self.output], "error": None, "usage": None,
                **self.settings, **extra}

    def _start(self) -> list[dict[str, Any]]:
        self.started = True
        return [self._event("response.created", response=self._object("in_progress")),
                self._event("response.in_progress", response=self._object("in_progress"))]

    def _add(self, item: dict[str, Any]) -> dict[str, Any]:
        self.output.append(item)
        return self._event("response.output_item.added", output_index=len(self.output) - 1, item=dict(item))

    def _item_done(self, item: dict[str, Any]) -> dict[str, Any]:
        return self._event("response.output_item.done", output_index=self.output.index(item), item=dict(item))

    def _think(self, thinking: str) -> list[dict[str, Any]]:
        events = []
        if self.reasoning is None:
            self.reasoning, self.thought = {"id": new_id("rs"), "type": "reasoning", "summary": []}, ""
            events.append(self._add(self.reasoning))
            events.append(self._event("response.reasoning_summary_part.added", item_id=self.reasoning["id"],
                                      output_index=self.output.index(self.reasoning), summary_index=0,
                                      part={"type": "summary_text", "text": ""}))
        self.thought = (self.thought or "") + thinking
        return events + [self._event("response.reasoning_summary_text.delta", item_id=self.reasoning["id"],
                                     output_index=self.output.index(self.reasoning), summary_index=0,
                                     delta=thinking)]

    def _close_reasoning(self) -> list[dict[str, Any]]:
        item, text = self.reasoning, self.thought
        if item is None or text is None:
            return []
        self.thought, index = None, self.output.index(item)
        item.update(summary=[{"type": "summary_text", "text": text}], encrypted_content=text, status="completed")
        part = {"type": "summary_text", "text": text}
        return [self._event("response.reasoning_summary_text.done", item_id=item["id"], output_index=index,
                            summary_index=0, text=text),
                self._event("response.reasoning_summary_part.done", item_id=item["id"], output_index=index,
                            summary_index=0, part=part),
                self._item_done(item)]

    def _write(self, text: str) -> list[dict[str, Any]]:
        events = self._close_reasoning()
        if self.message is None:
            self.message = {"id": new_id("msg"), "type": "message", "status": "in_progress", "role": "assistant",
                            "content": []}
            self.text = ""
            events.append(self._add(self.message))
            events.append(self._event("response.content_part.added", item_id=self.message["id"],
                                      output_index=self.output.index(self.message), content_index=0,
                                      part=_text_part("")))
        self.text = (self.text or "") + text
        return events + [self._event("response.output_text.delta", item_id=self.message["id"],
                                     output_index=self.output.index(self.message), content_index=0, delta=text,
                                     logprobs=[])]

    def _close_message(self, status: str) -> list[dict[str, Any]]:
        item, text = self.message, self.text
        if item is None or text is None:
            return []
        self.text, index = None, self.output.index(item)
        item.update(status=status, content=[_text_part(text)])
        return [self._event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                            text=text, logprobs=[]),
                self._event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                            part=_text_part(text)),
                self._item_done(item)]

    def _call(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        arguments = call["function"]["arguments"]
        item = {"id": f"fc_{self.id}_{len(self.output)}", "type": "function_call", "status": "in_progress",
                "call_id": call["id"] or new_id("call"), "name": call["function"]["name"], "arguments": ""}
        events = [self._add(item)]
        index = self.output.index(item)
        events.append(self._event("response.function_call_arguments.delta", item_id=item["id"],
                                  output_index=index, delta=arguments))
        item.update(arguments=arguments, status="completed")
        events.append(self._event("response.function_call_arguments.done", item_id=item["id"],
                                  output_index=index, arguments=arguments))
        return events + [self._item_done(item)]

    def _calls(self, native: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls = tool_calls(native)
        if self.single_call:  # parallel_tool_calls: false — the first call is the one answer
            calls = calls[:max(0, 1 - self.call_count)]
        self.call_count += len(calls)
        events = self._close_reasoning() + self._close_message("completed")
        for call in calls:
            events += self._call(call)
        return events

    def _finish(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        cut = chunk.get("done_reason") == "length"
        events = self._close_reasoning() + self._close_message("incomplete" if cut else "completed")
        extra: dict[str, Any] = {"completed_at": int(time.time()), "usage": usage(chunk)}
        if cut:
            extra["incomplete_details"] = {"reason": "max_output_tokens"}
        self.response = self._object("incomplete" if cut else "completed", **extra)
        return events + [self._event("response.incomplete" if cut else "response.completed", response=self.response)]

    def translate(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The events for one native chat chunk (the first adds created/in_progress, the last completes)."""
        events = [] if self.started else self._start()
        message = chunk.get("message", {})
        if message.get("thinking"):
            events += self._think(message["thinking"])
        if message.get("content") and not self.call_count:  # text after a call has no item to go in
            events += self._write(message["content"])
        if message.get("tool_calls"):
            events += self._calls(message["tool_calls"])
        if chunk.get("done"):
            events += self._finish(chunk)
        return events

    def failed(self, exc: AppError) -> dict[str, Any]:
        """The terminal event when generation fails after the stream started."""
        code = "server_error" if exc.status >= 500 else "invalid_request"
        return self._event("response.failed", response=self._object(
            "failed", error={"code": code, "message": exc.message}))

    def events(self, chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Translate a whole native stream; an error before the first event keeps its HTTP status."""
        return translated(chunks, self)
