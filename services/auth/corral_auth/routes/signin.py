"""Signin with an ed25519 device key: start (signed), approve (admin scope), who am I, sign out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from corral_common.errors import BadRequest
from corral_common.http import GoJSONResponse
from corral_common.schemas import parse_body

from corral_auth.deps import AdminCaller, Caller, Runtime, client_of, credential_of
from corral_auth.schemas import SigninApproveRequest, SigninStartRequest, SignoutRequest

router = APIRouter(prefix="/api")


@router.post("/me")
async def me(caller: Caller) -> GoJSONResponse:
    return GoJSONResponse({"id": str(caller.user_id), "name": caller.user, "email": "", "plan": "",
                           "admin": caller.admin, "key_id": caller.key_id, "scopes": list(caller.scopes)})


@router.post("/signin")
async def start(request: Request, runtime: Runtime) -> GoJSONResponse:
    credential = credential_of(request)
    if not credential.signature:
        raise BadRequest("sign this request with the device key (corral signin does)")
    req = parse_body(SigninStartRequest, await request.body() or b"{}")
    signed = await run_in_threadpool(runtime.gate.signed, credential, client_of(request))
    return GoJSONResponse(await run_in_threadpool(runtime.devices.start, signed.public_key, req.name, req.poll))


@router.post("/signin/approve")
async def approve(request: Request, caller: AdminCaller, runtime: Runtime) -> GoJSONResponse:
    req = parse_body(SigninApproveRequest, await request.body())
    return GoJSONResponse(await run_in_threadpool(runtime.devices.approve, caller, req.code, req.user, req.scopes))


@router.post("/signout")
async def signout(request: Request, caller: Caller, runtime: Runtime) -> GoJSONResponse:
    req = parse_body(SignoutRequest, await request.body() or b"{}")
    return GoJSONResponse(await run_in_threadpool(runtime.devices.signout, caller, req.public_key))
