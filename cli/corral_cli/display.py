"""Printing a streamed answer: word wrapping, thinking blocks and the ``--verbose`` stats."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from corral_cli.formatting import go_duration
from corral_cli.table import display_width

GREY, BOLD, RESET = "\x1b[38;5;245m", "\x1b[1m", "\x1b[0m"


class WordWrapper:
    """Ollama's streaming word wrap: a word that would cross the margin is moved to the next line."""

    def __init__(self, width: int, enabled: bool = True) -> None:
        self.width = width
        self.enabled = enabled and width >= 10
        self.line_length = 0
        self.word = ""

    def feed(self, content: str) -> str:
        """The text to write for the next piece of the answer (may contain cursor-movement codes)."""
        if not self.enabled:
            return content
        return "".join(self._char(ch) for ch in content)

    def _char(self, ch: str) -> str:
        ch_width = display_width(ch)
        prefix = ""
        if self.line_length + 1 > self.width - 5 and ch not in "\r\n":
            word_width = display_width(self.word)
            if word_width > self.width - 10:
                prefix, self.word, self.line_length = "\n", "", 0  # too long to move: break it here
            else:
                back = f"\x1b[{word_width}D" if word_width else ""
                prefix, self.line_length = f"{back}\x1b[K\n{self.word}", word_width
        self.line_length += ch_width
        if ch in "\r\n":
            self.line_length, self.word = 0, ""
        elif ch_width >= 2 or ch in " \t":
            self.word = ""
        else:
            self.word += ch
        return prefix + ch


def thinking_open(plain: bool) -> str:
    """The line printed before a model's thinking."""
    return "Thinking...\n" if plain else f"{GREY}{BOLD}Thinking...\n{RESET}{GREY}"


def thinking_close(plain: bool) -> str:
    """The line printed after a model's thinking."""
    return "...done thinking.\n\n" if plain else f"{GREY}{BOLD}...done thinking.\n\n{RESET}"


def tool_calls_text(calls: list[Mapping[str, Any]], plain: bool) -> str:
    """A note for tool calls, which the CLI never registers."""
    lead, value = ("", "") if plain else (GREY + BOLD, RESET)
    lines = []
    for call in calls:
        function = call.get("function", {})
        arguments = json.dumps(function.get("arguments", {}), separators=(",", ":"))
        lines.append(f"  Model called a non-existent function '{value}{function.get('name', '')}{lead}()' "
                     f"with arguments: {value}{arguments}{lead}")
    return lead + "\n".join(lines) + ("" if plain else RESET)


def stats_summary(final: Mapping[str, Any]) -> str:
    """The ``--verbose`` block built from a final chunk's nanosecond fields (Ollama's Metrics.Summary)."""
    total, load = int(final.get("total_duration") or 0), int(final.get("load_duration") or 0)
    prompt_count, prompt_ns = int(final.get("prompt_eval_count") or 0), int(final.get("prompt_eval_duration") or 0)
    eval_count, eval_ns = int(final.get("eval_count") or 0), int(final.get("eval_duration") or 0)
    lines = []
    if total > 0:
        lines.append(f"total duration:       {go_duration(total)}")
    if load > 0:
        lines.append(f"load duration:        {go_duration(load)}")
    if prompt_count > 0:
        lines.append(f"prompt eval count:    {prompt_count} token(s)")
    if prompt_ns > 0:
        lines.append(f"prompt eval duration: {go_duration(prompt_ns)}")
        lines.append(f"prompt eval rate:     {prompt_count / (prompt_ns / 1e9):.2f} tokens/s")
    if eval_count > 0:
        lines.append(f"eval count:           {eval_count} token(s)")
    if eval_ns > 0:
        lines.append(f"eval duration:        {go_duration(eval_ns)}")
        lines.append(f"eval rate:            {eval_count / (eval_ns / 1e9):.2f} tokens/s")
    return "".join(line + "\n" for line in lines)
