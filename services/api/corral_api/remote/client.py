"""The typed client of remote hosts: the one place their requests are built, checked and authorized.

Every request passes the host policy first; only the configured cloud gets credentials; redirects are
never followed (a redirect to another host must not carry them, and there is no other host to go to).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from corral_common.errors import AppError, BadGateway, Unauthorized, from_status
from corral_common.jsonio import go_dumps
from corral_common.logs import REQUEST_ID_HEADER
from corral_common.tls import tls_context
from corral_common.version import OLLAMA_API_VERSION

from corral_api.remote.identity import Identity
from corral_api.remote.policy import RemotePolicy
from corral_api.remote.settings import RemoteSettings

_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=60.0, pool=None)  # a long generation may pause long
_ERROR_BODY_LIMIT = 1 << 20


@dataclass(frozen=True)
class Target:
    """Where a request for a model goes: the host's base URL and the model's name there."""

    host: str
    model: str


class RemoteClient:
    """Requests to remote hosts on behalf of this corral's user."""

    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        self.policy = RemotePolicy(settings)
        self.identity = Identity(settings.api_key, settings.identity)
        self.http = httpx.AsyncClient(timeout=_TIMEOUT, trust_env=False, follow_redirects=False, verify=tls_context())

    def _headers(self, request_id: str) -> dict[str, str]:
        return {"content-type": "application/json", "user-agent": f"corral/{OLLAMA_API_VERSION}",
                REQUEST_ID_HEADER: request_id}

    async def _request(self, host: str, method: str, path: str, query: str, content: bytes,
                       request_id: str) -> httpx.Request:
        """A checked request to ``path`` on ``host`` (signed or with the API key when ``host`` is the cloud)."""
        await self.policy.check(host)
        base = urlsplit(host)
        uri = base.path.rstrip("/") + path + (f"?{query}" if query else "")
        headers = self._headers(request_id)
        if self.policy.is_cloud(host):
            uri, authorization = self.identity.authorize(method, uri)
            headers.update(authorization)
        return self.http.build_request(method, f"{base.scheme}://{base.netloc}{uri}", content=content,
                                       headers=headers)

    async def open(self, target: Target, path: str, query: str, content: bytes, request_id: str) -> httpx.Response:
        """POST ``content`` to ``path`` on the target's host; the response with its body still to read."""
        request = await self._request(target.host, "POST", path, query, content, request_id)
        try:
            return await self.http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise BadGateway(f"remote model host {target.host} unavailable: {exc or type(exc).__name__}") from None

    async def show(self, target: Target, request_id: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The host's ``/api/show`` answer for the target's model (its refusal as a typed error); ``extra`` are
        more fields of the request (``verbose``)."""
        content = go_dumps({**(extra or {}), "model": target.model}).encode()
        response = await self.open(target, "/api/show", "", content, request_id)
        try:
            body = await response.aread()
        except httpx.HTTPError as exc:
            raise BadGateway(f"remote model host {target.host} stopped answering: {exc}") from None
        finally:
            await response.aclose()
        if response.status_code >= 300:
            raise self.refusal(target, response, body)
        try:
            return json.loads(body)
        except ValueError:
            raise BadGateway(f"remote model host {target.host} sent an invalid /api/show answer") from None

    def refusal(self, target: Target, response: httpx.Response, body: bytes) -> AppError:
        """The typed error for a remote answer that is no success: 401 says what to do, 3xx is not followed."""
        if response.status_code == 401:
            return Unauthorized(self.unauthorized_message(target))
        if 300 <= response.status_code < 400:
            return BadGateway(f"remote model host {target.host} redirected to {response.headers.get('location')!r}, "
                              "which corral does not follow")
        try:
            message = json.loads(body[:_ERROR_BODY_LIMIT]).get("error")
            message = message.get("message") if isinstance(message, dict) else message
        except (ValueError, AttributeError):
            message = None
        return from_status(response.status_code, str(message or body[:500].decode(errors="replace")
                                                     or response.reason_phrase))

    def unauthorized_message(self, target: Target) -> str:
        """What to do when the cloud refuses this corral's identity."""
        if not self.policy.is_cloud(target.host):
            return (f"unauthorized: remote model host {target.host} wants credentials, and corral sends them only "
                    "to CORRAL_CLOUD_URL: make it the cloud, or run the model there")
        sent = self.identity.describe()
        if sent == "OLLAMA_API_KEY":
            return (f"unauthorized: {target.host} refused the key in OLLAMA_API_KEY (revoked, expired or not from "
                    "there): start corral serve with OLLAMA_API_KEY set to a valid key of that server, or without "
                    f"it after 'OLLAMA_HOST={target.host} corral signin'")
        return (f"unauthorized: {target.host} does not know this device (sent: {sent}): run "
                f"'OLLAMA_HOST={target.host} corral signin', or start corral serve with OLLAMA_API_KEY set to a key "
                "of that server")

    async def close(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()
