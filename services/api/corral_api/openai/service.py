"""The OpenAI-compatible operations: translate the request, run the native service, translate the answer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from corral_common.schemas import ShowRequest

from corral_api import models, running
from corral_api.openai import responses, responses_api, translate
from corral_api.openai.responses_stream import ResponsesStream
from corral_api.openai.schemas import (ChatCompletionRequest, EmbeddingRequest, ResponsesRequest,
                                      TextCompletionRequest)
from corral_api.running import Call


def chat_stream(call: Call, req: ChatCompletionRequest) -> AsyncIterator[dict[str, Any]]:
    """POST /v1/chat/completions with ``stream: true``: chunk objects."""
    native = running.chat(call, translate.chat_request(req))
    stream = responses.ChatStream(responses.new_id("chatcmpl"), int(time.time()), req.include_usage())
    return stream.events(native)


async def chat(call: Call, req: ChatCompletionRequest) -> dict[str, Any]:
    """POST /v1/chat/completions: one ``chat.completion``."""
    native = await running.collect_chat(running.chat(call, translate.chat_request(req)))
    return responses.chat_completion(responses.new_id("chatcmpl"), int(time.time()), native)


def _echo(req: TextCompletionRequest) -> str:
    return req.prompt if req.echo and isinstance(req.prompt, str) else ""


def completion_stream(call: Call, req: TextCompletionRequest) -> AsyncIterator[dict[str, Any]]:
    """POST /v1/completions with ``stream: true``: chunk objects."""
    native = running.generate(call, translate.generate_request(req))
    stream = responses.CompletionStream(responses.new_id("cmpl"), int(time.time()), req.include_usage(), _echo(req))
    return stream.events(native)


async def completion(call: Call, req: TextCompletionRequest) -> dict[str, Any]:
    """POST /v1/completions: one ``text_completion``."""
    native = await running.collect_generate(running.generate(call, translate.generate_request(req)))
    return responses.completion(responses.new_id("cmpl"), int(time.time()), native, _echo(req))


async def list_models(call: Call) -> dict[str, Any]:
    """GET /v1/models from the store's model list."""
    return responses.model_list(await call.registry.list_models(call.request_id))


async def retrieve_model(call: Call, name: str) -> dict[str, Any]:
    """GET /v1/models/{model}: the model's show data as a ``model`` object (404 when unknown)."""
    shown = await call.registry.show(ShowRequest(model=name), call.request_id)
    return responses.model_object(name, shown["modified_at"])


async def embeddings(call: Call, req: EmbeddingRequest) -> dict[str, Any]:
    """POST /v1/embeddings through the native embed (normalised, cut to ``dimensions``)."""
    result = await models.embed(call, translate.embed_request(req))
    return responses.embedding_list(req.model, result, req.encoding_format)


def responses_stream(call: Call, req: ResponsesRequest) -> AsyncIterator[dict[str, Any]]:
    """POST /v1/responses with ``stream: true``: named Responses events."""
    native = running.chat(call, responses_api.chat_request(req))
    return ResponsesStream(req).events(native)


async def create_response(call: Call, req: ResponsesRequest) -> dict[str, Any]:
    """POST /v1/responses: one ``response`` object, built by the same converter the stream uses."""
    native = await running.collect_chat(running.chat(call, responses_api.chat_request(req)))
    stream = ResponsesStream(req)
    stream.translate(native)
    return stream.response or {}
