"""Provider selection (the fixed configuration contract) and the SearXNG and Brave adapters."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from corral_common.errors import BadGateway, ServiceUnavailable
from corral_websearch.components import build_provider
from corral_websearch.providers.remote import BraveProvider, SearxngProvider
from corral_websearch.settings import WebsearchSettings


@pytest.mark.parametrize(("env", "provider"), [
    ({}, "index"),
    ({"CORRAL_SEARXNG_URL": "http://searx:8080"}, "searxng"),
    ({"CORRAL_SEARCH_PROVIDER": "brave", "CORRAL_BRAVE_API_KEY": "k"}, "brave"),
    ({"CORRAL_SEARCH_PROVIDER": "index", "CORRAL_SEARXNG_URL": "http://searx:8080"}, "index"),
    ({"CORRAL_SEARCH_PROVIDER": " SearXNG "}, "unavailable"),
    ({"CORRAL_SEARCH_PROVIDER": "google"}, "unavailable"),
])
def test_provider_is_chosen_by_configuration(env: dict[str, str], provider: str, tmp_path: Path) -> None:
    settings = WebsearchSettings.from_env({"CORRAL_HOME": str(tmp_path), **env})
    assert build_provider(settings, index=None).name == provider  # type: ignore[arg-type]


def test_misconfiguration_says_what_to_set(tmp_path: Path) -> None:
    settings = WebsearchSettings.from_env({"CORRAL_HOME": str(tmp_path), "CORRAL_SEARCH_PROVIDER": "searxng"})
    with pytest.raises(ServiceUnavailable, match="CORRAL_SEARXNG_URL"):
        asyncio.run(build_provider(settings, index=None).search("q", 5))  # type: ignore[arg-type]
    with pytest.raises(ServiceUnavailable, match="CORRAL_BRAVE_API_KEY"):
        asyncio.run(BraveProvider("", "http://brave.test/search").search("q", 5))


def test_settings_contract(tmp_path: Path) -> None:
    settings = WebsearchSettings.from_env({"CORRAL_HOME": str(tmp_path),
                                           "CORRAL_WEBFETCH_ALLOW": " a.test, 10.0.0.0/8,",
                                           "CORRAL_WEBFETCH_MAX_BYTES": "2048", "CORRAL_WEBFETCH_TIMEOUT": "3",
                                           "CORRAL_WEBSEARCH_CACHE_TTL": "0"})
    assert settings.allow == ("a.test", "10.0.0.0/8")
    assert settings.limits.max_bytes == 2048 and settings.limits.total_timeout == 3.0
    assert settings.cache_ttl == 0
    assert settings.index_url() == f"sqlite:///{tmp_path / 'websearch' / 'index.sqlite'}"
    assert WebsearchSettings.from_env({"CORRAL_HOME": "/h", "CORRAL_DATABASE_URL": "postgresql+psycopg://x/y"}
                                      ).index_url() == "postgresql+psycopg://x/y"


def _client(handler) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def test_searxng_json_api() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"results": [
            {"url": "https://a.test/", "title": "A <b>page</b>", "content": "about <em>llamas</em>"},
            {"url": "javascript:alert(1)", "title": "bad", "content": ""},
            {"url": "https://b.test/", "title": "B", "content": "more"},
            {"url": "https://c.test/", "title": "C", "content": "more"},
        ]})

    results = asyncio.run(SearxngProvider("http://searx.test/", _client(handler)).search("llamas", 2))
    assert [r.wire() for r in results] == [{"title": "A page", "url": "https://a.test/", "content": "about llamas"},
                                           {"title": "B", "url": "https://b.test/", "content": "more"}]
    assert seen[0].url.path == "/search"
    assert dict(seen[0].url.params) == {"q": "llamas", "format": "json"}


def test_searxng_without_json_format_is_a_clear_error() -> None:
    provider = SearxngProvider("http://searx.test", _client(lambda r: httpx.Response(403, text="Forbidden")))
    with pytest.raises(BadGateway, match="searxng search failed: HTTP 403"):
        asyncio.run(provider.search("q", 3))


def test_brave_api() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Subscription-Token"] == "secret"
        assert request.url.params["count"] == "3"
        return httpx.Response(200, content=json.dumps({"web": {"results": [
            {"url": "https://ollama.com/", "title": "Ollama", "description": "Run <strong>models</strong>",
             "extra_snippets": ["locally"]}]}}))

    results = asyncio.run(BraveProvider("secret", "https://brave.test/search", _client(handler)).search("x", 3))
    assert [r.wire() for r in results] == [{"title": "Ollama", "url": "https://ollama.com/",
                                            "content": "Run models\nlocally"}]
