"""API keys, signin and registry tokens: relayed to the auth service, which authenticates them itself."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from corral_common.errors import NotFound

from corral_api.auth import AuthService

router = APIRouter()


@router.post("/api/keys")
@router.get("/api/keys")
async def keys(request: Request, auth: AuthService) -> Response:
    return await auth.forward(request, "/api/keys")


@router.delete("/api/keys/{key_id}")
async def revoke_key(key_id: str, request: Request, auth: AuthService) -> Response:
    if not key_id.isascii() or not key_id.isalnum():
        raise NotFound(f"key {key_id!r} not found")
    return await auth.forward(request, f"/api/keys/{key_id}")


@router.post("/api/grants")
@router.get("/api/grants")
async def grants(request: Request, auth: AuthService) -> Response:
    return await auth.forward(request, "/api/grants")


@router.delete("/api/grants/{grant_id}")
async def revoke_grant(grant_id: str, request: Request, auth: AuthService) -> Response:
    if not grant_id.isascii() or not grant_id.isdigit():
        raise NotFound(f"grant {grant_id!r} not found")
    return await auth.forward(request, f"/api/grants/{grant_id}")


@router.post("/api/me")
@router.post("/api/signout")
@router.post("/api/signin")
@router.post("/api/signin/approve")
async def account(request: Request, auth: AuthService) -> Response:
    return await auth.forward(request, request.url.path)


@router.get("/token")
async def registry_token(request: Request, auth: AuthService) -> Response:
    return await auth.forward(request, "/token")


@router.get("/.well-known/jwks.json")
async def jwks(request: Request, auth: AuthService) -> Response:
    return await auth.forward(request, "/jwks.json")
