"""Typed clients of the registry, inference and websearch services: the one place their paths are written.

Each client speaks in ``corral_common.internal`` shapes; one private HTTP core forwards the request id
and turns a non-2xx answer or an error line into the typed error the other service raised.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from corral_common.digest import Digest
from corral_common.errors import AppError, BadGateway, from_status
from corral_common.internal import (CompletionEvent, CompletionRequest, EmbedInputs, EmbedOutput, LoadRequest,
                                    LoadResult, ProgressEvent, ResolvedModel, TransferRequest, UnloadRequest)
from corral_common.jsonio import go_dumps
from corral_common.logs import REQUEST_ID_HEADER
from corral_common.schemas import CopyRequest, CreateRequest, ShowRequest

_TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=None, pool=None)
Shape = TypeVar("Shape", bound=BaseModel)


def _error_of(response: httpx.Response, body: bytes) -> AppError:
    """Rebuild the typed error another service answered with."""
    try:
        message = json.loads(body).get("error") or body.decode(errors="replace")
    except (ValueError, AttributeError):
        message = body.decode(errors="replace") or response.reason_phrase
    return from_status(response.status_code, message)


def _encoded(body: BaseModel | dict[str, Any]) -> bytes:
    """A request body as JSON bytes."""
    return (body.model_dump_json() if isinstance(body, BaseModel) else go_dumps(body)).encode()


class _Http:
    """JSON and NDJSON calls to one internal service (shared by the typed clients, never used by routes)."""

    def __init__(self, base_url: str, service: str) -> None:
        self.service = service
        self.client = httpx.AsyncClient(base_url=base_url, timeout=_TIMEOUT, trust_env=False)

    def _headers(self, request_id: str) -> dict[str, str]:
        return {REQUEST_ID_HEADER: request_id, "content-type": "application/json"}

    def parsed(self, shape: type[Shape], data: Any) -> Shape:
        """An answer as its internal shape; a shape the service should not send is a 502."""
        try:
            return shape.model_validate(data)
        except ValidationError as exc:
            raise BadGateway(f"{self.service} service sent an invalid {shape.__name__}: {exc.errors()[0]['msg']}") \
                from None

    async def call(self, method: str, path: str, request_id: str, content: Any = None) -> httpx.Response:
        """One request; non-2xx answers become typed errors."""
        try:
            response = await self.client.request(method, path, content=content, headers=self._headers(request_id))
        except httpx.TransportError as exc:
            raise BadGateway(f"{self.service} service unavailable: {exc}") from None
        if response.status_code >= 400:
            raise _error_of(response, response.content)
        return response

    async def json(self, method: str, path: str, request_id: str, body: BaseModel | dict | None = None) -> Any:
        """A request whose answer is JSON."""
        response = await self.call(method, path, request_id, None if body is None else _encoded(body))
        return response.json() if response.content else {}

    async def lines(self, path: str, request_id: str, content: bytes) -> AsyncIterator[dict[str, Any]]:
        """POST and iterate NDJSON lines; an error line (or status) raises a typed error."""
        request = self.client.build_request("POST", path, content=content, headers=self._headers(request_id))
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise BadGateway(f"{self.service} service unavailable: {exc}") from None
        try:
            if response.status_code >= 400:
                raise _error_of(response, await response.aread())
            async for line in response.aiter_lines():
                if line.strip():
                    yield _checked(json.loads(line))
        except httpx.TransportError as exc:
            raise BadGateway(f"{self.service} service stopped answering: {exc}") from None
        finally:
            await response.aclose()

    async def events(self, shape: type[Shape], path: str, request_id: str,
                     content: bytes) -> AsyncIterator[Shape]:
        """An NDJSON stream parsed line by line into ``shape``."""
        async for line in self.lines(path, request_id, content):
            yield self.parsed(shape, line)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


def _checked(event: Any) -> Any:
    """A stream line, or the typed error it carries (``{"error": ..., "status": ...}``)."""
    if isinstance(event, dict) and "error" in event:
        raise from_status(event.get("status", 500), event["error"])
    return event


class _Client:
    """A typed client owns one HTTP core to its service."""

    service = ""

    def __init__(self, base_url: str) -> None:
        self.http = _Http(base_url, self.service)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.http.close()


class RegistryClient(_Client):
    """The model store: resolve, list, show, copy, delete, blobs, and the create/pull/push streams."""

    service = "registry"

    async def resolve(self, name: str, request_id: str) -> ResolvedModel:
        """Everything needed to run ``name`` (404 when it is not stored)."""
        return self.http.parsed(ResolvedModel, await self.http.json("POST", "/store/resolve", request_id,
                                                                     {"model": name}))

    async def list_models(self, request_id: str) -> dict[str, Any]:
        """GET /api/tags's answer."""
        return await self.http.json("GET", "/store/models", request_id)

    async def show(self, req: ShowRequest, request_id: str) -> dict[str, Any]:
        """POST /api/show's answer."""
        return await self.http.json("POST", "/store/show", request_id, req.model_dump(exclude_none=True))

    async def copy(self, req: CopyRequest, request_id: str) -> None:
        """Copy a model under a new name."""
        await self.http.json("POST", "/store/copy", request_id, req.model_dump())

    async def delete(self, name: str, request_id: str) -> None:
        """Delete a model by name."""
        await self.http.json("POST", "/store/delete", request_id, {"model": name})

    async def blob_exists(self, digest: Digest, request_id: str) -> None:
        """Nothing when the blob is stored; 404 when it is not."""
        await self.http.call("HEAD", f"/store/blobs/{digest}", request_id)

    async def upload_blob(self, digest: Digest, chunks: AsyncIterator[bytes], request_id: str) -> bool:
        """Store a blob (verified by the registry); True when it was new."""
        response = await self.http.call("POST", f"/store/blobs/{digest}", request_id, chunks)
        return response.status_code == 201

    def create(self, req: CreateRequest, request_id: str) -> AsyncIterator[ProgressEvent]:
        """The progress of a create job."""
        body = _encoded(req.model_dump(by_alias=True, exclude_none=True))
        return self.http.events(ProgressEvent, "/store/create", request_id, body)

    def pull(self, req: TransferRequest, request_id: str) -> AsyncIterator[ProgressEvent]:
        """The progress of a pull job (``stream`` is the gateway's business, credentials are ignored)."""
        return self.http.events(ProgressEvent, "/store/pull", request_id, _transfer_body(req))

    def push(self, req: TransferRequest, request_id: str) -> AsyncIterator[ProgressEvent]:
        """The progress of a push job."""
        return self.http.events(ProgressEvent, "/store/push", request_id, _transfer_body(req))


