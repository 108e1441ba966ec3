"""The Anthropic Messages operations: translate the request, run the native chat, translate the answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from corral_api import running
from corral_api.anthropic import translate
from corral_api.anthropic.schemas import CountTokensRequest, MessagesRequest
from corral_api.anthropic.stream import MessagesStream
from corral_api.running import Call


def _native(call: Call, req: MessagesRequest) -> AsyncIterator[dict[str, Any]]:
    """The native chat; ``thinking`` is dropped for models that cannot think, as Ollama's layer does."""
    return running.chat(call, translate.chat_request(req), relax_think=True, cached=True)


def messages_stream(call: Call, req: MessagesRequest) -> AsyncIterator[dict[str, Any]]:
    """POST /v1/messages with ``stream: true``: Messages events."""
    return MessagesStream(req.model).events(_native(call, req))


async def create_message(call: Call, req: MessagesRequest) -> dict[str, Any]:
    """POST /v1/messages: one ``message``, built by the same converter the stream uses."""
    native = await running.collect_chat(_native(call, req))
    stream = MessagesStream(req.model)
    stream.translate(native)
    return stream.message or {}


async def count_tokens(call: Call, req: CountTokensRequest) -> dict[str, int]:
    """POST /v1/messages/count_tokens: the rendered prompt's tokens."""
    return {"input_tokens": await running.chat_tokens(call, translate.chat_request(req))}
