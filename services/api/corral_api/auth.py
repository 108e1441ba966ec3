"""API-key enforcement at the gateway (security.md §5, OLL-18): a pure-ASGI middleware before every handler.

Loopback clients need no key unless CORRAL_AUTH_REQUIRED=1; other clients always do unless the
operator sets CORRAL_AUTH_REQUIRED=0. The client address is the TCP peer, or, when the peer is one
of CORRAL_TRUSTED_PROXIES, the right-most untrusted X-Forwarded-For hop. A forwarded request from a
proxy that is not trusted is treated as remote (a local reverse proxy must not make the internet local).
Credentials are checked by the auth service on every request (revocation applies at once);
the routes it owns (keys, signin, token) authenticate there themselves.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral_common.env import current_env, env_str
from corral_common.net import is_loopback_address

from corral_api.anthropic.errors import error_body
from corral_api.clients import CLIENT_STATE, UNAVAILABLE, AuthClient, Denial, json_answer
from corral_api.metrics import count_refusal

INFERENCE, MODELS_READ, MODELS_WRITE, WEB, ADMIN = "inference", "models:read", "models:write", "web", "admin"
EXEMPT = "exempt"  # no credential needed: Ollama's liveness endpoints and the probes of orchestrators
SELF = "self"  # the auth service authenticates these itself
REGISTRY = "registry"  # /v2 carries registry tokens (JWTs), which the registry verifies

_EXACT = {
    "/": EXEMPT, "/api/version": EXEMPT, "/healthz": EXEMPT, "/health": EXEMPT, "/readyz": EXEMPT,
    "/api/generate": INFERENCE, "/api/chat": INFERENCE, "/api/embed": INFERENCE, "/api/embeddings": INFERENCE,
    "/api/tags": MODELS_READ, "/api/show": MODELS_READ, "/api/ps": MODELS_READ, "/v1/models": MODELS_READ,
    "/api/pull": MODELS_WRITE, "/api/push": MODELS_WRITE, "/api/create": MODELS_WRITE,
    "/api/copy": MODELS_WRITE, "/api/delete": MODELS_WRITE,
    "/api/web_search": WEB, "/api/web_fetch": WEB,
    "/api/experimental/web_search": WEB, "/api/experimental/web_fetch": WEB,
    "/api/me": SELF, "/api/signout": SELF, "/api/signin": SELF, "/api/signin/approve": SELF,
    "/api/keys": SELF, "/api/grants": SELF, "/api/usage": SELF, "/metrics": ADMIN, "/token": SELF, "/.well-known/jwks.json": SELF,
}
_PREFIXES = (("/v1/models/", MODELS_READ), ("/v1/", INFERENCE), ("/api/blobs/", MODELS_WRITE), ("/api/keys/", SELF),
             ("/api/grants/", SELF), ("/api/quotas/", SELF), ("/v2/", REGISTRY))
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){1,400})"')
_BODY_PEEK = 16384
_CREDENTIAL_HEADERS = (b"authorization", b"x-api-key")


def route_rule(path: str) -> str:
    """The scope a path needs, or EXEMPT / SELF / REGISTRY; unknown paths need the admin scope."""
    rule = _EXACT.get(path.rstrip("/") or "/")
    if rule is not None:
        return rule
    return next((r for prefix, r in _PREFIXES if path.startswith(prefix)), ADMIN)


def repeated_credential(scope: Scope) -> Denial | None:
    """A 400 when a credential header comes more than once (which one counts would be a guess)."""
    names = [name.lower() for name, _ in scope.get("headers", [])]
    repeated = next((n for n in _CREDENTIAL_HEADERS if names.count(n) > 1), None)
    if repeated is None:
        return None
    return Denial(400, f"more than one {repeated.decode()} header: send exactly one credential", {})


def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            nets.append(ipaddress.ip_network(item, strict=False))
    return tuple(nets)


def _in(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


@dataclass(frozen=True)
class GatewayAuthSettings:
    """Where the auth service is, when keys are required, and which proxies may name the client."""

    auth_url: str = "http://127.0.0.1:11437"
    mode: str = "auto"  # auto: remote clients need keys; always: everyone; off: nobody
    trusted_proxies: tuple = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "GatewayAuthSettings":
        """CORRAL_AUTH_URL, CORRAL_AUTH_REQUIRED (unset = auto, 1 = always, 0 = off), CORRAL_TRUSTED_PROXIES."""
        env = current_env(environ)
        required = env_str(env, "CORRAL_AUTH_REQUIRED").lower()
        mode = "auto" if not required else ("off" if required in {"0", "f", "false", "no", "off"} else "always")
        return cls(auth_url=env_str(env, "CORRAL_AUTH_URL", "http://127.0.0.1:11437"), mode=mode,
                   trusted_proxies=_networks(env_str(env, "CORRAL_TRUSTED_PROXIES")))

    def required_for(self, loopback_client: bool) -> bool:
        """Whether a client must present a credential."""
        return self.mode == "always" or (self.mode == "auto" and not loopback_client)


def client_address(scope: Scope, trusted: tuple) -> tuple[str, bool]:
    """The client's address and whether it counts as loopback."""
    peer = scope["client"][0] if scope.get("client") else ""
    forwarded = ""
    for name, value in scope.get("headers", []):
        if name.lower() == b"x-forwarded-for":
            forwarded = f"{forwarded},{value.decode('latin-1')}" if forwarded else value.decode("latin-1")
        elif name.lower() == b"forwarded" and not forwarded:
            forwarded = "unknown"
    if not forwarded:
        return peer, is_loopback_address(peer, non_ip=True)  # no IP: a Unix socket, an in-process client
    if not _in(peer, trusted):
        return peer, False
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    client = next((hop for hop in reversed(hops) if not _in(hop, trusted)), hops[0] if hops else peer)
    return client, is_loopback_address(client)


