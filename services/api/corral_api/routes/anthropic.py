"""Anthropic Messages API routes: parse, call one operation, return JSON or named SSE events."""

from __future__ import annotations

from fastapi import APIRouter, Request

from corral_common.schemas import parse_body

from corral_api.anthropic import errors, service
from corral_api.anthropic.schemas import CountTokensRequest, MessagesRequest
from corral_api.deps import ModelCall
from corral_api.openai import sse
from corral_api.openai.errors import OpenAIJSONResponse

router = APIRouter(prefix="/v1", route_class=errors.AnthropicRoute)


@router.post("/messages")
async def messages(request: Request, call: ModelCall):
    req = parse_body(MessagesRequest, await request.body())
    if req.stream:
        return await sse.named_stream_or_error(service.messages_stream(call, req), request, errors.error_response)
    return OpenAIJSONResponse(await service.create_message(call, req))


@router.post("/messages/count_tokens")
async def count_tokens(request: Request, call: ModelCall) -> OpenAIJSONResponse:
    req = parse_body(CountTokensRequest, await request.body())
    return OpenAIJSONResponse(await service.count_tokens(call, req))
