"""``/api/usage`` (the caller's usage; an admin's: anyone's) and ``/api/quotas/{user}`` (admins set limits)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from corral_common.http import GoJSONResponse
from corral_common.schemas import parse_body

from corral_auth.deps import AdminCaller, Caller, Runtime
from corral_auth.limits import Quota, checked
from corral_auth.schemas import QuotaRequest

router = APIRouter()


@router.get("/api/usage")
async def usage(caller: Caller, runtime: Runtime, user: str | None = None, hours: int = 24) -> GoJSONResponse:
    return GoJSONResponse(await run_in_threadpool(runtime.usage.report, caller, user, hours))


@router.put("/api/quotas/{user}")
async def set_quota(user: str, request: Request, caller: AdminCaller, runtime: Runtime) -> GoJSONResponse:
    req = parse_body(QuotaRequest, await request.body())
    quota = Quota(checked(req.tokens_per_hour, "tokens_per_hour"), checked(req.requests_per_minute,
                                                                            "requests_per_minute"))
    return GoJSONResponse(await run_in_threadpool(runtime.accounts.set_quota, caller, user, quota))
