"""Anthropic Messages bodies → a native ChatRequest (Ollama's anthropic/anthropic.go mapping).

The system prompt (a string or text blocks) becomes the first message; each message's text blocks are joined,
images become native images, ``tool_use`` blocks native tool calls and ``tool_result`` blocks ``tool`` messages
(before the user's own text, so results follow the call they answer). The other direction is in ``stream``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from corral_common.errors import BadRequest
from corral_common.schemas import ChatRequest, Message

from corral_api.anthropic.schemas import CountTokensRequest, MessageParam, MessagesRequest
from corral_api.openai.translate import tool_fields

CHOICES = {"auto": "auto", "any": "required", "none": "none"}
THINKING = {"enabled": True, "disabled": False}
EFFORTS = ("low", "medium", "high", "max")


def system_messages(system: str | list[Any] | None) -> list[Message]:
    """The system prompt as one system message (text blocks joined); nothing when empty."""
    if isinstance(system, list):
        system = "".join(b["text"] for b in system
                         if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str))
    return [Message(role="system", content=system)] if system else []


def image_data(source: Any) -> str:
    """A base64 image source's payload; URL and file sources are refused, as Ollama does."""
    if not isinstance(source, dict):
        raise BadRequest("invalid image source")
    if source.get("type") != "base64":
        raise BadRequest(f"invalid image source type: {source.get('type')}. Only base64 images are supported.")
    data = source.get("data")
    try:
        base64.b64decode(data if isinstance(data, str) else "", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"invalid base64 image data: {exc}") from None
    return data


def tool_result_content(content: Any) -> tuple[str, list[str]]:
    """A tool_result's content (a string, or text and image blocks) as text and images."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        return "", []
    texts, images = [], []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "image":
            images.append(image_data(block.get("source")))
    return "".join(texts), images


@dataclass
class Turn:
    """One Anthropic message's blocks, gathered into native fields."""

    text: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    thinking: str = ""
    results: list[Message] = field(default_factory=list)

    def tool_use(self, block: dict[str, Any], names: dict[str, str]) -> None:
        for key in ("id", "name"):
            if not block.get(key):
                raise BadRequest(f"tool_use block missing required '{key}' field")
            if not isinstance(block[key], str):
                raise BadRequest(f"tool_use block '{key}' must be a string")
        arguments = block.get("input", {})
        if not isinstance(arguments, dict):
            raise BadRequest("tool_use block 'input' must be an object")
        names[block["id"]] = block["name"]
        self.calls.append({"id": block["id"], "function": {"index": len(self.calls), "name": block["name"],
                                                           "arguments": arguments}})

    def tool_result(self, block: dict[str, Any], names: dict[str, str]) -> None:
        text, images = tool_result_content(block.get("content"))
        call_id = block.get("tool_use_id") or None
        if call_id is not None and not isinstance(call_id, str):
            raise BadRequest("tool_result block 'tool_use_id' must be a string")
        self.results.append(Message(role="tool", content=text, images=images or None, tool_call_id=call_id,
                                    tool_name=names.get(call_id or "")))

    def add(self, block: Any, names: dict[str, str]) -> None:
        """Take one block; kinds without a native meaning (redacted thinking, documents, ...) are skipped."""
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            self.text.append(block["text"])
        elif kind == "image":
            self.images.append(image_data(block.get("source")))
        elif kind == "tool_use":
            self.tool_use(block, names)
        elif kind == "tool_result":
            self.tool_result(block, names)
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            self.thinking = block["thinking"]

    def messages(self, role: str) -> list[Message]:
        """The native messages: tool results first on a user turn, after the message otherwise."""
        own = []
        if self.text or self.images or self.calls or self.thinking:
            own.append(Message(role=role, content="".join(self.text), images=self.images or None,
                               tool_calls=self.calls or None, thinking=self.thinking or None))
        return self.results + own if role == "user" else own + self.results


def native_messages(req: CountTokensRequest) -> list[Message]:
    """The system prompt then every message, as native messages."""
    messages, names = system_messages(req.system), {}
    for message in req.messages:
        turn = Turn()
        for block in _blocks(message):
            turn.add(block, names)
        messages += turn.messages(message.role.lower())
    return messages


def _blocks(message: MessageParam) -> list[Any]:
    return [{"type": "text", "text": message.content}] if isinstance(message.content, str) else message.content


def native_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A client tool (``name``, ``description``, ``input_schema``) as a native function tool."""
    if str(tool.get("type") or "").startswith("web_search"):
        raise BadRequest("web_search server tools are not supported: corral does not run searches for this API; "
                         "declare a client tool and call the search yourself")
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        raise BadRequest("tools: every tool needs a 'name'")
    schema = tool.get("input_schema")
    if schema is not None and not isinstance(schema, dict):
        raise BadRequest(f"invalid input_schema for tool \"{tool['name']}\": must be an object")
    function = {"name": tool["name"], "description": tool.get("description") or "",
                "parameters": schema or {"type": "object", "properties": {}}}
    return {"type": "function", "function": function}


def native_choice(choice: dict[str, Any] | None) -> str | dict[str, Any] | None:
    """``tool_choice``: auto → auto, any → required, none → none, ``{"type": "tool", "name"}`` → that function."""
    if choice is None:
        return None
    kind = choice.get("type")
    if kind == "tool":
        if not isinstance(choice.get("name"), str) or not choice["name"]:
            raise BadRequest("tool_choice of type \"tool\" needs a 'name'")
        return {"type": "function", "function": {"name": choice["name"]}}
    if not isinstance(kind, str) or kind not in CHOICES:
        raise BadRequest(f'invalid tool_choice type "{kind}" (must be "auto", "any", "tool" or "none")')
    return CHOICES[kind]


def native_think(thinking: dict[str, Any] | None, output_config: dict[str, Any] | None) -> bool | str | None:
    """``{"type": "enabled"}`` → think, ``{"type": "disabled"}`` → no thinking (the budget is not enforced);
    without either, ``output_config.effort`` is the think level (``xhigh`` → high)."""
    think = THINKING.get(str((thinking or {}).get("type")))
    if think is not None:
        return think
    effort = str((output_config or {}).get("effort") or "").strip().lower()
    effort = "high" if effort == "xhigh" else effort
    return effort if effort in EFFORTS else None


def check(req: CountTokensRequest) -> None:
    """The fields Anthropic requires, refused in Ollama's words."""
    if not req.model:
        raise BadRequest("model is required")
    if isinstance(req, MessagesRequest) and (req.max_tokens is None or req.max_tokens <= 0):
        raise BadRequest("max_tokens is required and must be positive")
    if not req.messages:
        raise BadRequest("messages is required")


def _options(req: MessagesRequest) -> dict[str, Any]:
    explicit = {"num_predict": req.max_tokens, "temperature": req.temperature, "top_p": req.top_p,
                "top_k": req.top_k, "stop": req.stop_sequences or None}
    return {key: value for key, value in explicit.items() if value is not None}


def chat_request(req: CountTokensRequest) -> ChatRequest:
    """A Messages (or count_tokens) body as a native chat request."""
    check(req)
    tools = [native_tool(t) for t in req.tools or []] or None
    fields: dict[str, Any] = {"model": req.model, "messages": native_messages(req), "stream": False,
                              "think": native_think(req.thinking, req.output_config),
                              **tool_fields(tools, native_choice(req.tool_choice))}
    if isinstance(req, MessagesRequest):
        fields.update(stream=req.stream, options=_options(req))
    return ChatRequest.model_validate(fields)
