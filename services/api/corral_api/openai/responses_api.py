"""POST /v1/responses bodies → a native ChatRequest (reference §4.5, the stateless form).

Everything that would change the meaning of a request but cannot be honoured here is a 400 that says so;
the other direction, native chunks → Responses objects and events, is in ``responses_stream``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from corral_common.errors import BadRequest, UnsupportedMediaType
from corral_common.schemas import ChatRequest, Message

from corral_api.openai import translate
from corral_api.openai.schemas import FunctionCall, ResponsesRequest, ResponsesTextFormat, ToolCall

STATEFUL = ("previous_response_id", "conversation")
# Fields that would ask for something corral cannot do: (test on the value, why it is refused).
REFUSED_EXTRAS = {"background": "background responses are not supported (nothing is stored)",
                  "prompt": "stored prompt templates are not supported; send instructions and input",
                  "max_tool_calls": "max_tool_calls is not supported",
                  "top_logprobs": "top_logprobs is not supported on /v1/responses yet",
                  "context_management": "context_management is not supported"}
TRUNCATIONS = {"auto": True, "disabled": False}
INCLUDABLE = ("reasoning.encrypted_content",)


def decoded_body(raw: bytes, content_encoding: str | None) -> bytes:
    """The request body; compressed bodies are refused (no zstd decoder ships with corral)."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return raw
    if encoding == "zstd":
        raise UnsupportedMediaType("Content-Encoding zstd is not supported by this server "
                                   "(no zstd decoder is installed); send the body uncompressed")
    raise UnsupportedMediaType(f'Content-Encoding "{content_encoding}" is not supported; '
                               "send the body uncompressed")


def check_supported(req: ResponsesRequest) -> None:
    """Refuse the stateful form and every field that cannot be honoured, naming it."""
    extras = req.model_extra or {}
    for key in STATEFUL:
        if extras.get(key) is not None:
            raise BadRequest(f"{key} is not supported: corral implements only the stateless form of "
                             "/v1/responses, so send the whole conversation in 'input'")
    for key, value in extras.items():
        if value is None or (key == "background" and value is False):
            continue
        raise BadRequest(REFUSED_EXTRAS.get(key, f'unsupported field "{key}" for /v1/responses'))
    for item in req.include or []:
        if item not in INCLUDABLE:
            raise BadRequest(f'include "{item}" is not supported (supported: {", ".join(INCLUDABLE)})')
    if req.truncation is not None and req.truncation not in TRUNCATIONS:
        raise BadRequest(f'invalid truncation "{req.truncation}" (must be "auto" or "disabled")')


def _image(part: dict[str, Any]) -> str:
    """An ``input_image`` part's base64 payload (data URLs only, as on chat completions)."""
    url = part.get("image_url")
    if isinstance(url, dict):
        url = url.get("url")
    if isinstance(url, str) and url:
        return translate.image_data(url)
    if part.get("file_id"):
        raise BadRequest("image file ids are not supported, please use base64 encoded data URLs instead")
    raise BadRequest("input_image needs an image_url")


def content(parts: str | list[Any] | None) -> tuple[str, list[str]]:
    """Message content (a string or parts) as text and base64 images."""
    if parts is None or isinstance(parts, str):
        return parts or "", []
    if not isinstance(parts, list):
        raise BadRequest("content must be a string or an array of content parts")
    texts: list[str] = []
    images: list[str] = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "input_image":
            images.append(_image(part))
        elif kind == "input_file":
            raise BadRequest("file inputs are not currently supported")
        else:
            raise BadRequest(f"unknown content type: {kind}")
    return "".join(texts), images


