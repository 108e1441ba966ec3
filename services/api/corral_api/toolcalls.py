"""Tool calls in model output: found by the family's markers, parsed into Ollama's ``tool_calls``.

Families: Hermes/Qwen ``<tool_call>{…}</tool_call>``, Mistral ``[TOOL_CALLS] [{…}]``, Llama 3
``<|python_tag|>{…}`` or bare JSON, and plain JSON (``{"name": …, "arguments": …}`` or a list).
Text that turns out not to be a call is released as content, never lost.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from typing import Any

from corral_common.internal import ForcedCall, ToolFunction
from corral_common.text import partial_suffix

_ID_CHARS = string.ascii_lowercase + string.digits
MARKERS = {"hermes": "<tool_call>", "mistral": "[TOOL_CALLS]", "llama3": "<|python_tag|>"}
_HERMES_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)


def family_of(template: str) -> str:
    """Which tool-call syntax a model's template teaches it."""
    for family, marker in MARKERS.items():
        if marker in template:
            return family
    return "json"


def call_id() -> str:
    """``call_`` + 8 characters of ``[a-z0-9]``, as Ollama makes them."""
    return "call_" + "".join(secrets.choice(_ID_CHARS) for _ in range(8))


def _as_call(obj: Any, index: int) -> dict[str, Any] | None:
    """One parsed call object in Ollama's shape, or None if it is not a call."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or not name or not isinstance(args, dict):
        return None
    return {"id": call_id(), "function": {"index": index, "name": name, "arguments": args}}


def _json_values(text: str) -> list[Any]:
    """Every top-level JSON value in text (objects or arrays written one after another)."""
    decoder, values, pos = json.JSONDecoder(), [], 0
    text = text.strip()
    while pos < len(text):
        while pos < len(text) and text[pos] in " \t\r\n;,":
            pos += 1
        if pos >= len(text):
            break
        value, pos = decoder.raw_decode(text, pos)
        values.append(value)
    return values


def parse_calls(text: str, family: str) -> list[dict[str, Any]]:
    """Tool calls in a complete output; [] when it holds none (then it is plain content)."""
    bodies = [m.group(1) for m in _HERMES_BLOCK.finditer(text)] if family == "hermes" else [text]
    if family in ("mistral", "llama3"):
        bodies = [text.split(MARKERS[family], 1)[-1]]
    objects: list[Any] = []
    try:
        for body in bodies:
            for value in _json_values(body):
                objects += value if isinstance(value, list) else [value]
    except json.JSONDecodeError:
        return []
    calls = [_as_call(obj, i) for i, obj in enumerate(objects)]
    return calls if calls and all(calls) else []  # type: ignore[return-value]


class ToolCallCollector:
    """Streams content through, holding back whatever may be a tool call until the output ends."""

    def __init__(self, family: str, forced: bool = False) -> None:
        self.family, self.forced = family, forced
        self.held = ""
        self.holding = forced
        self.started = False

    @classmethod
    def for_forced(cls, call: ForcedCall) -> ToolCallCollector:
        """A collector for a forced call, holding the prefix the prompt ended with (the model never wrote it)."""
        collector = cls("json", forced=True)
        collector.held = call.prefix()
        return collector

    def feed(self, text: str) -> str:
        """Content that is safe to emit now."""
        if self.holding:
            self.held += text
            return ""
        combined, marker = self.held + text, MARKERS.get(self.family)
        if marker and marker in combined:
            cut = combined.index(marker)
            self.holding, self.held = True, combined[cut:]
            return combined[:cut]
        stripped = combined.lstrip()
        if not self.started and self.family in ("json", "llama3") and stripped[:1] in ("{", "["):
            self.holding, self.held = True, stripped
            return combined[: len(combined) - len(stripped)]
        if not stripped and not self.started:
            self.held = combined
            return ""
        self.started = True
        keep = partial_suffix(combined, marker) if marker else 0
        self.held = combined[len(combined) - keep:]
        return combined[: len(combined) - keep]

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        """Leftover content and the parsed calls (held text that is no call becomes content)."""
        calls = parse_calls(self.held, self.family) if self.held.strip() else []
        return ("", calls) if calls else (self.held, [])


def forced_call(tools: list[dict[str, Any]], choice: Any) -> ForcedCall | None:
    """The call a ``tool_choice`` forces: ``required`` (any of the tools) or a named one; None when not forced."""
    functions = [t["function"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name") or choice.get("name")
        functions = [f for f in functions if f.get("name") == wanted]
        if not functions:
            raise ValueError(f'tool_choice names "{wanted}", which is not among the tools')
    elif choice != "required":
        return None
    if not functions:
        raise ValueError('tool_choice "required" needs at least one function among the tools')
    return ForcedCall(functions=[ToolFunction(name=f.get("name") or "", parameters=f.get("parameters") or {})
                                 for f in functions])
