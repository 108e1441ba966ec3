"""Internal inference routes the gateway calls."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError

from corral_common.errors import BadRequest
from corral_common.http import GoJSONResponse, service_ndjson_body, stream_or_error
from corral_common.internal import CompletionRequest, EmbedInputs, LoadRequest, TokenizeRequest, UnloadRequest

from corral_inference import service
from corral_inference.deps import SchedulerDep, SettingsDep

router = APIRouter(prefix="/run")


async def _parse(request: Request, schema: type[BaseModel]):
    try:
        return schema.model_validate_json(await request.body())
    except ValidationError as exc:
        raise BadRequest(f"invalid internal request: {exc.errors()[0]['msg']}") from None


@router.post("/load")
async def load(request: Request, scheduler: SchedulerDep, settings: SettingsDep) -> GoJSONResponse:
    req = await _parse(request, LoadRequest)
    return GoJSONResponse((await service.load(scheduler, settings, req)).model_dump())


@router.post("/completion")
async def completion(request: Request, scheduler: SchedulerDep, settings: SettingsDep):
    req = await _parse(request, CompletionRequest)
    return await stream_or_error(service.complete(scheduler, settings, req), request, body=service_ndjson_body)


@router.post("/embed")
async def embed(request: Request, scheduler: SchedulerDep, settings: SettingsDep) -> GoJSONResponse:
    req = await _parse(request, EmbedInputs)
    return GoJSONResponse((await service.embed(scheduler, settings, req)).model_dump())


@router.post("/tokenize")
async def tokenize(request: Request, scheduler: SchedulerDep, settings: SettingsDep) -> GoJSONResponse:
    req = await _parse(request, TokenizeRequest)
    return GoJSONResponse((await service.tokenize(scheduler, settings, req)).model_dump())


@router.post("/unload")
async def unload(request: Request, scheduler: SchedulerDep) -> GoJSONResponse:
    req = await _parse(request, UnloadRequest)
    await scheduler.unload_model(req.model_digest, req.adapters)
    return GoJSONResponse({})


@router.get("/ps")
async def ps(scheduler: SchedulerDep) -> GoJSONResponse:
    return GoJSONResponse({"models": scheduler.ps()})


@router.get("/node")
async def node(scheduler: SchedulerDep) -> GoJSONResponse:
    return GoJSONResponse(scheduler.node_load().model_dump())
