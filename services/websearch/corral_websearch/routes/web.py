"""POST /api/web_search, /api/web_fetch (ollama.com's shapes) and /api/index: parse, call, return."""

from __future__ import annotations

from fastapi import APIRouter, Request

from corral_common.http import GoJSONResponse, service_ndjson_body, stream_or_error
from corral_common.schemas import parse_body

from corral_websearch.deps import Service
from corral_websearch.schemas import IndexRequest, WebFetchRequest, WebSearchRequest

router = APIRouter()


@router.post("/api/web_search")
async def web_search(request: Request, service: Service) -> GoJSONResponse:
    req = parse_body(WebSearchRequest, await request.body())
    return GoJSONResponse(await service.search(req))


@router.post("/api/web_fetch")
async def web_fetch(request: Request, service: Service) -> GoJSONResponse:
    req = parse_body(WebFetchRequest, await request.body())
    return GoJSONResponse(await service.fetch(req))


@router.post("/api/index")
async def index(request: Request, service: Service):
    req = parse_body(IndexRequest, await request.body())
    events = service.index_job(req)
    if req.stream:
        return await stream_or_error(events, body=service_ndjson_body)
    last: dict = {}
    async for event in events:
        last = event
    return GoJSONResponse(last)
