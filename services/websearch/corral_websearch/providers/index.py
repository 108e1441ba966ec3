"""The built-in provider: BM25 over pages that were added, crawled or fetched."""

from __future__ import annotations

import asyncio

from corral_websearch.index import SearchIndex
from corral_websearch.index.snippets import best_passage
from corral_websearch.providers import SearchResult


class IndexProvider:
    """Search the built-in index; ``content`` is the passage of each page that matches best."""

    name = "index"

    def __init__(self, index: SearchIndex, snippet_chars: int = 800) -> None:
        self.index = index
        self.snippet_chars = snippet_chars

    async def search(self, query: str, max_results: int) -> list[SearchResult]:
        hits = await asyncio.to_thread(self.index.search, query, max_results)
        return [SearchResult(h.title or h.url, h.url, best_passage(h.content, query, self.snippet_chars))
                for h in hits]

    async def cache_key(self) -> str:
        return await asyncio.to_thread(self.index.generation)

    async def close(self) -> None:
        return None
