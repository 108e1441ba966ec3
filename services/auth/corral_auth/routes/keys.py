"""``/api/keys``: create, list and revoke API keys (the admin scope; admins manage everyone's)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from corral_common.http import GoJSONResponse
from corral_common.schemas import parse_body

from corral_auth.deps import AdminCaller, Runtime
from corral_auth.limits import Quota, checked
from corral_auth.schemas import CreateKeyRequest

router = APIRouter(prefix="/api/keys")


@router.post("")
async def create_key(request: Request, caller: AdminCaller, runtime: Runtime) -> GoJSONResponse:
    req = parse_body(CreateKeyRequest, await request.body())
    quota = Quota(checked(req.tokens_per_hour, "tokens_per_hour"), checked(req.requests_per_minute,
                                                                            "requests_per_minute"))
    issued = await run_in_threadpool(runtime.accounts.create_key, caller, req.name, req.scopes, req.expires_at,
                                     req.user, quota)
    return GoJSONResponse(issued.wire())


@router.get("")
async def list_keys(caller: AdminCaller, runtime: Runtime, user: str | None = None) -> GoJSONResponse:
    return GoJSONResponse({"keys": await run_in_threadpool(runtime.accounts.list_keys, caller, user)})


@router.delete("/{key_id}")
async def revoke_key(key_id: str, caller: AdminCaller, runtime: Runtime) -> Response:
    await run_in_threadpool(runtime.accounts.revoke_key, caller, key_id)
    return Response(status_code=200)
