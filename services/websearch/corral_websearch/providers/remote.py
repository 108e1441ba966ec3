"""Search engines reached over HTTP: a SearXNG instance and the Brave Search API.

Both are endpoints the operator configured, not URLs from a caller, so they are reached with a
plain client (no proxy variables) rather than through the web_fetch policy: a SearXNG container
on a private network is the normal case.
"""

from __future__ import annotations

from typing import Any

import httpx

from corral_common.errors import BadGateway, ServiceUnavailable

from corral_websearch.extract import absolute_links
from corral_websearch.providers import SearchResult

_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


def plain_text(value: Any) -> str:
    """Snippet text without the HTML highlighting search engines put in it."""
    if not value:
        return ""
    import lxml.html

    try:
        return " ".join(lxml.html.fragment_fromstring(str(value), create_parent="div").text_content().split())
    except Exception:  # lxml raises several types on odd fragments; the raw text is still useful
        return " ".join(str(value).split())


def _failure(provider: str, exc: Exception) -> BadGateway:
    return BadGateway(f"{provider} search failed: {exc or type(exc).__name__}")


class _HttpProvider:
    name = "remote"

    def __init__(self, http: httpx.AsyncClient | None = None) -> None:
        self.http = http or httpx.AsyncClient(timeout=_TIMEOUT, trust_env=False, follow_redirects=True)

    async def _get_json(self, url: str, params: dict[str, Any], headers: dict[str, str]) -> Any:
        try:
            response = await self.http.get(url, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise _failure(self.name, exc) from None
        if response.status_code >= 400:
            raise BadGateway(f"{self.name} search failed: HTTP {response.status_code} {response.text[:200]}")
        try:
            return response.json()
        except ValueError:
            raise BadGateway(f"{self.name} search did not answer JSON (is its JSON format enabled?)") from None

    async def cache_key(self) -> str:
        return ""

    async def close(self) -> None:
        await self.http.aclose()


class SearxngProvider(_HttpProvider):
    """SearXNG's JSON API: ``<base>/search?q=...&format=json`` (``json`` must be an enabled format)."""

    name = "searxng"

    def __init__(self, base_url: str, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(http)
        self.url = base_url.rstrip("/") + "/search"

    async def search(self, query: str, max_results: int) -> list[SearchResult]:
        body = await self._get_json(self.url, {"q": query, "format": "json"}, {"Accept": "application/json"})
        results = []
        for item in body.get("results", []) if isinstance(body, dict) else []:
            url = item.get("url") or ""
            if url and absolute_links(url, [url]):
                results.append(SearchResult(plain_text(item.get("title")) or url, url, plain_text(item.get("content"))))
        return results[:max_results]


class BraveProvider(_HttpProvider):
    """The Brave Search API (needs CORRAL_BRAVE_API_KEY)."""

    name = "brave"

    def __init__(self, api_key: str, url: str, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(http)
        self.api_key, self.url = api_key, url

    async def search(self, query: str, max_results: int) -> list[SearchResult]:
        if not self.api_key:
            raise ServiceUnavailable("brave search needs an API key: set CORRAL_BRAVE_API_KEY")
        headers = {"Accept": "application/json", "X-Subscription-Token": self.api_key}
        body = await self._get_json(self.url, {"q": query, "count": max_results}, headers)
        items = ((body.get("web") or {}).get("results") or []) if isinstance(body, dict) else []
        results = []
        for item in items:
            snippets = [item.get("description"), *(item.get("extra_snippets") or [])]
            content = "\n".join(plain_text(s) for s in snippets if s)
            results.append(SearchResult(plain_text(item.get("title")) or item.get("url", ""), item.get("url", ""),
                                        content))
        return [r for r in results if r.url][:max_results]