def _transfer_body(req: TransferRequest) -> bytes:
    """What the registry needs of a pull or push: the name and whether the host may be insecure."""
    return _encoded({"model": req.model_name(), "insecure": req.insecure})


class InferenceClient(_Client):
    """The inference service: load, unload, complete, embed, and the loaded runners."""

    service = "inference"

    async def load(self, req: LoadRequest, request_id: str) -> LoadResult:
        """Load a model without generating."""
        return self.http.parsed(LoadResult, await self.http.json("POST", "/run/load", request_id, req))

    async def unload(self, model_digest: str, request_id: str) -> None:
        """Unload a model's runners."""
        await self.http.json("POST", "/run/unload", request_id, UnloadRequest(model_digest=model_digest))

    def complete(self, req: CompletionRequest, request_id: str) -> AsyncIterator[CompletionEvent]:
        """Text pieces, then the final event with the metrics."""
        return self.http.events(CompletionEvent, "/run/completion", request_id, _encoded(req))

    async def embed(self, req: EmbedInputs, request_id: str) -> EmbedOutput:
        """Raw vectors for each input."""
        return self.http.parsed(EmbedOutput, await self.http.json("POST", "/run/embed", request_id, req))

    async def ps(self, request_id: str) -> dict[str, Any]:
        """The loaded runners (``{"models": [...]}``)."""
        return await self.http.json("GET", "/run/ps", request_id)


class WebsearchClient(_Client):
    """The websearch service; bodies are relayed as sent (that service validates them)."""

    service = "websearch"

    async def search(self, raw: bytes, request_id: str) -> bytes:
        """ollama.com's web_search answer."""
        return (await self.http.call("POST", "/api/web_search", request_id, raw)).content

    async def fetch(self, raw: bytes, request_id: str) -> bytes:
        """ollama.com's web_fetch answer."""
        return (await self.http.call("POST", "/api/web_fetch", request_id, raw)).content

    async def index(self, raw: bytes, request_id: str) -> bytes:
        """The last event of an index job (``stream: false``)."""
        return (await self.http.call("POST", "/api/index", request_id, raw)).content

    def index_stream(self, raw: bytes, request_id: str) -> AsyncIterator[dict[str, Any]]:
        """The events of an index job."""
        return self.http.lines("/api/index", request_id, raw)
