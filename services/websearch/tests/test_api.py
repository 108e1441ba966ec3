"""The websearch app through HTTP: ollama.com's shapes, refusals that say why, the cache, the index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from corral_websearch.index import Document
from corral_websearch.main import create_app
from corral_websearch.settings import FetchLimits, WebsearchSettings
from corral_websearch.testing import Site, send


PAGE = ("<html><head><title>Llama care</title></head><body><nav><a href='/'>home</a></nav><main>"
        "<h1>Caring for llamas</h1><p>Llamas need shelter, fresh water and company; a lone llama gets stressed."
        "</p><p>Read about <a href='/alpacas'>alpacas</a> too.</p></main></body></html>")


def _app(tmp_path: Path, **overrides) -> TestClient:  # type: ignore[no-untyped-def]
    settings = WebsearchSettings(home=tmp_path, limits=FetchLimits(total_timeout=5, read_timeout=2), **overrides)
    return TestClient(create_app(settings, with_queue=False))


@pytest.fixture
def api(tmp_path: Path, site: Site) -> Iterator[tuple[TestClient, Site]]:
    site.routes["/llamas"] = lambda h: send(h, PAGE)
    with _app(tmp_path, allow=("127.0.0.1",)) as client:
        yield client, site


def test_web_fetch_returns_title_markdown_and_absolute_links(api) -> None:  # type: ignore[no-untyped-def]
    client, site = api
    response = client.post("/api/web_fetch", json={"url": site.url("/llamas")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["title", "content", "links"]
    assert body["title"] == "Llama care"
    assert body["content"].startswith("# Caring for llamas")
    assert body["links"] == [site.url("/"), site.url("/alpacas")]


def test_fetched_pages_are_cached_and_indexed(api) -> None:  # type: ignore[no-untyped-def]
    client, site = api
    for _ in range(2):
        assert client.post("/api/web_fetch", json={"url": site.url("/llamas")}).status_code == 200
    assert site.hits.count("/llamas") == 1
    results = client.post("/api/web_search", json={"query": "lone llama stressed"}).json()["results"]
    assert results[0]["url"] == site.url("/llamas") and results[0]["title"] == "Llama care"
    assert "lone llama gets stressed" in results[0]["content"]


def test_web_search_shape_and_max_results(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    service = client.app.state.service  # type: ignore[attr-defined]
    for i in range(12):
        service.index.add(Document(f"http://t/{i}", f"Page {i}", f"camel number {i} walks in the desert"))
    search = lambda body: client.post("/api/web_search", json=body)  # noqa: E731
    assert len(search({"query": "camel"}).json()["results"]) == 5
    assert len(search({"query": "camel", "max_results": 2}).json()["results"]) == 2
    assert len(search({"query": "camel", "max_results": 50}).json()["results"]) == 10
    assert set(search({"query": "camel", "max_results": 1}).json()["results"][0]) == {"title", "url", "content"}
    assert search({"query": "nothing matches this"}).json() == {"results": []}


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/api/web_search", None, 400, "missing request body"),
    ("/api/web_search", {"query": "  "}, 400, "query is required"),
    ("/api/web_search", {"query": "x", "max_results": "3"}, 400, "max_results"),
    ("/api/web_fetch", {}, 400, "url is required"),
    ("/api/web_fetch", {"url": "file:///etc/passwd"}, 403, "only http and https"),
    ("/api/index", {"url": "http://x.test/"}, 503, "task queue"),
])
def test_bad_requests_say_why(api, path: str, body, status: int, message: str) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    response = client.post(path, json=body) if body is not None else client.post(path)
    assert response.status_code == status and message in response.json()["error"]


def test_without_the_allow_list_loopback_is_refused(tmp_path: Path, canary: Site) -> None:
    with _app(tmp_path) as client:
        for url in (canary.url("/"), f"localhost:{canary.port}/x", f"http://[::ffff:127.0.0.1]:{canary.port}/"):
            response = client.post("/api/web_fetch", json={"url": url})
            assert response.status_code == 403
            assert "loopback" in response.json()["error"] and "CORRAL_WEBFETCH_ALLOW" in response.json()["error"]
        assert "https://localhost" in client.post("/api/web_fetch", json={"url": "localhost/x"}).json()["error"]
    assert canary.connections == 0


def test_upstream_errors_are_bad_gateway(api) -> None:  # type: ignore[no-untyped-def]
    client, site = api
    response = client.post("/api/web_fetch", json={"url": site.url("/missing")})
    assert response.status_code == 502 and "answered HTTP 404" in response.json()["error"]


def test_health(tmp_path: Path) -> None:
    with _app(tmp_path) as client:
        assert client.get("/health").json() == {"status": "ok"}
