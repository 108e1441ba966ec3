"""Request bodies of the websearch API: ollama.com's web_search and web_fetch, and corral's index."""

from __future__ import annotations

from pydantic import Field

from corral_common.schemas import WireModel

DEFAULT_RESULTS = 5
MAX_RESULTS = 10


class WebSearchRequest(WireModel):
    """``{"query", "max_results"}`` as in Ollama's api.WebSearchRequest."""

    query: str = ""
    max_results: int = Field(0, description="results to return: default 5, at most 10")

    def limit(self) -> int:
        """max_results clamped to 1..10, 5 when absent or not positive."""
        return min(self.max_results, MAX_RESULTS) if self.max_results > 0 else DEFAULT_RESULTS


class WebFetchRequest(WireModel):
    """``{"url"}``; a URL without a scheme gets https://."""

    url: str = ""


class IndexRequest(WireModel):
    """Add a page to the built-in index, or crawl from it (same site, robots.txt respected)."""

    url: str = ""
    crawl: bool = Field(False, description="follow links (and sitemaps) from url on the same site")
    max_pages: int = Field(20, ge=1, le=1000, description="pages to index at most when crawling")
    max_depth: int = Field(2, ge=0, le=10, description="link hops from url at most when crawling")
    stream: bool = True
