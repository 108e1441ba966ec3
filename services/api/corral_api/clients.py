"""Typed clients of the registry, inference, websearch and auth services: the one place their paths are written.

Each client speaks in ``corral_common.internal`` shapes; one private HTTP core forwards the request id
and turns a non-2xx answer or an error line into the typed error the other service raised. The auth
client differs in one way: its refusals, and the routes the auth service owns, reach the caller as the
auth service answered them (status, body and a few safe headers).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar

import httpx
import structlog
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from corral_common.digest import Digest
from corral_common.errors import AppError, BadGateway, from_status
from corral_common.health import Probe, http_probe
from corral_common.internal import (CompletionEvent, CompletionRequest, EmbedInputs, EmbedOutput, EngineModel,
                                    LoadRequest, LoadResult, NodeLoad, ProgressEvent, ResolvedModel,
                                    TokenizeOutput, TokenizeRequest, TransferRequest, UnloadRequest)
from corral_common.jsonio import go_dumps
from corral_common import linestream, tracing
from corral_common.logs import REQUEST_ID_HEADER, note_request
from corral_common.schemas import CopyRequest, CreateRequest, ShowRequest
from corral_common.shutdown import Shutdown
from corral_common.tls import tls_context

_TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=None, pool=None)
Shape = TypeVar("Shape", bound=BaseModel)
CLIENT_STATE = "corral_client"  # the scope state key under which the auth gate keeps the client's address
log = structlog.get_logger("corral.api.clients")


def _phrase(status: int) -> str:
    """The reason phrase of a status code ("" for one without)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _error_of(status: int, body: bytes) -> AppError:
    """Rebuild the typed error another service answered with."""
    try:
        message = json.loads(body).get("error") or body.decode(errors="replace")
    except (ValueError, AttributeError):
        message = body.decode(errors="replace") or _phrase(status)
    return from_status(status, message)


def _encoded(body: BaseModel | dict[str, Any]) -> bytes:
    """A request body as JSON bytes."""
    return (body.model_dump_json() if isinstance(body, BaseModel) else go_dumps(body)).encode()


class _Http:
    """JSON and NDJSON calls to one internal service (shared by the typed clients, never used by routes).

    When a stopping gateway's grace period ends, a call or stream still waiting on the service is cut with
    ShuttingDown: a stream then ends with that final error line rather than a cut connection.
    """

    def __init__(self, base_url: str, service: str, timeout: httpx.Timeout = _TIMEOUT,
                 shutdown: Shutdown | None = None) -> None:
        self.service = service
        self.client = self._own = httpx.AsyncClient(base_url=base_url, timeout=timeout, trust_env=False,
                                                    verify=tls_context())
        self.shutdown = shutdown or Shutdown()
        self.connect_timeout = timeout.connect or _TIMEOUT.connect
        # NDJSON streams from a plain-HTTP service skip httpx (corral_common.linestream); a client swapped in
        # (another transport, as tests do) is always used as it is.
        self.address = linestream.plain_http(base_url)

    def headers(self, request_id: str) -> dict[str, str]:
        """The request id and the JSON content type."""
        return {REQUEST_ID_HEADER: request_id, "content-type": "application/json"}

    def parsed(self, shape: type[Shape], data: Any) -> Shape:
        """An answer as its internal shape; a shape the service should not send is a 502."""
        try:
            return shape.model_validate(data)
        except ValidationError as exc:
            raise BadGateway(f"{self.service} service sent an invalid {shape.__name__}: {exc.errors()[0]['msg']}") \
                from None

    async def raw(self, method: str, path: str, headers: dict[str, str], content: Any = None,
                  params: Any = None) -> httpx.Response:
        """One request answered as it came: its status and any transport error are the caller's business."""
        span = self.span(method, path)
        error: BaseException | None = None
        try:
            response = await self.client.request(method, path, content=content, headers={**headers, **span.headers},
                                                 params=params)
            # httpx binds the read body's stream back to its response: a cycle only a full garbage collection
            # frees, each holding a whole body (a verbose /api/show of a big GGUF is megabytes per request).
            response.stream = httpx.ByteStream(response.content)
            return response
        except BaseException as exc:
            error = exc
            raise
        finally:
            span.end(error)

    def span(self, method: str, path: str) -> tracing.ClientSpan:
        """The trace span of one call (off: just the caller's ``traceparent`` passed on)."""
        return tracing.client_span(f"{self.service} {method}", **{"peer.service": self.service, "url.path": path})

    async def call(self, method: str, path: str, request_id: str, content: Any = None) -> httpx.Response:
        """One request; non-2xx answers become typed errors."""
        try:
            async with self.shutdown.bounded():
                response = await self.raw(method, path, self.headers(request_id), content)
        except httpx.TransportError as exc:
            raise BadGateway(f"{self.service} service unavailable: {exc}") from None
        if response.status_code >= 400:
            raise _error_of(response.status_code, response.content)
        return response

    async def json(self, method: str, path: str, request_id: str, body: BaseModel | dict | None = None) -> Any:
        """A request whose answer is JSON."""
        response = await self.call(method, path, request_id, None if body is None else _encoded(body))
        return response.json() if response.content else {}

    def lines(self, path: str, request_id: str, content: bytes) -> AsyncIterator[dict[str, Any]]:
        """POST and iterate NDJSON lines; an error line (or status) raises a typed error."""
        lean = self.address is not None and self.client is self._own
        return (self._lean_lines if lean else self._httpx_lines)(path, request_id, content)

    async def _lean_lines(self, path: str, request_id: str, content: bytes) -> AsyncIterator[dict[str, Any]]:
        assert self.address is not None
        span = self.span("POST", path)
        try:
            async with self.shutdown.bounded():
                stream = await linestream.open_stream(self.address, path, {**self.headers(request_id), **span.headers},
                                                      content, self.service, self.connect_timeout)
        except BaseException as exc:
            span.end(exc)
            raise
        unwatch = self.shutdown.watch(stream.abort)  # the grace period's end cuts the wait for the next line
        try:
            if stream.status >= 400:
                raise _error_of(stream.status, await stream.body())
            while (line := await stream.next_line()) is not None:
                if line.strip():
                    yield _checked(json.loads(line.decode()))
        finally:
            unwatch()
            stream.close()
            span.end()

    async def _httpx_lines(self, path: str, request_id: str, content: bytes) -> AsyncIterator[dict[str, Any]]:
        span = self.span("POST", path)
        request = self.client.build_request("POST", path, content=content,
                                            headers={**self.headers(request_id), **span.headers})
        try:
            response = await self._open(request)
        except BaseException as exc:
            span.end(exc)
            raise
        try:
            if response.status_code >= 400:
                raise _error_of(response.status_code, await response.aread())
            lines = response.aiter_lines()
            while (line := await self._next_line(lines)) is not None:
                if line.strip():
                    yield _checked(json.loads(line))
        except httpx.TransportError as exc:
            raise BadGateway(f"{self.service} service stopped answering: {exc}") from None
        finally:
            await response.aclose()
            span.end()

    async def _open(self, request: httpx.Request) -> httpx.Response:
        """Send a request whose answer is read as a stream; an unreachable service is a 502."""
        try:
            async with self.shutdown.bounded():
                return await self.client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise BadGateway(f"{self.service} service unavailable: {exc}") from None

    async def _next_line(self, lines: AsyncIterator[str]) -> str | None:
        """The stream's next line (None at its end), unless the grace period ends first."""
        async with self.shutdown.bounded():
            return await anext(lines, None)

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
    timeout = _TIMEOUT

    def __init__(self, base_url: str, shutdown: Shutdown | None = None) -> None:
        self.http = _Http(base_url, self.service, self.timeout, shutdown)

    def readiness_probe(self) -> Probe:
        """A probe of the service's ``/healthz``, for the gateway's ``/readyz``."""
        return http_probe(self.http.client)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.http.close()


