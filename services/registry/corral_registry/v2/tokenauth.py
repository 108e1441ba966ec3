"""Registry-side token auth: every /v2 request carries a JWT from the auth service (off unless configured).

Behaviour follows distribution's ``registry/auth/token``: no token, a bad token, or a token whose
``access`` claims lack the action all answer 401 with a Bearer challenge naming the realm, the
service and the scope needed (``error="invalid_token"`` / ``"insufficient_scope"``), so a client that
holds a pull-only token asks again for ``pull,push``. Tokens are RS256, verified against the auth
service's JWKS (cached; refetched when a token names an unknown ``kid``, at most every few seconds),
with ``exp``/``nbf``/``iat``, ``iss`` and ``aud`` = this registry's service name checked.

The challenge's realm is this registry's own ``/token`` (relayed to the auth service), because
Ollama's clients send credentials only to the registry's host (OLL-14).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import warnings
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request

from corral_common.logs import get_logger

from corral_registry.settings import TokenAuthSettings
from corral_registry.v2.errors import RegistryError
from corral_registry.v2.names import Repo

with warnings.catch_warnings():  # authlib 1.x marks authlib.jose deprecated in favour of joserfc; it still works
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, JsonWebToken
    from authlib.jose.errors import JoseError

log = get_logger("corral.registry.tokenauth")
ALGORITHMS = ["RS256"]
MAX_JWKS_BYTES = 64 << 10
MAX_TOKEN_ANSWER_BYTES = 64 << 10  # a token answer is a few KiB; anything bigger is not one
REFETCH_EVERY = 5.0  # seconds between JWKS refetches triggered by unknown kids
LEEWAY = 5  # seconds of clock skew tolerated on exp/nbf/iat
CATALOG = ("registry", "catalog", "*")


class TokenInvalid(Exception):
    """A token that cannot be trusted (signature, claims, format)."""


@dataclass(frozen=True)
class Needed:
    """What a request needs: a resource (type, name) and one action on it."""

    type: str
    name: str
    action: str

    def scope(self, actions: str) -> str:
        """The challenge scope, e.g. ``repository:alice/model:pull,push``."""
        return f"{self.type}:{self.name}:{actions}"


def _kid_of(token: str) -> str:
    """The ``kid`` of a compact JWS header, or ''."""
    try:
        segment = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise TokenInvalid("malformed token") from None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else ""


class AnswerTooLarge(ValueError):
    """The auth service sent more than we read from it."""


async def get_capped(http: httpx.AsyncClient, url: str, limit: int, **kwargs: Any) -> tuple[httpx.Response, bytes]:
    """GET url, reading at most limit bytes of the body (AnswerTooLarge past that), so a broken or
    hostile auth service cannot make the registry buffer an endless answer."""
    async with http.stream("GET", url, **kwargs) as response:
        body = bytearray()
        async for chunk in response.aiter_bytes():  # decoded: a compressed bomb stops at the cap too
            body += chunk
            if len(body) > limit:
                raise AnswerTooLarge(f"the answer from {url} is over {limit} bytes")
    return response, bytes(body)


class KeyCache:
    """The auth service's JWKS, fetched on first use and again when an unknown kid turns up."""

    def __init__(self, url: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url
        self.http = httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(5.0), transport=transport)
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> Any:
        """The public key for ``kid``; TokenInvalid if the auth service does not publish it."""
        if kid not in self._keys:
            async with self._lock:
                if kid not in self._keys and time.monotonic() - self._fetched_at >= REFETCH_EVERY:
                    await self._refresh()
        if kid not in self._keys:
            raise TokenInvalid("token signed with an unknown key")
        return self._keys[kid]

    async def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            response, body = await get_capped(self.http, self.url, MAX_JWKS_BYTES)
            if response.status_code != 200:
                raise ValueError(f"status {response.status_code}")
            key_set = JsonWebKey.import_key_set(json.loads(body))
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            log.warning("jwks fetch failed", url=self.url, error=str(exc))
            return
        self._keys = {k.kid: k for k in key_set.keys if k.kid}

    async def close(self) -> None:
        """Release the connection pool."""
        await self.http.aclose()


