"""Streaming one answer from /api/generate or /api/chat onto the terminal."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from corral_cli.client import Client
from corral_cli.display import WordWrapper, thinking_close, thinking_open, tool_calls_text
from corral_cli.progress import Progress, Spinner


@dataclass(frozen=True)
class AnswerStyle:
    """How an answer is printed."""

    word_wrap: bool = True
    hide_thinking: bool = False
    plain: bool = False  # no colours: stdout is not a terminal


@dataclass
class Answer:
    """What the model said, and how the stream ended."""

    content: str = ""
    thinking: str = ""
    role: str = "assistant"
    final: dict[str, Any] | None = None
    cancelled: bool = False
    printed: bool = False

    def message(self) -> dict[str, Any]:
        """The assistant message to keep in the conversation."""
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.thinking:
            message["thinking"] = self.thinking
        return message


@dataclass
class AnswerPrinter:
    """Ollama's chunk handler: thinking block, word-wrapped content, tool-call notes."""

    style: AnswerStyle
    out: TextIO
    progress: Progress
    answer: Answer = field(default_factory=Answer)
    wrapper: WordWrapper = field(init=False)
    _thinking_open: bool = False
    _thinking_closed: bool = False

    def __post_init__(self) -> None:
        self.wrapper = self._new_wrapper()

    def _new_wrapper(self) -> WordWrapper:
        return WordWrapper(shutil.get_terminal_size().columns, self.style.word_wrap and not self.style.plain)

    def feed(self, message: Mapping[str, Any]) -> None:
        """Print one streamed message delta."""
        content, thinking = message.get("content") or "", message.get("thinking") or ""
        calls = message.get("tool_calls") or []
        self.answer.role = message.get("role") or self.answer.role
        if content or not self.style.hide_thinking:
            self.progress.stop_and_clear()
        if thinking and not self.style.hide_thinking:
            if not self._thinking_open:
                self._write(thinking_open(self.style.plain))
                self._thinking_open, self._thinking_closed = True, False
            self.answer.thinking += thinking
            self._write(self.wrapper.feed(thinking))
        if self._thinking_open and not self._thinking_closed and (content or calls):
            self._write(("" if self.answer.thinking.endswith("\n") else "\n") + thinking_close(self.style.plain))
            self._thinking_open, self._thinking_closed = False, True
            self.wrapper = self._new_wrapper()
        self.answer.content += content
        if calls:
            self._write(tool_calls_text(calls, self.style.plain))
        self._write(self.wrapper.feed(content))

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self.answer.printed = True


def _delta(chunk: Mapping[str, Any]) -> Mapping[str, Any]:
    """The message part of a chat chunk, or a generate chunk in the same shape."""
    if isinstance(chunk.get("message"), Mapping):
        return chunk["message"]
    return {"content": chunk.get("response"), "thinking": chunk.get("thinking"), "tool_calls": chunk.get("tool_calls")}


def stream_answer(client: Client, path: str, body: Mapping[str, Any], style: AnswerStyle,
                  out: TextIO | None = None) -> Answer:
    """POST ``body`` to ``path`` and print the answer as it arrives; Ctrl+C cancels it."""
    out = out if out is not None else sys.stdout
    progress = Progress()
    progress.add(Spinner(""))
    printer = AnswerPrinter(style, out, progress)
    chunks = client.stream(path, dict(body))
    try:
        for chunk in chunks:
            printer.feed(_delta(chunk))
            if chunk.get("done"):
                printer.answer.final = chunk
    except KeyboardInterrupt:
        printer.answer.cancelled = True
    finally:
        chunks.close()  # closing the response makes the server stop generating
        progress.stop_and_clear()
    return printer.answer
