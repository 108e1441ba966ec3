"""OpenAI request bodies → native ChatRequest/GenerateRequest/EmbedRequest (reference §4.1, §4.2, §4.4).

The other direction, native chunks → OpenAI objects, is in ``responses``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, TypeVar

from corral_common.errors import BadRequest
from corral_common.schemas import ChatRequest, EmbedRequest, GenerateRequest, Message

NativeRequest = TypeVar("NativeRequest", ChatRequest, GenerateRequest)

from corral_api.openai import tokens
from corral_api.openai.schemas import (ChatCompletionRequest, ChatMessage, EmbeddingRequest, ResponseFormat, Sampling,
                                       TextCompletionRequest, ToolCall)

IMAGE_PREFIXES = ("data:;base64,", "data:image/jpeg;base64,", "data:image/jpg;base64,",
                  "data:image/png;base64,", "data:image/webp;base64,")
ENCODINGS = ("float", "base64")
MAX_CHOICES = 8  # n sequences run at once, each in a slot of its own
# OpenAI's effort scale reaches past Ollama's at both ends; clamp to the nearest level (openai.go).
EFFORTS: dict[str, bool | str] = {"none": False, "minimal": "low", "low": "low", "medium": "medium",
                                  "high": "high", "max": "max", "xhigh": "max", "ultra": "max"}
_GO_TYPES = ((bool, "bool"), ((int, float), "float64"), (str, "string"), (list, "[]interface {}"),
             (dict, "map[string]interface {}"))


def go_type(value: Any) -> str:
    """How Go's encoding/json names the type of a decoded value (for Ollama's error texts)."""
    for kinds, name in _GO_TYPES:
        if isinstance(value, kinds):
            return name
    return "<nil>"


def choice_count(n: int | None) -> int:
    """How many choices to generate per prompt: ``n``, 1 when absent, at most ``MAX_CHOICES``."""
    if n is None:
        return 1
    if n < 1:
        raise BadRequest(f"{n} is less than the minimum of 1 - 'n'")
    if n > MAX_CHOICES:
        raise BadRequest(f"{n} is greater than the maximum of {MAX_CHOICES} - 'n'")
    return n


def copies(native: NativeRequest, n: int) -> list[NativeRequest]:
    """``n`` copies of a native request; with a seed, copy i samples with seed + i so the choices differ."""
    seed = (native.options or {}).get("seed")
    if seed is None:
        return [native] * n
    return [native.model_copy(update={"options": {**native.options, "seed": seed + i}}) for i in range(n)]


def stop_list(stop: Any) -> list[str] | None:
    """``stop`` as a list of strings; a string becomes a one-element list."""
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if not isinstance(stop, list):
        raise BadRequest(f"invalid type for 'stop' field: {go_type(stop)}")
    for item in stop:
        if not isinstance(item, str):
            raise BadRequest(f"invalid type for 'stop' field: {go_type(item)}")
    return stop


def merged_options(extra: dict[str, Any] | None, explicit: dict[str, Any]) -> dict[str, Any]:
    """Native options: OpenAI's defaults, then corral's ``options`` extra, then the explicit OpenAI fields."""
    options: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0, **(extra or {})}
    options.update({key: value for key, value in explicit.items() if value is not None})
    return options


def sampling_options(req: Sampling, max_tokens: int | None) -> dict[str, Any]:
    """Native options for chat and completions requests."""
    explicit = {"num_predict": max_tokens, "seed": req.seed, "stop": stop_list(req.stop),
                "temperature": req.temperature, "top_p": req.top_p, "frequency_penalty": req.frequency_penalty,
                "presence_penalty": req.presence_penalty, "num_ctx": req.num_ctx}
    return merged_options(req.options, explicit)


def image_data(url: str) -> str:
    """The base64 payload of a data URL; remote URLs and other media types are refused."""
    if url.startswith(("http://", "https://")):
        raise BadRequest("image URLs are not currently supported, please use base64 encoded data instead")
    for prefix in IMAGE_PREFIXES:
        if url.startswith(prefix):
            data = url[len(prefix):]
            try:
                base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest("invalid image input") from None
            return data
    raise BadRequest("invalid image input")


def _image_url(part: dict[str, Any]) -> str:
    """``image_url`` is ``{"url": ...}`` or, leniently, the URL string itself."""
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str):
        raise BadRequest("invalid message format")
    return url


def content_parts(parts: list[Any]) -> tuple[str, list[str]]:
    """Text parts joined by newlines, and the images of ``image_url`` parts."""
    texts: list[str] = []
    images: list[str] = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            images.append(image_data(_image_url(part)))
        else:
            raise BadRequest("invalid message format")
    return "\n".join(texts), images


def native_tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """OpenAI tool calls (arguments as a JSON string) → native ones (arguments as an object)."""
    native = []
    for index, call in enumerate(calls):
        try:
            arguments = json.loads(call.function.arguments)
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise BadRequest("invalid tool call arguments")
        function = {"index": index, "name": call.function.name, "arguments": arguments}
        native.append({"id": call.id, "function": function} if call.id else {"function": function})
    return native


def _tool_name(message: ChatMessage, messages: list[ChatMessage]) -> str:
    """A tool result's function: its ``name``, or the latest assistant call with the same id."""
    if message.role.lower() != "tool":
        return ""
    if message.name or not message.tool_call_id:
        return message.name or ""
    for earlier in reversed(messages):
        for call in earlier.tool_calls or []:
            if call.id == message.tool_call_id:
                return call.function.name
    return ""