class RegistryClient(_Client):
    """The model store: resolve, list, show, copy, delete, blobs, and the create/pull/push streams."""

    service = "registry"

    async def resolve(self, name: str, request_id: str) -> ResolvedModel:
        """Everything needed to run ``name`` (404 when it is not stored); the request's log lines name it."""
        note_request(model=name)
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

    async def unload(self, model: EngineModel, request_id: str) -> None:
        """Unload the model's runner (its blob with exactly its adapters)."""
        unload = UnloadRequest(model_digest=model.model_digest, adapters=model.adapters)
        await self.http.json("POST", "/run/unload", request_id, unload)

    def complete(self, req: CompletionRequest, request_id: str) -> AsyncIterator[CompletionEvent]:
        """Text pieces, then the final event with the metrics."""
        return self.http.events(CompletionEvent, "/run/completion", request_id, _encoded(req))

    async def embed(self, req: EmbedInputs, request_id: str) -> EmbedOutput:
        """Raw vectors for each input."""
        return self.http.parsed(EmbedOutput, await self.http.json("POST", "/run/embed", request_id, req))

    async def tokenize(self, req: TokenizeRequest, request_id: str) -> TokenizeOutput:
        """A rendered prompt's tokens, from the model loaded as a completion would load it."""
        return self.http.parsed(TokenizeOutput, await self.http.json("POST", "/run/tokenize", request_id, req))

    async def ps(self, request_id: str) -> dict[str, Any]:
        """The loaded runners (``{"models": [...]}``)."""
        return await self.http.json("GET", "/run/ps", request_id)

    async def node_load(self, request_id: str) -> NodeLoad:
        """The node's occupancy, for routing between several inference nodes."""
        return self.http.parsed(NodeLoad, await self.http.json("GET", "/run/node", request_id))

    def ready_probe(self) -> Probe:
        """A probe of the node's ``/readyz`` (it can serve, not just answer)."""
        return http_probe(self.http.client, "/readyz")


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


@dataclass(frozen=True)
class Denial:
    """A refusal from the auth service, relayed to the client."""

    status: int
    message: str
    headers: dict[str, str]


