"""What the websearch routes call: search, fetch (cached) and index jobs (queued to the worker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import nullcontext
from typing import Any

from corral_common.errors import BadGateway, BadRequest, ServiceUnavailable
from corral_common.logs import get_logger
from corral_common.jobs import JobRunner

from corral_websearch.cache import TTLCache
from corral_websearch.extract import extract, readable
from corral_websearch.index import Document, SearchIndex
from corral_websearch.metrics import WebsearchMetrics
from corral_websearch.net.fetcher import SafeFetcher
from corral_websearch.providers import SearchProvider
from corral_websearch.schemas import IndexRequest, WebFetchRequest, WebSearchRequest
from corral_websearch.settings import WebsearchSettings
from corral_websearch.tasks import CRAWL_TASK, INDEX_URL_TASK

log = get_logger("corral.websearch")


class WebService:
    """web_search, web_fetch and index jobs over the configured provider, fetcher and index."""

    def __init__(self, settings: WebsearchSettings, fetcher: SafeFetcher, index: SearchIndex,
                 provider: SearchProvider, jobs: JobRunner | None = None,
                 meter: WebsearchMetrics | None = None) -> None:
        self.settings = settings
        self.meter = meter
        self.fetcher = fetcher
        self.index = index
        self.provider = provider
        self.jobs = jobs
        self.cache = TTLCache(settings.cache_ttl)

    async def search(self, req: WebSearchRequest) -> dict[str, Any]:
        """``{"results": [{"title", "url", "content"}]}`` for a query, best first."""
        with self.meter.counted("search") if self.meter else nullcontext():
            return await self._search(req)

    async def fetch(self, req: WebFetchRequest) -> dict[str, Any]:
        """``{"title", "content", "links"}`` of one page; the page is also added to the index."""
        with self.meter.counted("fetch") if self.meter else nullcontext():
            return await self._fetch(req)

    async def _search(self, req: WebSearchRequest) -> dict[str, Any]:
        query = req.query.strip()
        if not query:
            raise BadRequest("query is required")
        key = ("search", self.provider.name, await self.provider.cache_key(), query, req.limit())
        cached = self.cache.get(key)
        if cached is None:
            results = await self.provider.search(query, req.limit())
            cached = {"results": [r.wire() for r in results[: req.limit()]]}
            self.cache.put(key, cached)
        return cached

    async def _fetch(self, req: WebFetchRequest) -> dict[str, Any]:
        if not req.url.strip():
            raise BadRequest("url is required")
        target = self.fetcher.policy.check_url(req.url)
        key = ("fetch", target.url)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        fetched = await self.fetcher.fetch(target.url, accept=readable)
        if not fetched.ok:
            raise BadGateway(f"{fetched.url} answered HTTP {fetched.status}")
        page = await asyncio.to_thread(extract, fetched, self.settings.limits.max_content_chars)
        if self.settings.index_fetched and page.content:
            await self._remember(Document(page.url, page.title, page.content, "fetch"))
        result = {"title": page.title, "content": page.content, "links": page.links}
        self.cache.put(key, result)
        return result

    async def _remember(self, doc: Document) -> None:
        """Store a fetched page in the index; a failure here never fails the fetch."""
        try:
            await asyncio.to_thread(self.index.add, doc)
        except Exception as exc:  # the database is optional for web_fetch: log and go on
            log.warning("could not index fetched page", url=doc.url, error=str(exc))

    async def index_job(self, req: IndexRequest) -> AsyncIterator[dict[str, Any]]:
        """Queue an index (or crawl) job and relay its progress events."""
        if not req.url.strip():
            raise BadRequest("url is required")
        if self.jobs is None:
            raise ServiceUnavailable("indexing needs the task queue, which is not configured")
        target = self.fetcher.policy.check_url(req.url)  # refuse early; the worker checks again
        job = {"url": target.url, "max_pages": req.max_pages, "max_depth": req.max_depth}
        kind, task = ("crawl", CRAWL_TASK) if req.crawl else ("index", INDEX_URL_TASK)
        async for event in self.jobs.run(kind, task, job):
            yield event

    async def close(self) -> None:
        """Release the provider's and the index's connections."""
        await self.provider.close()
        await asyncio.to_thread(self.index.close)
