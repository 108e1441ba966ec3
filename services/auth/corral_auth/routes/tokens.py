"""The registry's token realm and the keys its tokens are verified with."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from corral_common.http import GoJSONResponse

from corral_auth.deps import URL_HEADER, Runtime, client_of, credential_of

router = APIRouter()


@router.get("/token")
async def token(request: Request, runtime: Runtime) -> GoJSONResponse:
    url = request.headers.get(URL_HEADER) or str(request.url)
    answer = await run_in_threadpool(runtime.registry.answer, credential_of(request), client_of(request), url,
                                     request.query_params.get("service", ""), request.query_params.getlist("scope"))
    return GoJSONResponse(answer)


@router.get("/jwks.json")
async def jwks(runtime: Runtime) -> GoJSONResponse:
    return GoJSONResponse(runtime.tokens.jwks())
