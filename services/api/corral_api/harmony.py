"""gpt-oss output in OpenAI's harmony format, split into Ollama's message fields while streaming.

A message is ``<|start|>ROLE<|channel|>CHANNEL[ to=RECIPIENT][ <|constrain|>json]<|message|>BODY`` closed by
``<|end|>`` (``<|return|>`` after the answer, ``<|call|>`` after a tool call; both are end-of-generation tokens,
so the engine's stream usually just stops there). The ``analysis`` channel is ``thinking``, a message to
``functions.NAME`` (on ``commentary``, or ``analysis``) is a tool call whose body is the JSON arguments, and
``final`` (or ``commentary`` to no one) is ``content``. The prompt ends inside the assistant's message
(``<|start|>assistant``, or a template that already opened a channel), so parsing starts where the prompt left
off. Text outside any message is content, never lost.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from corral_common.internal import ResolvedModel
from corral_common.text import is_harmony, partial_suffix

from corral_api.toolcalls import call_id

START, MESSAGE, CHANNEL, CONSTRAIN = "<|start|>", "<|message|>", "<|channel|>", "<|constrain|>"
ENDS = ("<|end|>", "<|return|>", "<|call|>")
HARMONY_FAMILIES = ("gpt-oss", "gptoss")
_NAME_CHANNEL = re.compile(r"<\|channel\|>(\S*)")


def is_harmony_model(model: ResolvedModel) -> bool:
    """gpt-oss by architecture, or any model whose template writes harmony messages."""
    family = str(model.details.get("family", "")).lower()
    return family in HARMONY_FAMILIES or is_harmony(model.template or model.chat_template or "")


@dataclass(frozen=True)
class Header:
    """What a message header says: who writes, on which channel, to whom."""

    role: str = ""
    channel: str = ""
    recipient: str = ""

    @property
    def route(self) -> str:
        """Where the body goes: "tool" (a recipient), "thinking" (analysis) or "content"."""
        if self.recipient:
            return "tool"
        return "thinking" if self.channel == "analysis" else "content"


def parse_header(raw: str) -> Header:
    """``assistant<|channel|>commentary to=functions.f <|constrain|>json``: role first, then the channel and a
    ``to=`` recipient in either order (the model writes both orders); the constraint is ignored."""
    raw = raw.replace(CONSTRAIN, f" {CONSTRAIN}")
    channel = ""
    match = _NAME_CHANNEL.search(raw)
    if match:
        channel = match.group(1)
        raw = raw[:match.start()] + " " + raw[match.end():]
    words = raw.split()
    role = words[0] if words else ""
    recipient = next((w[3:] for w in words if w.startswith("to=")), "")
    return Header("tool" if role.startswith("to=") else role, channel, recipient)


def _opening(prompt: str) -> str:
    """The message the prompt leaves open for the model: from its last ``<|start|>`` after the last closed message,
    a channel the template opened without one, or an implicit ``<|start|>assistant``."""
    closed = max((prompt.rfind(tag) + len(tag) for tag in ENDS if tag in prompt), default=0)
    tail = prompt[closed:]
    if START in tail:
        return tail[tail.rindex(START):]
    if CHANNEL in tail:
        return START + "assistant" + tail[tail.index(CHANNEL):]
    return START + "assistant"


class HarmonyParser:
    """Routes streamed harmony text to thinking, content and tool calls (the shaper for gpt-oss models)."""

    def __init__(self, prompt: str = "", keep_thinking: bool = True) -> None:
        self.keep_thinking = keep_thinking
        self.state, self.buffer, self.header = "outside", "", Header()
        self.outside = ""  # text between messages, released as content unless it is only whitespace
        self.tool_body = ""
        self.calls: list[tuple[str, str]] = []  # (recipient, raw JSON body)
        self.feed(_opening(prompt))  # the prompt's own text is never output
        self.opened = len(self.buffer) if self.state == "header" else 0  # header text the prompt wrote

    def feed(self, text: str) -> tuple[str, str]:
        """(thinking, content) ready to emit now."""
        self.buffer += text
        out = {"thinking": "", "content": ""}
        while self._step(out):
            pass
        return (out["thinking"] if self.keep_thinking else ""), out["content"]

    def _step(self, out: dict[str, str]) -> bool:
        """Advance the state machine over the buffer; False when it needs more text."""
        if self.state == "outside":
            return self._outside(out)
        if self.state == "header":
            if MESSAGE not in self.buffer:
                return False
            raw, self.buffer = self.buffer.split(MESSAGE, 1)
            self.header, self.state, self.opened = parse_header(raw), "body", 0
            return True
        return self._body(out)

    def _outside(self, out: dict[str, str]) -> bool:
        if START in self.buffer:
            before, self.buffer = self.buffer.split(START, 1)
            out["content"] += self._released(self.outside + before)
            self.outside, self.state = "", "header"
            return True
        keep = partial_suffix(self.buffer, START)
        self.outside += self.buffer[:len(self.buffer) - keep]
        self.buffer = self.buffer[len(self.buffer) - keep:]
        if self.outside.strip():
            out["content"] += self.outside
            self.outside = ""
        return False

    @staticmethod
    def _released(text: str) -> str:
        return text if text.strip() else ""

    def _body(self, out: dict[str, str]) -> bool:
        """Body text up to the message's end (or the next message's start, when the model left out the end)."""
        found = [(self.buffer.find(tag), tag) for tag in (*ENDS, START) if tag in self.buffer]
        if found:
            cut, tag = min(found)
            self._emit(self.buffer[:cut], out)
            self.buffer = self.buffer[cut + (0 if tag == START else len(tag)):]
            self._close()
            return True
        keep = max(partial_suffix(self.buffer, tag) for tag in (*ENDS, START))
        self._emit(self.buffer[:len(self.buffer) - keep], out)
        self.buffer = self.buffer[len(self.buffer) - keep:]
        return False

    def _emit(self, text: str, out: dict[str, str]) -> None:
        route = self.header.route
        if route == "tool":
            self.tool_body += text
        else:
            out[route] += text

    def _close(self) -> None:
        """The message ended: a tool call's body is complete; look for the next message."""
        if self.header.route == "tool":
            self.calls.append((self.header.recipient, self.tool_body))
        self.tool_body, self.header, self.state = "", Header(), "outside"

    def finish(self) -> tuple[str, str, list[dict[str, Any]]]:
        """What is left when the output ends (an unclosed message ends with it): thinking, content, tool calls."""
        out = {"thinking": "", "content": ""}
        if self.state == "body":
            self._emit(self.buffer, out)
            self._close()
        elif self.state == "header":  # an unfinished header says nothing, unless the model wrote no harmony at all
            written = self.buffer[self.opened:]
            out["content"] += written if "<|" not in self.buffer else ""
        else:
            out["content"] += self._released(self.outside + self.buffer)
        self.buffer = self.outside = ""
        calls, stray = self._parsed_calls()
        return (out["thinking"] if self.keep_thinking else ""), out["content"] + stray, calls

    def _parsed_calls(self) -> tuple[list[dict[str, Any]], str]:
        """Ollama's ``tool_calls`` from the call messages; a body that is no JSON object comes back as content."""
        calls, stray = [], ""
        for recipient, body in self.calls:
            try:
                arguments = json.loads(body) if body.strip() else {}
            except json.JSONDecodeError:
                arguments = None
            if not isinstance(arguments, dict):
                stray += body
                continue
            name = recipient.removeprefix("functions.")
            calls.append({"id": call_id(), "function": {"index": len(calls), "name": name, "arguments": arguments}})
        return calls, stray
