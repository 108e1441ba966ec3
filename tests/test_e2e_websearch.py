"""Web search end to end: a real ``corral serve`` crawls a small website that this test serves on loopback.

The site (several linked pages, a redirect, a large page, a slow page, robots.txt) is reached through
CORRAL_WEBFETCH_ALLOW=127.0.0.1; the session server, started without an allow-list, shows that
loopback is refused. Also: ``corral index add``, ``corral mcp`` (tools/list, tools/call) and the
chat tool functions.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from corral_websearch.testing import Handler, Site, send, send_unbounded
from serverproc import BIN, Server, start_server, stop_server

pytestmark = pytest.mark.e2e
MAX_BYTES = 1024 * 1024


def _page(title: str, heading: str, paragraphs: list[str], links: list[str] = ()) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    nav = " ".join(f'<a href="{href}">{href.strip("/") or "home"}</a>' for href in links)
    return (f"<!doctype html><html><head><title>{title}</title></head><body><nav>{nav}</nav>"
            f"<article><h1>{heading}</h1>{body}</article><footer>Farm notes</footer></body></html>")


PAGES = {
    "/": _page("Farm notes", "Welcome to the farm notes", [
        "Short notes about baking, animals, programming and tea, kept by the farm's residents."],
        ["/bread", "/alpacas", "rust", "/moved", "/big", "/slow", "/private/diary"]),
    "/bread": _page("Baking sourdough bread", "Sourdough bread", [
        "A sourdough starter is a culture of wild yeast and lactobacilli that leavens the dough.",
        "Feed the starter flour and water every day; bake the loaf in a hot oven and let it cool.",
        "See also the notes on <a href='/alpacas'>alpacas</a>."], ["/"]),
    "/alpacas": _page("Alpaca husbandry", "Keeping alpacas", [
        "Alpacas are camelids from the Andes, shorn once a year for their soft fleece.",
        "They live in herds, hum when curious and need shade, water and company."], ["/", "/bread"]),
    "/rust": _page("The Rust borrow checker", "Ownership and borrowing in Rust", [
        "Every value in Rust has one owner; the borrow checker rejects references that outlive it.",
        "Mutable borrows are exclusive, shared borrows may be many."], ["/"]),
    "/tea": _page("Brewing green tea", "Green tea", [
        "Steep green tea leaves at 80 degrees for two minutes; boiling water makes the tea bitter.",
        "Sencha and gyokuro are Japanese green teas."], ["/"]),
    "/private/diary": _page("Private diary", "Secret", ["The diary must never be crawled."]),
    "/notes/hedgehogs": _page("Hedgehog notes", "Hedgehogs in the garden", [
        "Hedgehogs eat beetles and slugs at night and hibernate through the winter in leaf piles."]),
}


def _slow(handler: BaseHTTPRequestHandler) -> None:
    time.sleep(8)  # longer than CORRAL_WEBFETCH_READ_TIMEOUT below
    send(handler, "<p>too late</p>", content_type="text/html")


def _routes() -> dict[str, Handler]:
    """The pages, robots.txt, a redirect to /tea, 3 MiB with no declared length, and a page slower than the limit."""
    routes: dict[str, Handler] = {path: (lambda h, page=page: send(h, page)) for path, page in PAGES.items()}
    routes.update({
        "/robots.txt": lambda h: send(h, "User-agent: *\nDisallow: /private/\n", content_type="text/plain"),
        "/moved": lambda h: send(h, b"", 301, "text/html", [("Location", "/tea")]),
        "/big": lambda h: send_unbounded(h, b"<p>" + b"big page " * 7280 + b"</p>", 48),
        "/slow": _slow,
    })
    return routes


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site(routes=_routes())
    yield s
    s.close()


def _wait_for_websearch(srv: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if httpx.post(f"{srv.url}/api/web_search", json={"query": "x"}, timeout=10).status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError("the websearch service did not come up")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, site: Site) -> Iterator[Server]:
    """A corral whose web_fetch may reach 127.0.0.1, with small limits so the big and slow pages trip them."""
    srv = start_server(tmp_path_factory.mktemp("corral-web"), {
        "CORRAL_WEBFETCH_ALLOW": "127.0.0.1", "CORRAL_WEBFETCH_MAX_BYTES": str(MAX_BYTES),
        "CORRAL_WEBFETCH_READ_TIMEOUT": "2", "CORRAL_WEBFETCH_TIMEOUT": "5"})
    try:
        _wait_for_websearch(srv)
        yield srv
    finally:
        stop_server(srv.process)


@pytest.fixture(scope="module")
def crawl(web: Server, site: Site) -> list[dict]:
    """Crawl the site from its home page through POST /api/index (a Celery job), keeping the events."""
    body = {"url": site.url("/"), "crawl": True, "max_pages": 20, "max_depth": 2}
    with httpx.stream("POST", f"{web.url}/api/index", json=body, timeout=60) as response:
        assert response.status_code == 200
        return [json.loads(line) for line in response.iter_lines() if line.strip()]


def _search(srv: Server, query: str, **extra: object) -> list[dict]:
    response = httpx.post(f"{srv.url}/api/web_search", json={"query": query, **extra}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_crawl_indexes_the_site_and_obeys_robots_and_limits(crawl: list[dict], site: Site) -> None:
    indexed = {e["url"] for e in crawl if e["status"] == "indexed"}
    assert indexed == {site.url(p) for p in ("/", "/bread", "/alpacas", "/rust", "/tea")}  # /moved → /tea
    skipped = {e["url"]: e["reason"] for e in crawl if e["status"] == "skipped"}
    assert "robots.txt" in skipped[site.url("/private/diary")]
    assert "larger than the 1 MiB" in skipped[site.url("/big")]
    assert "sent nothing for 2s" in skipped[site.url("/slow")]
    assert crawl[-1] == {"status": "success", "indexed": 5, "skipped": 3}
    assert "/private/diary" not in site.hits


@pytest.mark.parametrize(("query", "path"), [
    ("how do I feed a sourdough starter", "/bread"),
    ("alpaca fleece", "/alpacas"),
    ("borrow checker references", "/rust"),
    ("green tea steeping temperature", "/tea"),
])
def test_web_search_ranks_the_right_page_first(crawl: list[dict], web: Server, site: Site, query: str,
                                                path: str) -> None:
    results = _search(web, query)
    assert results and results[0]["url"] == site.url(path)
    assert set(results[0]) == {"title", "url", "content"}
    assert results[0]["title"] == PAGES[path].split("<title>")[1].split("</title>")[0]


def test_web_search_content_is_the_relevant_passage_and_max_results_holds(crawl: list[dict], web: Server) -> None:
    top = _search(web, "hot oven loaf")[0]
    assert "hot oven" in top["content"] and not top["content"].startswith("# Sourdough bread\n\nA sourdough")
    assert len(_search(web, "the farm notes tea bread alpacas rust", max_results=2)) == 2
    assert len(_search(web, "the farm notes tea bread alpacas rust")) == 5
    assert _search(web, "zeppelin") == []


def test_web_fetch_returns_title_markdown_and_absolute_links(web: Server, site: Site) -> None:
    for path in ("/api/web_fetch", "/api/experimental/web_fetch"):
        response = httpx.post(f"{web.url}{path}", json={"url": site.url("/bread")}, timeout=30)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["title"] == "Baking sourdough bread"
        assert page["content"].startswith("# Sourdough bread")
        assert f"[alpacas]({site.url('/alpacas')})" in page["content"]
        assert page["links"] == [site.url("/"), site.url("/alpacas")]
    redirected = httpx.post(f"{web.url}/api/web_fetch", json={"url": site.url("/moved")}, timeout=30).json()
    assert redirected["title"] == "Brewing green tea"


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/big", 413, "larger than the 1 MiB web_fetch limit"),
    ("/slow", 504, "sent nothing for 2s"),
])
def test_web_fetch_limits_are_clear_errors(web: Server, site: Site, path: str, status: int, message: str) -> None:
    response = httpx.post(f"{web.url}/api/web_fetch", json={"url": site.url(path)}, timeout=30)
    assert response.status_code == status and message in response.json()["error"]


def test_non_http_schemes_are_refused(web: Server) -> None:
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/", "gopher://127.0.0.1:70/"):
        response = httpx.post(f"{web.url}/api/web_fetch", json={"url": url}, timeout=30)
        assert response.status_code == 403 and "only http and https" in response.json()["error"]


def test_without_the_allow_list_loopback_is_refused_with_a_reason(server: Server, site: Site) -> None:
    _wait_for_websearch(server)
    port, before = site.port, len(site.hits)
    for url, why in ((site.url("/bread"), "127.0.0.1 is a loopback address"),
                     (f"http://localhost:{port}/bread", "localhost is a loopback name"),
                     (f"http://2130706433:{port}/bread", "127.0.0.1 is a loopback address"),
                     (f"http://0177.0.0.1:{port}/bread", "127.0.0.1 is a loopback address"),
                     (f"http://[::ffff:127.0.0.1]:{port}/bread", "IPv4-mapped form of 127.0.0.1"),
                     ("http://169.254.169.254/latest/meta-data/", "cloud metadata address"),
                     ("http://10.0.0.1/", "private address")):
        response = httpx.post(f"{server.url}/api/web_fetch", json={"url": url}, timeout=30)
        assert response.status_code == 403, (url, response.text)
        assert why in response.json()["error"] and "CORRAL_WEBFETCH_ALLOW" in response.json()["error"]
    assert len(site.hits) == before  # nothing reached the site


def test_corral_index_add(web: Server, site: Site) -> None:
    out = web.corral("index", "add", site.url("/notes/hedgehogs"), timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"indexed {site.url('/notes/hedgehogs')}  (Hedgehog notes)" in out.stdout
    assert "1 page indexed" in out.stdout
    assert _search(web, "hedgehogs hibernate")[0]["url"] == site.url("/notes/hedgehogs")
    refused = web.corral("index", "add", "file:///etc/passwd", timeout=60)
    assert refused.returncode == 1 and "only http and https" in refused.stderr


def _mcp(srv: Server, messages: list[dict]) -> list[dict]:
    lines = "".join(json.dumps(m) + "\n" for m in messages)
    out = subprocess.run([str(BIN / "corral"), "mcp"], env=srv.env, input=lines, text=True, capture_output=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_mcp_server_lists_and_calls_both_tools(crawl: list[dict], web: Server, site: Site) -> None:
    answers = _mcp(web, [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "web_search", "arguments": {"query": "alpaca fleece", "max_results": 1}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
         "params": {"name": "web_fetch", "arguments": {"url": site.url("/rust")}}},
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
         "params": {"name": "web_fetch", "arguments": {"url": "file:///etc/passwd"}}},
        {"jsonrpc": "2.0", "id": 6, "method": "nope"},
    ])
    by_id = {a["id"]: a for a in answers}
    assert sorted(by_id) == [1, 2, 3, 4, 5, 6]  # the notification got no answer
    assert by_id[1]["result"]["protocolVersion"] == "2025-06-18" and "tools" in by_id[1]["result"]["capabilities"]
    tools = {t["name"]: t for t in by_id[2]["result"]["tools"]}
    assert set(tools) == {"web_search", "web_fetch"}
    assert tools["web_search"]["inputSchema"]["required"] == ["query"]
    assert tools["web_fetch"]["inputSchema"]["required"] == ["url"]
    search = by_id[3]["result"]
    assert search["isError"] is False
    assert json.loads(search["content"][0]["text"])["results"][0]["url"] == site.url("/alpacas")
    fetch = by_id[4]["result"]
    assert fetch["isError"] is False and fetch["structuredContent"]["title"] == "The Rust borrow checker"
    assert by_id[5]["result"]["isError"] is True and "only http and https" in by_id[5]["result"]["content"][0]["text"]
    assert by_id[6]["error"]["code"] == -32601


def test_chat_tool_functions_call_the_server(crawl: list[dict], web: Server, site: Site,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from corral_cli.commands.web import WEB_TOOLS, web_fetch, web_search

    monkeypatch.setenv("OLLAMA_HOST", web.host)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    assert web_search("sourdough starter", max_results=1)["results"][0]["url"] == site.url("/bread")
    assert web_fetch(site.url("/tea"))["title"] == "Brewing green tea"
    assert [t["function"]["name"] for t in WEB_TOOLS] == ["web_search", "web_fetch"]