@dataclass
class Conversation:
    """Native messages built from input items; function calls join the assistant turn before them."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, str] = field(default_factory=dict)
    thinking: str = ""

    def _assistant(self) -> dict[str, Any]:
        if not self.messages or self.messages[-1]["role"] != "assistant":
            self.messages.append({"role": "assistant", "content": ""})
        return self.messages[-1]

    def _take_thinking(self, message: dict[str, Any]) -> None:
        if self.thinking:
            message["thinking"], self.thinking = self.thinking, ""

    def message(self, item: dict[str, Any]) -> None:
        role = item.get("role", "user")
        text, images = content(item.get("content"))
        message = {"role": "system" if role == "developer" else role, "content": text, "images": images or None}
        if role == "assistant":
            self._take_thinking(message)
        self.messages.append(message)

    def function_call(self, item: dict[str, Any]) -> None:
        call_id, name = str(item.get("call_id") or ""), str(item.get("name") or "")
        assistant = self._assistant()
        assistant.setdefault("_calls", []).append(
            ToolCall(id=call_id, function=FunctionCall(name=name, arguments=item.get("arguments") or "{}")))
        self._take_thinking(assistant)
        self.calls[call_id] = name

    def function_call_output(self, item: dict[str, Any]) -> None:
        output = item.get("output")
        text, images = content(output) if isinstance(output, list) else (str(output or ""), [])
        call_id = str(item.get("call_id") or "")
        self.messages.append({"role": "tool", "content": text, "images": images or None, "tool_call_id": call_id,
                              "tool_name": self.calls.get(call_id) or None})

    def reasoning(self, item: dict[str, Any]) -> None:
        summary = "".join(s["text"] for s in item.get("summary") or []
                          if isinstance(s, dict) and isinstance(s.get("text"), str))
        self.thinking = item.get("encrypted_content") or summary

    def native(self) -> list[Message]:
        """The messages as native ones (a trailing reasoning item becomes an assistant turn of its own)."""
        if self.thinking:
            self.messages.append({"role": "assistant", "content": "", "thinking": self.thinking})
            self.thinking = ""
        out = []
        for message in self.messages:
            calls = message.pop("_calls", None)
            if calls:
                message["tool_calls"] = translate.native_tool_calls(calls)
            out.append(Message.model_validate(message))
        return out


ITEMS = {"message": Conversation.message, "function_call": Conversation.function_call,
         "function_call_output": Conversation.function_call_output, "reasoning": Conversation.reasoning}
# The fields of each item kind that must have one JSON type when present (the rest are read leniently).
ITEM_TYPES: dict[str, dict[str, type]] = {
    "message": {"role": str}, "function_call": {"call_id": str, "name": str, "arguments": str},
    "function_call_output": {"call_id": str}, "reasoning": {"encrypted_content": str, "summary": list}}
_JSON_TYPES = ((bool, "a boolean"), (str, "a string"), (list, "an array"), (dict, "an object"),
               ((int, float), "a number"))


def _json_type(value: Any) -> str:
    return next(name for kind, name in _JSON_TYPES if isinstance(value, kind))


def _check_types(position: int, kind: str, item: dict[str, Any]) -> None:
    """A wrong type is a 400 in OpenAI's words, before it reaches the native messages."""
    for name, expected in ITEM_TYPES[kind].items():
        value = item.get(name)
        if value is not None and not isinstance(value, expected):
            raise BadRequest(f"Invalid type for 'input[{position}].{name}': expected {_json_type(expected())}, "
                             f"but got {_json_type(value)} instead.")


def messages(req: ResponsesRequest) -> list[Message]:
    """``instructions`` then ``input`` (a string, or items) as native messages."""
    conversation = Conversation()
    if req.instructions:
        conversation.messages.append({"role": "system", "content": req.instructions})
    items = [{"type": "message", "role": "user", "content": req.input}] if isinstance(req.input, str) else req.input
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"input[{position}] must be an object")
        kind = item.get("type") or ("message" if item.get("role") else "")
        if kind == "item_reference":
            raise BadRequest("item_reference inputs are not supported: corral implements only the stateless form")
        if not isinstance(kind, str) or kind not in ITEMS:
            raise BadRequest(f'input[{position}]: unknown input item type: "{kind}"' if kind
                             else f"input[{position}] is missing its 'type'")
        _check_types(position, kind, item)
        ITEMS[kind](conversation, item)
    native = conversation.native()
    if not native:
        raise BadRequest("input must not be empty")
    return native


def native_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A Responses tool (flat ``{type, name, parameters}``) as a native one; only function tools are run."""
    kind = tool.get("type")
    if kind in ("web_search", "web_search_preview"):
        raise BadRequest("web_search tools are not supported on /v1/responses: corral does not run searches "
                         "for this API; declare a function tool and call the search yourself")
    if kind != "function":
        raise BadRequest(f'tool type "{kind}" is not supported (only "function" tools are)')
    if not tool.get("name"):
        raise BadRequest("function tools need a 'name'")
    function = {"name": tool["name"], "description": tool.get("description") or "",
                "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
    return {"type": "function", "function": function}


def native_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """``tool_choice``: the strings as they are, ``{"type": "function", "name"}`` in the chat form."""
    if not isinstance(choice, dict):
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise BadRequest(f'tool_choice of type "{choice.get("type")}" is not supported '
                     '(use "none", "auto", "required" or {"type": "function", "name": ...})')


def native_format(text_format: ResponsesTextFormat | None) -> Any:
    """``text.format``: ``json_schema`` → the schema, ``json_object`` → ``"json"``, ``text`` → none."""
    if text_format is None or text_format.type == "text":
        return None
    if text_format.type == "json_object":
        return "json"
    if text_format.type == "json_schema":
        if not isinstance(text_format.schema_, dict):
            raise BadRequest("text.format json_schema needs a 'schema' object")
        return text_format.schema_
    raise BadRequest(f'invalid text.format type "{text_format.type}" (must be "text", "json_object" or "json_schema")')


def chat_request(req: ResponsesRequest) -> ChatRequest:
    """POST /v1/responses as a native chat request."""
    check_supported(req)
    tools = [native_tool(t) for t in req.tools or []] or None
    explicit = {"temperature": req.temperature, "top_p": req.top_p, "num_predict": req.max_output_tokens,
                "num_ctx": req.num_ctx}
    fields = {"model": req.model, "messages": messages(req), "stream": req.stream,
              "format": native_format(req.text.format if req.text else None),
              "options": translate.merged_options(req.options, explicit),
              "think": translate.think_from_effort(req.reasoning.effort if req.reasoning else None),
              "truncate": TRUNCATIONS.get(req.truncation or ""),
              **translate.tool_fields(tools, native_choice(req.tool_choice))}
    return ChatRequest.model_validate(fields)
