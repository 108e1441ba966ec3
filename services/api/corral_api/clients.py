"""HTTP clients for the registry (model store) and inference services, forwarding the request id."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from corral_common.errors import AppError, BadGateway, from_status
from corral_common.jsonio import go_dumps
from corral_common.logs import REQUEST_ID_HEADER

_TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=None, pool=None)


def _error_of(response: httpx.Response, body: bytes) -> AppError:
    """Rebuild the typed error another service answered with."""
    try:
        message = json.loads(body).get("error") or body.decode(errors="replace")
    except (ValueError, AttributeError):
        message = body.decode(errors="replace") or response.reason_phrase
    return from_status(response.status_code, message)


class ServiceClient:
    """JSON and NDJSON calls to one internal service."""

    def __init__(self, base_url: str, service: str) -> None:
        self.service = service
        self.http = httpx.AsyncClient(base_url=base_url, timeout=_TIMEOUT, trust_env=False)

    def _headers(self, request_id: str) -> dict[str, str]:
        return {REQUEST_ID_HEADER: request_id, "content-type": "application/json"}

    async def call(self, method: str, path: str, request_id: str, body: Any = None,
                   content: Any = None) -> httpx.Response:
        """One request; non-2xx answers become typed errors."""
        data = go_dumps(body).encode() if body is not None else content
        try:
            response = await self.http.request(method, path, content=data, headers=self._headers(request_id))
        except httpx.TransportError as exc:
            raise BadGateway(f"{self.service} service unavailable: {exc}") from None
        if response.status_code >= 400:
            raise _error_of(response, response.content)
        return response

    async def json(self, method: str, path: str, request_id: str, body: Any = None) -> Any:
        """A request whose answer is JSON."""
        response = await self.call(method, path, request_id, body)
        return response.json() if response.content else {}

    async def stream(self, path: str, request_id: str, body: Any) -> AsyncIterator[dict[str, Any]]:
        """POST and iterate NDJSON lines; an error line (or status) raises a typed error."""
        request = self.http.build_request("POST", path, content=go_dumps(body).encode(),
                                          headers=self._headers(request_id))
        try:
            response = await self.http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise BadGateway(f"{self.service} service unavailable: {exc}") from None
        try:
            if response.status_code >= 400:
                raise _error_of(response, await response.aread())
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if "error" in event:
                    raise from_status(event.get("status", 500), event["error"])
                yield event
        except httpx.TransportError as exc:
            raise BadGateway(f"{self.service} service stopped answering: {exc}") from None
        finally:
            await response.aclose()

    async def close(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()