class TokenVerifier:
    """Checks a bearer JWT and its access claims for one request."""

    def __init__(self, settings: TokenAuthSettings, keys: KeyCache) -> None:
        self.settings, self.keys = settings, keys
        self.jwt = JsonWebToken(ALGORITHMS)

    async def claims(self, token: str) -> dict[str, Any]:
        """Verified claims, or TokenInvalid."""
        key = await self.keys.key(_kid_of(token))
        options = {"iss": {"essential": True, "value": self.settings.issuer},
                   "aud": {"essential": True, "value": self.settings.service},
                   "exp": {"essential": True}, "iat": {"essential": True}}
        try:
            claims = self.jwt.decode(token, key, claims_options=options)
            claims.validate(leeway=LEEWAY)
        except (JoseError, ValueError) as exc:
            raise TokenInvalid(type(exc).__name__) from None
        if int(claims["iat"]) > time.time() + LEEWAY:
            raise TokenInvalid("token issued in the future")
        return dict(claims)

    def challenge(self, request: Request, needed: Needed | None, error: str = "") -> dict[str, str]:
        """The WWW-Authenticate header for ``needed`` (reads ask for pull, writes for pull,push; None: no scope)."""
        realm = self.settings.challenge_realm or f"{request.url.scheme}://{request.headers.get('host', '')}/token"
        value = f'Bearer realm="{realm}",service="{self.settings.service}"'
        if needed is not None:
            actions = needed.action if needed.action in ("pull", "*") else f"pull,{needed.action}"
            value += f',scope="{needed.scope(actions)}"'
        return {"WWW-Authenticate": value + (f',error="{error}"' if error else "")}

    async def require(self, request: Request, needed: Needed | None) -> None:
        """Return if the request's token is valid and grants ``needed`` (None: any valid token); else a 401."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise RegistryError("UNAUTHORIZED", None, self.challenge(request, needed))
        try:
            claims = await self.claims(token.strip())
        except TokenInvalid as exc:
            log.info("registry token refused", reason=str(exc))
            raise RegistryError("UNAUTHORIZED", None, self.challenge(request, needed, "invalid_token")) from None
        if needed is not None and not grants(claims, needed):
            detail = [{"Type": needed.type, "Name": needed.name, "Action": needed.action}]
            raise RegistryError("UNAUTHORIZED", detail, self.challenge(request, needed, "insufficient_scope"))


def grants(claims: dict[str, Any], needed: Needed) -> bool:
    """Whether the token's ``access`` claims include the needed action (``*`` means all)."""
    for entry in claims.get("access") or []:
        if not isinstance(entry, dict) or entry.get("type") != needed.type or entry.get("name") != needed.name:
            continue
        actions = entry.get("actions") or []
        if needed.action in actions or "*" in actions:
            return True
    return False


def needed_for(method: str, repo: Repo) -> Needed:
    """The action a /v2 request on a repository needs: pull to read, delete to delete, push otherwise."""
    if method in ("GET", "HEAD"):
        action = "pull"
    elif method == "DELETE":
        action = "delete"
    else:
        action = "push"
    return Needed("repository", str(repo), action)


async def authorize(request: Request, needed: Needed | None) -> None:
    """The dependency body: a no-op unless the registry was started with token auth."""
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is not None:
        await verifier.require(request, needed)


async def may(request: Request, needed: Needed) -> bool:
    """Whether the request may do ``needed`` (for optional paths such as a cross-repository mount)."""
    try:
        await authorize(request, needed)
    except RegistryError:
        return False
    return True


class TokenRelay:
    """This registry's ``/token``: the caller's token request passed to the auth service's realm.

    The auth service checks an Ollama signature against the URL the client signed, which is this
    registry's URL, so that URL travels in ``X-Corral-Original-URL`` (the auth service is internal).
    """

    def __init__(self, realm: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.realm = realm
        self.http = httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(10.0, connect=3.0), transport=transport)

    async def forward(self, request: Request) -> tuple[httpx.Response, bytes]:
        """The auth service's answer to the caller's token request: the response and its (capped) body.

        RegistryError UNAVAILABLE (503) when the auth service cannot be reached or answers with more
        than a token answer can be."""
        headers = {"x-corral-original-url": str(request.url),
                   "x-corral-client": request.client.host if request.client else ""}
        for name in ("authorization", "x-api-key"):
            if name in request.headers:
                headers[name] = request.headers[name]
        try:
            return await get_capped(self.http, self.realm, MAX_TOKEN_ANSWER_BYTES,
                                    params=request.query_params.multi_items(), headers=headers)
        except (httpx.HTTPError, AnswerTooLarge) as exc:
            log.warning("token relay failed", realm=self.realm, error=str(exc) or type(exc).__name__)
            raise RegistryError("UNAVAILABLE", "the auth service did not answer the token request; "
                                               "try again, or ask the registry's operator to check it") from None

    async def close(self) -> None:
        """Release the connection pool."""
        await self.http.aclose()
