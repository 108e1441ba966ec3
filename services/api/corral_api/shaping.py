"""Shape raw model text into Ollama's message fields: thinking, content and tool calls."""

from __future__ import annotations

from typing import Any, Protocol

from corral_api.thinking import ThinkingSplitter
from corral_api.toolcalls import ToolCallCollector


class Shaper(Protocol):
    """Raw model text in, message fields out: ``OutputShaper``, or ``harmony.HarmonyParser`` for gpt-oss."""

    def feed(self, text: str) -> tuple[str, str]:
        """(thinking, content) to emit for a piece of raw text."""

    def finish(self) -> tuple[str, str, list[dict[str, Any]]]:
        """What is left when generation ends: thinking, content and any tool calls."""


class OutputShaper:
    """Thinking is split first, then tool calls are looked for in the answer text."""

    def __init__(self, thinking: ThinkingSplitter | None, keep_thinking: bool,
                 tools: ToolCallCollector | None) -> None:
        self.thinking, self.keep_thinking, self.tools = thinking, keep_thinking, tools

    def feed(self, text: str) -> tuple[str, str]:
        """(thinking, content) to emit for a piece of raw text."""
        thought, content = self.thinking.feed(text) if self.thinking else ("", text)
        if self.tools:
            content = self.tools.feed(content)
        return (thought if self.keep_thinking else ""), content

    def finish(self) -> tuple[str, str, list[dict[str, Any]]]:
        """What is left when generation ends: thinking, content and any tool calls."""
        thought, content = self.thinking.finish() if self.thinking else ("", "")
        calls: list[dict[str, Any]] = []
        if self.tools:
            content = self.tools.feed(content)
            rest, calls = self.tools.finish()
            content += rest
        return (thought if self.keep_thinking else ""), content, calls
