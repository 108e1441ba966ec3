"""``/api/grants``: who may pull (or push) a repository they do not own; its owner or an admin decides."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from corral_common.http import GoJSONResponse
from corral_common.schemas import parse_body

from corral_auth.deps import Runtime, WriterCaller
from corral_auth.schemas import CreateGrantRequest

router = APIRouter(prefix="/api/grants")


@router.post("")
async def add_grant(request: Request, caller: WriterCaller, runtime: Runtime) -> GoJSONResponse:
    req = parse_body(CreateGrantRequest, await request.body())
    grant = await run_in_threadpool(runtime.grants.add, caller, req.repository, req.user, req.actions)
    return GoJSONResponse(grant)


@router.get("")
async def list_grants(caller: WriterCaller, runtime: Runtime, repository: str | None = None) -> GoJSONResponse:
    return GoJSONResponse({"grants": await run_in_threadpool(runtime.grants.list, caller, repository)})


@router.delete("/{grant_id}")
async def revoke_grant(grant_id: int, caller: WriterCaller, runtime: Runtime) -> Response:
    await run_in_threadpool(runtime.grants.revoke, caller, grant_id)
    return Response(status_code=200)
