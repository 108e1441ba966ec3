"""Several inference nodes behind one gateway: each request goes to a node that has its model loaded, else
to the least loaded ready node with room for it; a node whose readiness fails gets nothing.

CORRAL_INFERENCE_URL lists the nodes, comma separated. A URL's host name is resolved and each address
is a node (compose ``--scale inference=N`` and a Kubernetes headless Service give several), so replicas
that come, go or change address are found again at the next refresh. Node state (``/readyz`` and
``/run/node``) is refreshed at most every ``refresh_s`` seconds, on demand, and at once after a failed
call: a request whose node turned out to be down (or gone) before it answered anything goes to the next
choice. With a single node nothing is probed: requests go straight to it, as with one ``InferenceClient``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog

from corral_common.errors import AppError, BadGateway, ServiceUnavailable
from corral_common.health import DependencyDown, Probe
from corral_common.internal import (CompletionEvent, CompletionRequest, EmbedInputs, EmbedOutput, EngineModel,
                                    LoadRequest, LoadResult, NodeLoad, TokenizeOutput, TokenizeRequest)
from corral_common.shutdown import Shutdown

from corral_api.clients import InferenceClient

REFRESH_S = 2.0
PROBE_TIMEOUT_S = 2.0
ATTEMPTS = 3  # nodes one request may try
NO_NODE = "no inference node is ready: check the inference service (its /readyz)"
T = TypeVar("T")
Resolver = Callable[[str, int], list[str]]
log = structlog.get_logger("corral.api.nodes")


def split_urls(value: str) -> tuple[str, ...]:
    """The node URLs of CORRAL_INFERENCE_URL (comma separated, trailing slashes dropped)."""
    return tuple(u.strip().rstrip("/") for u in value.split(",") if u.strip())


def resolve_addresses(host: str, port: int) -> list[str]:
    """The distinct addresses a host name resolves to (a literal address: itself). A dual-stack host is one
    node, not two: its IPv4 addresses only. A loopback name (localhost) stays a name."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return [host]
    except ValueError:
        pass
    found = {ipaddress.ip_address(info[4][0].split("%", 1)[0])
             for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    if all(address.is_loopback for address in found):
        return [host]
    v4 = {a for a in found if a.version == 4}
    return sorted(str(a) for a in (v4 or found))


def expand(url: str, resolve: Resolver) -> list[str]:
    """One URL per address the URL's host name resolves to (a literal address: the URL itself)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolve(parts.hostname or "", port)
    except (OSError, UnicodeError):
        return [url]  # not resolvable now: kept under its name (and found down if probed)
    if addresses in ([], [parts.hostname]):
        return [url]
    netloc = lambda a: f"[{a}]:{port}" if ":" in a else f"{a}:{port}"  # noqa: E731
    return [urlunsplit((parts.scheme, netloc(a), parts.path, "", "")) for a in addresses]


@dataclass
class Node:
    """One inference node: its client, what its last probe said and the requests this gateway has on it."""

    url: str
    client: InferenceClient
    ready: bool = False
    load: NodeLoad = field(default_factory=NodeLoad)
    inflight: int = 0

    def has(self, model_digest: str) -> bool:
        """Whether the model is loaded here."""
        return model_digest in self.load.models

    def has_room(self) -> bool:
        """A free model slot, or an idle model it would evict for another."""
        return self.load.loaded < max(self.load.max_loaded, 1) or self.load.idle_memory > 0

    def expect(self, model_digest: str) -> None:
        """Count a model this gateway just sent here as loaded until the next probe says otherwise, so that
        requests between probes follow it (and another model goes to the other node)."""
        if not self.has(model_digest):
            self.load = self.load.model_copy(update={"models": [*self.load.models, model_digest],
                                                     "loaded": self.load.loaded + 1})

    def busyness(self) -> tuple[int, int, int]:
        """Sort key, least loaded first: requests on it, models loaded, then the most memory free."""
        return (max(self.load.active, self.inflight), self.load.loaded, -self.load.available_memory)

    async def probe(self, request_id: str) -> None:
        """Ready and its occupancy, or down."""
        try:
            await asyncio.wait_for(self.client.ready_probe()(), PROBE_TIMEOUT_S)
            self.load = await asyncio.wait_for(self.client.node_load(request_id), PROBE_TIMEOUT_S)
            self.ready = True
        except (AppError, DependencyDown, httpx.HTTPError, TimeoutError) as exc:
            if self.ready:
                log.warning("inference node down", node=self.url, error=type(exc).__name__)
            self.ready = False


def choose(nodes: list[Node], model_digest: str) -> Node:
    """The node for a model: a ready one that has it, else the least loaded ready one with room (else any)."""
    ready = [n for n in nodes if n.ready]
    if not ready:
        raise ServiceUnavailable(NO_NODE)
    holding = [n for n in ready if n.has(model_digest)]
    roomy = [n for n in ready if n.has_room()]
    return min(holding or roomy or ready, key=Node.busyness)


class InferenceRouter:
    """The gateway's inference client over every node (the same calls as ``InferenceClient``)."""

    def __init__(self, urls: tuple[str, ...], shutdown: Shutdown | None = None, resolve: Resolver = resolve_addresses,
                 refresh_s: float = REFRESH_S) -> None:
        self.urls, self.shutdown, self.resolve, self.refresh_s = urls, shutdown, resolve, refresh_s
        self.nodes: dict[str, Node] = {}
        self.refreshed_at = float("-inf")
        self.lock = asyncio.Lock()

    @classmethod
    def from_setting(cls, value: str, shutdown: Shutdown | None = None) -> "InferenceRouter":
        """From CORRAL_INFERENCE_URL's value."""
        return cls(split_urls(value), shutdown)

    async def current(self, request_id: str = "", force: bool = False) -> list[Node]:
        """The nodes, their state at most ``refresh_s`` old (one refresh at a time)."""
        async with self.lock:
            if force or time.monotonic() - self.refreshed_at >= self.refresh_s:
                await self._refresh(request_id)
                self.refreshed_at = time.monotonic()
        return list(self.nodes.values())

    async def _refresh(self, request_id: str) -> None:
        wanted: list[str] = []
        for url in self.urls:
            wanted += await asyncio.to_thread(expand, url, self.resolve)
        for gone in set(self.nodes) - set(wanted):
            await self.nodes.pop(gone).client.close()
        for url in wanted:
            self.nodes.setdefault(url, Node(url, InferenceClient(url, self.shutdown)))
        if len(self.nodes) == 1:
            next(iter(self.nodes.values())).ready = True  # nothing to choose between: no probing
        else:
            await asyncio.gather(*(node.probe(request_id) for node in self.nodes.values()))

    @asynccontextmanager
    async def _on(self, model_digest: str, request_id: str) -> AsyncIterator[Node]:
        """The chosen node, counted as busy while the caller uses it."""
        node = choose(await self.current(request_id), model_digest)
        node.expect(model_digest)
        node.inflight += 1
        try:
            yield node
        finally:
            node.inflight -= 1

    async def _failover(self, failed: Node, request_id: str) -> bool:
        """After a call failed before any answer: whether to try another node. The nodes are resolved and
        probed again at once; yes when the failed one is gone or down and another is ready."""
        nodes = {node.url: node for node in await self.current(request_id, force=True)}
        still = nodes.get(failed.url)
        return (still is None or not still.ready) and any(node.ready for node in nodes.values())

    async def _call(self, model_digest: str, request_id: str, call: Callable[[InferenceClient], Awaitable[T]]) -> T:
        """One call on the chosen node; on the next choice if that node turns out to be down."""
        for attempt in range(1, ATTEMPTS + 1):
            async with self._on(model_digest, request_id) as node:
                try:
                    return await call(node.client)
                except BadGateway:
                    if attempt == ATTEMPTS or not await self._failover(node, request_id):
                        raise
        raise AssertionError("unreachable")

    async def load(self, req: LoadRequest, request_id: str) -> LoadResult:
        """Load a model on its node."""
        return await self._call(req.model.model_digest, request_id, lambda c: c.load(req, request_id))

    async def embed(self, req: EmbedInputs, request_id: str) -> EmbedOutput:
        """Raw vectors, from the model's node."""
        return await self._call(req.model.model_digest, request_id, lambda c: c.embed(req, request_id))

    async def tokenize(self, req: TokenizeRequest, request_id: str) -> TokenizeOutput:
        """A prompt's tokens, from the model's node."""
        return await self._call(req.model.model_digest, request_id, lambda c: c.tokenize(req, request_id))

    async def complete(self, req: CompletionRequest, request_id: str) -> AsyncIterator[CompletionEvent]:
        """The completion's events from the model's node (another node if the first is down before answering)."""
        for attempt in range(1, ATTEMPTS + 1):
            async with self._on(req.model.model_digest, request_id) as node:
                started = False
                try:
                    async with aclosing(node.client.complete(req, request_id)) as events:
                        async for event in events:
                            started = True
                            yield event
                    return
                except BadGateway:
                    if started or attempt == ATTEMPTS or not await self._failover(node, request_id):
                        raise

    async def unload(self, model: EngineModel, request_id: str) -> None:
        """Unload the model wherever it is loaded (a node that does not have it has nothing to do)."""
        nodes = [n for n in await self.current(request_id) if n.ready]
        await asyncio.gather(*(n.client.unload(model, request_id) for n in nodes))

    async def ps(self, request_id: str) -> dict[str, Any]:
        """The loaded runners of every ready node (``{"models": [...]}``), latest expiry first."""
        nodes = [n for n in await self.current(request_id) if n.ready]
        if len(nodes) == 1:
            return await nodes[0].client.ps(request_id)
        answers = await asyncio.gather(*(n.client.ps(request_id) for n in nodes), return_exceptions=True)
        rows = [row for answer in answers if isinstance(answer, dict) for row in answer.get("models", [])]
        return {"models": sorted(rows, key=lambda row: row.get("expires_at") or 0, reverse=True)}

    def readiness_probe(self) -> Probe:
        """Ready while at least one node is (one node: its ``/healthz`` answers, as for one client)."""

        async def ready() -> None:
            nodes = await self.current(force=True)
            if len(nodes) == 1:
                return await nodes[0].client.readiness_probe()()
            if not any(n.ready for n in nodes):
                raise DependencyDown(f"none of {len(nodes)} inference nodes is ready")

        return ready

    async def close(self) -> None:
        """Close every node's connection pool."""
        for node in self.nodes.values():
            await node.client.close()