_OPENAI_TYPES = {400: ("invalid_request_error", None), 401: ("authentication_error", "invalid_api_key"),
                 403: ("permission_error", "insufficient_scope"), 429: ("rate_limit_error", "rate_limit_exceeded"),
                 503: ("api_error", "service_unavailable")}


def denial_response(path: str, denial: Denial) -> Response:
    """Ollama's ``{"error": "..."}`` on /api, Anthropic's error object on /v1/messages, OpenAI's on /v1."""
    if path.startswith("/v1/messages"):
        body: Any = error_body(denial.status, denial.message)
    elif path.startswith("/v1/"):
        kind, code = _OPENAI_TYPES.get(denial.status, ("api_error", None))
        body = {"error": {"message": denial.message, "type": kind, "param": None, "code": code}}
    else:
        body = {"error": denial.message}
    return json_answer(denial.status, body, denial.headers)


class AuthGate:
    """Requires a valid credential with the route's scope from clients that need one; audits their requests."""

    def __init__(self, app: ASGIApp, settings: GatewayAuthSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client, loopback = client_address(scope, self.settings.trusted_proxies)
        scope.setdefault("state", {})[CLIENT_STATE] = client
        repeated = repeated_credential(scope)
        if repeated is not None:
            count_refusal(scope, repeated)
            await denial_response(scope["path"], repeated)(scope, receive, send)
            return
        rule = route_rule(scope["path"])
        if rule in (EXEMPT, SELF, REGISTRY) or not self.settings.required_for(loopback):
            await self.app(scope, receive, send)
            return
        verdict = await self._verify(scope, client, rule)
        if isinstance(verdict, Denial):
            count_refusal(scope, verdict)
            await denial_response(scope["path"], verdict)(scope, receive, send)
            return
        scope["state"]["principal"] = verdict
        await self._audited(scope, receive, send, client, verdict)

    async def _verify(self, scope: Scope, client: str, rule: str) -> dict[str, Any] | Denial:
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = scope.get("query_string", b"").decode("latin-1")
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        body = {"authorization": headers.get("authorization"), "api_key": headers.get("x-api-key"),
                "method": scope["method"], "uri": raw_path + (f"?{query}" if query else ""),
                "client": client, "scope": rule}
        auth: AuthClient | None = getattr(scope["app"].state, "auth", None) if "app" in scope else None
        if auth is None:
            return UNAVAILABLE
        return await auth.verify(body, scope["state"].get("request_id", ""))

    async def _audited(self, scope: Scope, receive: Receive, send: Send, client: str,
                       principal: dict[str, Any]) -> None:
        """Run the request, then send one audit event with its status and model."""
        peek, status = bytearray(), {"code": 500}

        async def receive_peeking() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(peek) < _BODY_PEEK:
                peek.extend(message.get("body", b"")[: _BODY_PEEK - len(peek)])
            return message

        async def send_watching(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive_peeking, send_watching)
        finally:
            match = _MODEL_FIELD.search(bytes(peek))
            scope["app"].state.auth.audit({
                "user": principal.get("user"), "key_id": principal.get("key_id"), "client": client,
                "method": scope["method"], "route": scope["path"], "status": status["code"],
                "model": match.group(1).decode("utf-8", "replace") if match else None})

