"""Add pages to the built-in index: one page by hand, or a breadth-first crawl of one site.

The crawl stays on the seed's site, reads sitemaps (given as the seed or listed in robots.txt),
obeys robots.txt and its Crawl-delay (capped), and goes through the same SSRF-safe fetcher as
web_fetch. Progress is reported as events: ``indexed``, ``skipped`` and a final ``success``.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from corral_common.errors import AppError, BadGateway, Forbidden

from corral_websearch.extract import Page, extract, readable
from corral_websearch.index import Document, SearchIndex
from corral_websearch.net.fetcher import Fetched, SafeFetcher
from corral_websearch.robots import RobotsCache, origin_of

Emit = Callable[[dict[str, Any]], None]
MAX_CRAWL_DELAY = 5.0
_SKIP_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".ico", ".css", ".js", ".mjs", ".zip", ".gz",
                  ".tgz", ".bz2", ".xz", ".7z", ".rar", ".tar", ".mp3", ".mp4", ".m4a", ".wav", ".ogg", ".webm",
                  ".avi", ".mov", ".woff", ".woff2", ".ttf", ".eot", ".exe", ".dmg", ".iso", ".bin", ".gguf")
_SITEMAP_TAGS = ("urlset", "sitemapindex")


@dataclass(frozen=True)
class CrawlLimits:
    """How far a crawl may go."""

    max_pages: int = 20
    max_depth: int = 2


def sitemap_locations(fetched: Fetched) -> list[str] | None:
    """The ``<loc>`` URLs of a sitemap or sitemap index; None when the body is not a sitemap."""
    if not (fetched.content_type.endswith("xml") or fetched.body.lstrip()[:5] == b"<?xml"):
        return None
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(fetched.body, parser)
    except etree.XMLSyntaxError:
        return None
    if etree.QName(root).localname not in _SITEMAP_TAGS:
        return None
    return [loc.text.strip() for loc in root.iter("{*}loc") if loc.text and loc.text.strip()]


def _crawlable(url: str) -> bool:
    path = urllib.parse.urlsplit(url).path.lower()
    return not path.endswith(_SKIP_SUFFIXES)


class Indexer:
    """Fetches pages, extracts them and stores them in the index."""

    def __init__(self, fetcher: SafeFetcher, index: SearchIndex, emit: Emit, max_chars: int = 100_000) -> None:
        self.fetcher = fetcher
        self.index = index
        self.emit = emit
        self.max_chars = max_chars

    async def fetch_page(self, url: str) -> tuple[Fetched, Page | None]:
        """Fetch ``url``; a sitemap comes back without a page, anything else extracted."""
        fetched = await self.fetcher.fetch(url, accept=readable)
        if not fetched.ok:
            raise BadGateway(f"{fetched.url} answered HTTP {fetched.status}")
        if sitemap_locations(fetched) is not None:
            return fetched, None
        return fetched, await asyncio.to_thread(extract, fetched, self.max_chars)

    async def store(self, page: Page, source: str) -> None:
        """Write a page to the index and report it."""
        await asyncio.to_thread(self.index.add, Document(page.url, page.title, page.content, source))
        self.emit({"status": "indexed", "url": page.url, "title": page.title})

    async def add(self, url: str) -> dict[str, Any]:
        """Index one page (no robots.txt check: a person asked for this page)."""
        fetched, page = await self.fetch_page(url)
        if page is None:
            raise BadGateway(f"{fetched.url} is a sitemap: crawl it to index the pages it lists")
        await self.store(page, "index")
        return {"status": "success", "indexed": 1, "skipped": 0}

    async def crawl(self, seed: str, limits: CrawlLimits, robots: RobotsCache) -> dict[str, Any]:
        """Breadth-first from ``seed`` over its site, within ``limits``."""
        sites = {origin_of(seed)}
        queue: deque[tuple[str, int]] = deque([(seed, 0)])
        seen = {seed}
        for sitemap in await robots.sitemaps(seed):
            if origin_of(sitemap) in sites and sitemap not in seen:
                seen.add(sitemap)
                queue.append((sitemap, 0))
        indexed = skipped = 0
        while queue and indexed < limits.max_pages:
            url, depth = queue.popleft()
            visit = await self._visit(url, depth == 0 and url == seed, robots)
            if visit is None:
                skipped += 1
                continue
            if visit.page is not None:
                indexed += 1
                seen.add(visit.page.url)
                if url == seed:
                    sites.add(origin_of(visit.page.url))  # the seed redirected, e.g. http to https
            next_depth = depth if visit.page is None else depth + 1  # sitemap entries keep the depth
            for link in visit.urls:
                if next_depth <= limits.max_depth and origin_of(link) in sites and link not in seen \
                        and _crawlable(link):
                    seen.add(link)
                    queue.append((link, next_depth))
            delay = await robots.delay(url)
            if delay > 0 and queue:
                await asyncio.sleep(min(delay, MAX_CRAWL_DELAY))
        return {"status": "success", "indexed": indexed, "skipped": skipped}

    async def _visit(self, url: str, is_seed: bool, robots: RobotsCache) -> "_Visit | None":
        """Fetch and store one crawled URL; None (after a ``skipped`` event) when it could not be."""
        try:
            if not await robots.allowed(url):
                raise Forbidden(f"robots.txt of {origin_of(url)} disallows {url}")
            fetched, page = await self.fetch_page(url)
            if page is not None:
                await self.store(page, "crawl")
                return _Visit(page, page.links)
            return _Visit(None, sitemap_locations(fetched) or [])
        except AppError as exc:
            if is_seed:
                raise
            self.emit({"status": "skipped", "url": url, "reason": exc.message})
            return None


@dataclass(frozen=True)
class _Visit:
    page: Page | None
    urls: list[str]
