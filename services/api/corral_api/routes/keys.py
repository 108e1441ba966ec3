"""API keys, signin and registry tokens: relayed to the auth service, which authenticates them itself."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from corral_common.errors import NotFound

from corral_api.deps import Auth

router = APIRouter()


@router.post("/api/keys")
@router.get("/api/keys")
async def keys(request: Request, auth: Auth) -> Response:
    return await auth.keys(request)


@router.delete("/api/keys/{key_id}")
async def revoke_key(key_id: str, request: Request, auth: Auth) -> Response:
    if not key_id.isascii() or not key_id.isalnum():
        raise NotFound(f"key {key_id!r} not found")
    return await auth.revoke_key(request, key_id)


@router.post("/api/grants")
@router.get("/api/grants")
async def grants(request: Request, auth: Auth) -> Response:
    return await auth.grants(request)


@router.delete("/api/grants/{grant_id}")
async def revoke_grant(grant_id: str, request: Request, auth: Auth) -> Response:
    if not grant_id.isascii() or not grant_id.isdigit():
        raise NotFound(f"grant {grant_id!r} not found")
    return await auth.revoke_grant(request, grant_id)


@router.post("/api/me")
@router.post("/api/signout")
@router.post("/api/signin")
@router.post("/api/signin/approve")
async def account(request: Request, auth: Auth) -> Response:
    return await auth.account(request)


@router.get("/api/usage")
async def usage(request: Request, auth: Auth) -> Response:
    return await auth.account(request)


@router.put("/api/quotas/{user}")
async def set_quota(user: str, request: Request, auth: Auth) -> Response:
    if not user.isascii() or not user.replace("-", "").replace("_", "").isalnum():
        raise NotFound(f"user {user!r} not found")
    return await auth.account(request)


@router.get("/token")
async def registry_token(request: Request, auth: Auth) -> Response:
    return await auth.token(request)


@router.get("/.well-known/jwks.json")
async def jwks(request: Request, auth: Auth) -> Response:
    return await auth.jwks(request)
