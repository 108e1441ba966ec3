"""OpenAI-compatible /v1 routes: parse, call one compat operation, return JSON or SSE."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Request

from corral_common.http import until_disconnected
from corral_common.schemas import parse_body

from corral_api.deps import ModelCall
from corral_api.openai import responses_api, service, sse
from corral_api.openai.errors import OpenAIJSONResponse, OpenAIRoute
from corral_api.openai.schemas import (ChatCompletionRequest, EmbeddingRequest, ResponsesRequest,
                                      TextCompletionRequest)

router = APIRouter(prefix="/v1", route_class=OpenAIRoute)


async def _answer(request: Request, work: Awaitable[dict[str, Any]]) -> OpenAIJSONResponse:
    """The one JSON answer of a non-streamed request; the work is cancelled if the client leaves first."""
    return OpenAIJSONResponse(await until_disconnected(request, work))


@router.post("/chat/completions")
async def chat_completions(request: Request, call: ModelCall):
    req = parse_body(ChatCompletionRequest, await request.body())
    if req.stream:
        return await sse.stream_or_error(service.chat_stream(call, req), request)
    return await _answer(request, service.chat(call, req))


@router.post("/completions")
async def completions(request: Request, call: ModelCall):
    req = parse_body(TextCompletionRequest, await request.body())
    if req.stream:
        return await sse.stream_or_error(service.completion_stream(call, req), request)
    return await _answer(request, service.completion(call, req))


@router.get("/models")
async def list_models(call: ModelCall) -> OpenAIJSONResponse:
    return OpenAIJSONResponse(await service.list_models(call))


@router.get("/models/{model:path}")
async def retrieve_model(model: str, call: ModelCall) -> OpenAIJSONResponse:
    return OpenAIJSONResponse(await service.retrieve_model(call, model))


@router.post("/embeddings")
async def embeddings(request: Request, call: ModelCall) -> OpenAIJSONResponse:
    return await _answer(request, service.embeddings(call, parse_body(EmbeddingRequest, await request.body())))


@router.post("/responses")
async def responses(request: Request, call: ModelCall):
    raw = responses_api.decoded_body(await request.body(), request.headers.get("content-encoding"))
    req = parse_body(ResponsesRequest, raw)
    if req.stream:
        return await sse.named_stream_or_error(service.responses_stream(call, req), request)
    return await _answer(request, service.create_response(call, req))
