"""Build the fetcher, index and search provider from settings (shared by the API and the worker)."""

from __future__ import annotations

from corral_common.errors import ServiceUnavailable
from corral_common.logs import get_logger

from corral_websearch.index.store import SqlIndex
from corral_websearch.net.fetcher import SafeFetcher
from corral_websearch.net.policy import AllowList, FetchPolicy
from corral_websearch.net.resolver import Resolver, SystemResolver
from corral_websearch.providers import SearchProvider, SearchResult
from corral_websearch.providers.index import IndexProvider
from corral_websearch.providers.remote import BraveProvider, SearxngProvider
from corral_websearch.settings import PROVIDERS, WebsearchSettings

log = get_logger("corral.websearch")


def build_policy(settings: WebsearchSettings) -> FetchPolicy:
    """The fetch policy with the operator's allow-list (bad entries are logged and ignored)."""
    allow = AllowList(settings.allow)
    for entry in allow.invalid:
        log.warning("ignoring CORRAL_WEBFETCH_ALLOW entry", entry=entry)
    return FetchPolicy(allow)


def build_fetcher(settings: WebsearchSettings, resolver: Resolver | None = None) -> SafeFetcher:
    """The SSRF-safe fetcher under the configured limits."""
    return SafeFetcher(build_policy(settings), resolver or SystemResolver(), settings.limits)


def open_index(settings: WebsearchSettings) -> SqlIndex:
    """The built-in index (SQLite under CORRAL_HOME, or the configured database), migrated."""
    return SqlIndex.open(settings.index_url())


class UnavailableProvider:
    """Stands in for a provider that is misconfigured: every search says what to fix."""

    name = "unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def search(self, query: str, max_results: int) -> list[SearchResult]:
        raise ServiceUnavailable(self.reason)

    async def cache_key(self) -> str:
        return ""

    async def close(self) -> None:
        return None


def build_provider(settings: WebsearchSettings, index: SqlIndex) -> SearchProvider:
    """The provider CORRAL_SEARCH_PROVIDER names (CORRAL_SEARXNG_URL alone selects searxng)."""
    if settings.provider == "index":
        return IndexProvider(index)
    if settings.provider == "searxng":
        if not settings.searxng_url:
            return UnavailableProvider("web search is set to searxng but CORRAL_SEARXNG_URL is not set")
        return SearxngProvider(settings.searxng_url)
    if settings.provider == "brave":
        return BraveProvider(settings.brave_api_key, settings.brave_url)
    return UnavailableProvider(f"unknown CORRAL_SEARCH_PROVIDER {settings.provider!r}: "
                               f"use one of {', '.join(PROVIDERS)}")
