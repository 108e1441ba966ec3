"""The OpenAI-compatible operations: translate the request, run the native service, translate the answer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from corral_common.schemas import GenerateRequest, ShowRequest

from corral_api import models, running
from corral_api.openai import choices, responses, responses_api, translate
from corral_api.openai.responses_stream import ResponsesStream
from corral_api.openai.schemas import (ChatCompletionRequest, EmbeddingRequest, ResponsesRequest,
                                      TextCompletionRequest)
from corral_api.running import Call


def chat_stream(call: Call, req: ChatCompletionRequest) -> AsyncIterator[dict[str, Any]]:
    """POST /v1/chat/completions with ``stream: true``: chunk objects, each choice's carrying its index."""
    natives = [running.chat(call, native, cached=True) for native in translate.chat_requests(req)]
    ident, created = responses.new_id("chatcmpl"), int(time.time())
    converters = [responses.ChatStream(ident, created, req.include_usage(), i) for i in range(len(natives))]
    return choices.combined_stream(natives, converters, group=len(natives))


async def chat(call: Call, req: ChatCompletionRequest) -> dict[str, Any]:
    """POST /v1/chat/completions: one ``chat.completion`` with ``n`` choices (the prompt counted once)."""
    natives = await choices.gathered([running.collect_chat(running.chat(call, native, cached=True))
                                      for native in translate.chat_requests(req)])
    ident, created = responses.new_id("chatcmpl"), int(time.time())
    answers = [responses.chat_completion(ident, created, native) for native in natives]
    return choices.combined(answers, group=len(answers))


def _echo(req: TextCompletionRequest, native: GenerateRequest) -> str:
    return native.prompt if req.echo else ""


def completion_stream(call: Call, req: TextCompletionRequest) -> AsyncIterator[dict[str, Any]]:
    """POST /v1/completions with ``stream: true``: chunk objects, each choice's carrying its index."""
    requests = translate.generate_requests(req)
    natives = [running.generate(call, native, cached=True) for native in requests]
    ident, created = responses.new_id("cmpl"), int(time.time())
    converters = [responses.CompletionStream(ident, created, req.include_usage(), _echo(req, native), i)
                  for i, native in enumerate(requests)]
    return choices.combined_stream(natives, converters, group=translate.choice_count(req.n))


async def completion(call: Call, req: TextCompletionRequest) -> dict[str, Any]:
    """POST /v1/completions: one ``text_completion``, ``n`` choices per prompt, usage summed over the prompts."""
    requests = translate.generate_requests(req)
    natives = await choices.gathered([running.collect_generate(running.generate(call, native, cached=True))
                                      for native in requests])
    ident, created = responses.new_id("cmpl"), int(time.time())
    answers = [responses.completion(ident, created, result, _echo(req, native))
               for result, native in zip(natives, requests)]
    return choices.combined(answers, group=translate.choice_count(req.n))


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
    native = running.chat(call, responses_api.chat_request(req), cached=True)
    return ResponsesStream(req).events(native)


async def create_response(call: Call, req: ResponsesRequest) -> dict[str, Any]:
    """POST /v1/responses: one ``response`` object, built by the same converter the stream uses."""
    native = await running.collect_chat(running.chat(call, responses_api.chat_request(req), cached=True))
    stream = ResponsesStream(req)
    stream.translate(native)
    return stream.response or {}
