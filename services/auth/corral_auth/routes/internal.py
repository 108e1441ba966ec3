"""Endpoints only the gateway calls: verify a credential, append an audit event."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from corral_common.http import GoJSONResponse
from corral_common.schemas import parse_body

from corral_auth.deps import Runtime
from corral_auth.gate import Attempt
from corral_auth.identity import Credential
from corral_auth.schemas import AuditEvent, UsageEvent, VerifyRequest

router = APIRouter(prefix="/internal")


@router.post("/verify")
async def verify(request: Request, runtime: Runtime) -> GoJSONResponse:
    req = parse_body(VerifyRequest, await request.body())
    credential = Credential.from_headers(req.authorization, req.api_key, req.method, req.uri)
    attempt = Attempt(credential, req.client, req.scope, req.uri.split("?", 1)[0])
    principal = await run_in_threadpool(runtime.gate.authenticate, attempt)
    return GoJSONResponse(principal.wire())


@router.post("/audit")
async def audit(request: Request, runtime: Runtime) -> Response:
    await run_in_threadpool(runtime.audit.record, parse_body(AuditEvent, await request.body()))
    return Response(status_code=204)


@router.post("/usage")
async def usage(request: Request, runtime: Runtime) -> Response:
    await run_in_threadpool(runtime.usage.record, parse_body(UsageEvent, await request.body()))
    return Response(status_code=204)


@router.get("/audit")
async def recent(runtime: Runtime, limit: int = 100) -> GoJSONResponse:
    return GoJSONResponse({"events": await run_in_threadpool(runtime.audit.recent, limit)})
