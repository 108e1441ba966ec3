"""The crawler on a loopback site: links, depth, page cap, robots.txt, sitemaps, and per-page failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from corral_common.errors import AppError, Forbidden
from corral_websearch.crawler import CrawlLimits, Indexer
from corral_websearch.index.store import SqlIndex
from corral_websearch.jobs import run_index_job
from corral_websearch.net.policy import FetchRefused
from corral_websearch.robots import RobotsCache
from corral_websearch.settings import WebsearchSettings
from corral_websearch.testing import Site, make_fetcher, send


def _html(title: str, body: str, links: list[str]) -> str:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return f"<html><head><title>{title}</title></head><body><p>{body}</p><nav>{anchors}</nav></body></html>"


@pytest.fixture
def crawl_site(site: Site) -> Site:
    site.routes.update({
        "/": lambda h: send(h, _html("Home", "Welcome to the farm.", ["/a", "/b", "/private/x", "/pic.png",
                                                                       "http://other.test/"])),
        "/a": lambda h: send(h, _html("Goats", "Goats climb trees.", ["/a/deep"])),
        "/a/deep": lambda h: send(h, _html("Deep goats", "Very deep goat lore.", ["/a/deeper"])),
        "/a/deeper": lambda h: send(h, _html("Deeper", "Too deep.", [])),
        "/b": lambda h: send(h, _html("Bees", "Bees make honey.", ["/missing"])),
        "/private/x": lambda h: send(h, _html("Secret", "secret", [])),
        "/robots.txt": lambda h: send(h, "User-agent: *\nDisallow: /private/\n"
                                         f"Sitemap: {h.server.site.url('/sitemap.xml')}\n", content_type="text/plain"),
        "/sitemap.xml": lambda h: send(h, '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/'
                                          f'sitemap/0.9"><url><loc>{h.server.site.url("/from-sitemap")}</loc></url>'
                                          "</urlset>", content_type="application/xml"),
        "/from-sitemap": lambda h: send(h, _html("Listed", "Only the sitemap links here.", [])),
    })
    return site


def _crawl(site: Site, tmp_path: Path, seed: str = "/", **limits: int) -> tuple[dict, list[dict], SqlIndex]:
    events: list[dict[str, Any]] = []
    index = SqlIndex.open(f"sqlite:///{tmp_path / 'i.sqlite'}")
    fetcher = make_fetcher(("127.0.0.1",))
    summary = asyncio.run(Indexer(fetcher, index, events.append).crawl(site.url(seed), CrawlLimits(**limits),
                                                                      RobotsCache(fetcher)))
    return summary, events, index


def test_crawl_follows_links_within_depth_and_obeys_robots(crawl_site: Site, tmp_path: Path) -> None:
    summary, events, index = _crawl(crawl_site, tmp_path, max_pages=20, max_depth=2)
    indexed = {e["url"] for e in events if e["status"] == "indexed"}
    assert indexed == {crawl_site.url(p) for p in ("/", "/a", "/b", "/a/deep", "/from-sitemap")}
    skipped = {e["url"]: e["reason"] for e in events if e["status"] == "skipped"}
    assert "robots.txt" in skipped[crawl_site.url("/private/x")]
    assert "404" in skipped[crawl_site.url("/missing")]
    assert "/private/x" not in crawl_site.hits and "/pic.png" not in crawl_site.hits
    assert "/a/deeper" not in crawl_site.hits
    assert summary == {"status": "success", "indexed": 5, "skipped": 2}
    assert index.search("goats climb", 3)[0].url == crawl_site.url("/a")
    index.close()


def test_crawl_stops_at_max_pages(crawl_site: Site, tmp_path: Path) -> None:
    summary, events, index = _crawl(crawl_site, tmp_path, max_pages=2, max_depth=5)
    assert summary["indexed"] == 2 and index.count() == 2
    index.close()


def test_a_sitemap_seed_is_crawled(crawl_site: Site, tmp_path: Path) -> None:
    summary, events, index = _crawl(crawl_site, tmp_path, seed="/sitemap.xml", max_pages=5, max_depth=0)
    assert [e["url"] for e in events if e["status"] == "indexed"] == [crawl_site.url("/from-sitemap")]
    index.close()


def test_a_seed_refused_by_robots_or_policy_fails_the_crawl(crawl_site: Site, tmp_path: Path) -> None:
    with pytest.raises(Forbidden, match="robots.txt"):
        _crawl(crawl_site, tmp_path, seed="/private/x")
    index = SqlIndex.open(f"sqlite:///{tmp_path / 'j.sqlite'}")
    fetcher = make_fetcher()  # no allow-list: the loopback site is refused
    with pytest.raises(FetchRefused):
        asyncio.run(Indexer(fetcher, index, lambda e: None).crawl(crawl_site.url("/"), CrawlLimits(),
                                                                  RobotsCache(fetcher)))
    index.close()


def test_index_job_reports_events_and_errors(crawl_site: Site, tmp_path: Path) -> None:
    settings = WebsearchSettings(home=tmp_path, allow=("127.0.0.1",))
    events: list[dict] = []
    asyncio.run(run_index_job(settings, {"url": crawl_site.url("/b")}, events.append, crawl=False))
    assert [e["status"] for e in events] == ["indexed", "success"]
    with pytest.raises(AppError, match="loopback") as refused:
        asyncio.run(run_index_job(WebsearchSettings(home=tmp_path), {"url": crawl_site.url("/b")},
                                  events.append, crawl=False))
    assert refused.value.status == 403