def native_message(message: ChatMessage, messages: list[ChatMessage]) -> Message:
    """One OpenAI message as one native message (content parts folded into text and images)."""
    if message.content is None and not message.tool_calls:
        raise BadRequest("invalid message content type: <nil>")
    content = message.content or ""
    text, images = (content, []) if isinstance(content, str) else content_parts(content)
    fields: dict[str, Any] = {"role": message.role, "content": text, "images": images or None,
                              "thinking": message.reasoning or None, "tool_call_id": message.tool_call_id,
                              "tool_name": _tool_name(message, messages) or None}
    if message.tool_calls:
        fields["tool_calls"] = native_tool_calls(message.tool_calls)
    return Message.model_validate(fields)


def native_format(response_format: ResponseFormat | None) -> Any:
    """``json_object`` → ``"json"``; ``json_schema`` → the schema itself; ``text`` → no format."""
    if response_format is None:
        return None
    kind = response_format.type.strip().lower()
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = (response_format.json_schema or {}).get("schema")
        if not isinstance(schema, dict):
            raise BadRequest("response_format json_schema needs a 'json_schema.schema' object")
        return schema
    if kind == "text":
        return None
    raise BadRequest(f'invalid response_format type "{response_format.type}" '
                     '(must be "text", "json_object" or "json_schema")')


def native_think(req: ChatCompletionRequest) -> bool | str | None:
    """``reasoning.effort`` (or ``reasoning_effort``) as native ``think``; absent leaves the model's default."""
    return think_from_effort(req.reasoning.effort if req.reasoning and req.reasoning.effort else req.reasoning_effort)


def think_from_effort(effort: str | None) -> bool | str | None:
    """An OpenAI reasoning effort as native ``think`` (clamped to Ollama's levels); none given → None."""
    if not effort:
        return None
    if effort not in EFFORTS:
        raise BadRequest(f'invalid reasoning value: "{effort}" (must be "minimal", "low", "medium", "high", '
                         '"xhigh", "ultra", "max", or "none")')
    return EFFORTS[effort]


def _choice_label(choice: str | dict[str, Any]) -> str:
    return choice if isinstance(choice, str) else json.dumps(choice, separators=(",", ":"))


def native_tools(req: ChatCompletionRequest) -> dict[str, Any]:
    """``tools`` and ``tool_choice`` of a chat request as native fields."""
    return tool_fields(req.tools, req.tool_choice)


