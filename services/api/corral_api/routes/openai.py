"""OpenAI-compatible /v1 routes: parse, call one compat operation, return JSON or SSE."""

from __future__ import annotations

from fastapi import APIRouter, Request

from corral_common.schemas import parse_body

from corral_api.deps import Inference, Registry, RequestId
from corral_api.openai import responses_api, service, sse
from corral_api.openai.errors import OpenAIJSONResponse, OpenAIRoute
from corral_api.openai.schemas import (ChatCompletionRequest, EmbeddingRequest, ResponsesRequest,
                                      TextCompletionRequest)
from corral_api.running import Call

router = APIRouter(prefix="/v1", route_class=OpenAIRoute)


@router.post("/chat/completions")
async def chat_completions(request: Request, registry: Registry, inference: Inference, rid: RequestId):
    req = parse_body(ChatCompletionRequest, await request.body())
    call = Call(registry, inference, rid)
    if req.stream:
        return await sse.stream_or_error(service.chat_stream(call, req), request)
    return OpenAIJSONResponse(await service.chat(call, req))


@router.post("/completions")
async def completions(request: Request, registry: Registry, inference: Inference, rid: RequestId):
    req = parse_body(TextCompletionRequest, await request.body())
    call = Call(registry, inference, rid)
    if req.stream:
        return await sse.stream_or_error(service.completion_stream(call, req), request)
    return OpenAIJSONResponse(await service.completion(call, req))


@router.get("/models")
async def list_models(registry: Registry, inference: Inference, rid: RequestId) -> OpenAIJSONResponse:
    return OpenAIJSONResponse(await service.list_models(Call(registry, inference, rid)))


@router.get("/models/{model:path}")
async def retrieve_model(model: str, registry: Registry, inference: Inference, rid: RequestId) -> OpenAIJSONResponse:
    return OpenAIJSONResponse(await service.retrieve_model(Call(registry, inference, rid), model))


@router.post("/embeddings")
async def embeddings(request: Request, registry: Registry, inference: Inference, rid: RequestId) -> OpenAIJSONResponse:
    req = parse_body(EmbeddingRequest, await request.body())
    return OpenAIJSONResponse(await service.embeddings(Call(registry, inference, rid), req))


@router.post("/responses")
async def responses(request: Request, registry: Registry, inference: Inference, rid: RequestId):
    raw = responses_api.decoded_body(await request.body(), request.headers.get("content-encoding"))
    req = parse_body(ResponsesRequest, raw)
    call = Call(registry, inference, rid)
    if req.stream:
        return await sse.named_stream_or_error(service.responses_stream(call, req), request)
    return OpenAIJSONResponse(await service.create_response(call, req))