UNAVAILABLE = Denial(503, "auth service unavailable", {})


def _unavailable(error: str) -> Denial:
    """The refusal when the auth service cannot answer (logged: every protected request now fails)."""
    log.error("auth service unavailable", error=error)
    return UNAVAILABLE


def json_answer(status: int, body: Any, headers: dict[str, str]) -> Response:
    """A JSON answer the gateway writes itself about auth (refusals, an unreachable auth service)."""
    return Response(json.dumps(body).encode(), status_code=status, media_type="application/json; charset=utf-8",
                    headers=headers)


def _message(response: httpx.Response) -> str:
    """The auth service's ``error`` text, or the status's reason."""
    try:
        return str(response.json().get("error") or response.reason_phrase)
    except (ValueError, AttributeError):
        return response.reason_phrase


def _kept(response: httpx.Response, names: tuple[str, ...]) -> dict[str, str]:
    """The answer's headers among ``names``."""
    return {k: v for k, v in response.headers.items() if k in names}


class AuthClient(_Client):
    """The auth service: verify and audit for the gate, and the relay of the routes it owns (keys, signin, token)."""

    service = "auth"
    timeout = httpx.Timeout(10.0, connect=3.0)

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self._pending: set[asyncio.Task] = set()

    async def verify(self, body: dict[str, Any], request_id: str) -> dict[str, Any] | Denial:
        """The principal for a credential, or the refusal; a failing auth service refuses with 503 (fail closed)."""
        try:
            response = await self.http.raw("POST", "/internal/verify", self.http.headers(request_id), _encoded(body))
        except httpx.HTTPError as exc:
            return _unavailable(type(exc).__name__)
        if response.status_code == 200:
            return response.json()
        if response.status_code in (400, 401, 403, 429):
            return Denial(response.status_code, _message(response), _kept(response, ("www-authenticate",
                                                                                       "retry-after")))
        return _unavailable("HTTPStatusError")

    def audit(self, event: dict[str, Any]) -> None:
        """Send an audit event without holding up the response."""
        self._later("/internal/audit", event)

    def usage(self, event: dict[str, Any]) -> None:
        """Report a finished model call of an authenticated caller (user, key_id, model, prompt_tokens,
        completion_tokens) without holding up the response."""
        self._later("/internal/usage", event)

    def _later(self, path: str, event: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._post(path, event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, path: str, event: dict[str, Any]) -> None:
        try:
            await self.http.raw("POST", path, {"content-type": "application/json"}, _encoded(event))
        except httpx.HTTPError as exc:
            log.warning("auth event lost", path=path, error=type(exc).__name__)

    async def keys(self, request: Request) -> Response:
        """Create or list API keys."""
        return await self._relay(request, "/api/keys")

    async def revoke_key(self, request: Request, key_id: str) -> Response:
        """Revoke one API key (``key_id`` checked by the route)."""
        return await self._relay(request, f"/api/keys/{key_id}")

    async def grants(self, request: Request) -> Response:
        """Add or list repository grants."""
        return await self._relay(request, "/api/grants")

    async def revoke_grant(self, request: Request, grant_id: str) -> Response:
        """Revoke one grant (``grant_id`` checked by the route)."""
        return await self._relay(request, f"/api/grants/{grant_id}")

    async def account(self, request: Request) -> Response:
        """/api/me, /api/signout, /api/signin and /api/signin/approve: the same path on the auth service."""
        return await self._relay(request, request.url.path)

    async def token(self, request: Request) -> Response:
        """A registry token."""
        return await self._relay(request, "/token")

    async def jwks(self, request: Request) -> Response:
        """The public keys registry tokens are signed with."""
        return await self._relay(request, "/jwks.json")

    async def _relay(self, request: Request, path: str) -> Response:
        """Relay a request with the caller's credential, address and original URI; answer as the service did."""
        try:
            answer = await self.http.raw(request.method, path, _relay_headers(request), await request.body(),
                                         request.query_params.multi_items())
        except httpx.TransportError:
            return json_answer(503, {"error": "auth service unavailable"}, {})
        return Response(answer.content, status_code=answer.status_code,
                        headers=_kept(answer, ("content-type", "www-authenticate", "retry-after")))

    async def close(self) -> None:
        """Wait for queued audit events, then close the pool."""
        if self._pending:
            await asyncio.wait(self._pending, timeout=5)
        await super().close()


def _relay_headers(request: Request) -> dict[str, str]:
    """What the auth service needs to authenticate a relayed request itself."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    headers = {
        "content-type": "application/json", REQUEST_ID_HEADER: getattr(request.state, "request_id", "") or "",
        "x-corral-client": request.scope.get("state", {}).get(CLIENT_STATE) or _peer(request),
        "x-corral-original-uri": (raw + (b"?" + query if query else b"")).decode("latin-1"),
        "x-corral-original-url": str(request.url),
    }
    for name in ("authorization", "x-api-key"):
        if name in request.headers:
            headers[name] = request.headers[name]
    return headers


def _peer(request: Request) -> str:
    return request.client.host if request.client else ""