def tool_fields(tools: list[dict[str, Any]] | None, choice: str | dict[str, Any] | None) -> dict[str, Any]:
    """Native tools and ``tool_choice``; a choice the native side cannot honour is a 400."""
    if choice is None or choice == "auto":
        return {"tools": tools}
    if choice == "none":
        return {"tools": None}
    if isinstance(choice, str) and choice != "required":
        raise BadRequest(f'invalid tool_choice "{choice}" (must be "none", "auto", "required" or a named function)')
    if "tool_choice" in ChatRequest.model_fields:
        return {"tools": tools, "tool_choice": choice}
    raise BadRequest(f"tool_choice {_choice_label(choice)} is not supported yet"
                     if isinstance(choice, dict) else f'tool_choice "{choice}" is not supported yet')


def chat_requests(req: ChatCompletionRequest) -> list[ChatRequest]:
    """POST /v1/chat/completions as ``n`` native chat requests, one per choice."""
    return copies(chat_request(req), choice_count(req.n))


def chat_request(req: ChatCompletionRequest) -> ChatRequest:
    """POST /v1/chat/completions as a native chat request (one choice)."""
    if not req.messages:
        raise BadRequest("[] is too short - 'messages'")
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    return ChatRequest.model_validate({
        "model": req.model, "messages": [native_message(m, req.messages) for m in req.messages],
        "stream": req.stream, "format": native_format(req.response_format),
        "options": sampling_options(req, max_tokens), "think": native_think(req),
        "logprobs": bool(req.logprobs), "top_logprobs": req.top_logprobs or 0, **native_tools(req)})


def prompts(value: Any) -> list[str]:
    """``prompt`` as a list of prompts: a string is one, a list of strings is one each (token ids are refused)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    if _is_tokens(value) or (isinstance(value, list) and value and all(_is_tokens(v) for v in value)):
        raise BadRequest("token-id prompts are not supported: send the prompt as text")
    raise BadRequest("prompt must be a string or a non-empty array of strings")


def generate_requests(req: TextCompletionRequest) -> list[GenerateRequest]:
    """POST /v1/completions as native generate requests: ``n`` per prompt, in OpenAI's choice order."""
    n = choice_count(req.n)
    return [copy for prompt in prompts(req.prompt) for copy in copies(generate_request(req, prompt), n)]


def generate_request(req: TextCompletionRequest, prompt: str) -> GenerateRequest:
    """One prompt of POST /v1/completions as a native generate request (``logprobs: n`` → n alternatives)."""
    top = req.logprobs or 0
    return GenerateRequest.model_validate({
        "model": req.model, "prompt": prompt, "suffix": req.suffix, "stream": req.stream,
        "options": sampling_options(req, req.max_tokens), "logprobs": top > 0, "top_logprobs": max(top, 0)})


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value)


def embedding_inputs(value: Any) -> list[str]:
    """``input`` as texts: ``""`` is one empty input, nothing is a 400; token ids are OpenAI's (cl100k_base),
    spelled out as text: one id list is one input, a list of id lists is one input each."""
    if value == "":
        return [""]
    if value is None or value == []:
        raise BadRequest("invalid input")
    if isinstance(value, str):
        return [value]
    if _is_tokens(value):
        return [tokens.decode(value)]
    if isinstance(value, list) and all(_is_tokens(v) for v in value):
        return [tokens.decode(v) for v in value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise BadRequest("invalid input type")


def embed_request(req: EmbeddingRequest) -> EmbedRequest:
    """POST /v1/embeddings as a native embed request (token-id inputs become the text they spell)."""
    if req.encoding_format and req.encoding_format.lower() not in ENCODINGS:
        raise BadRequest(f"Invalid value for 'encoding_format' = {req.encoding_format}. "
                         "Supported values: ['float', 'base64'].")
    return EmbedRequest.model_validate({"model": req.model, "input": embedding_inputs(req.input),
                                        "dimensions": req.dimensions})
