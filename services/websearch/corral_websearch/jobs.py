"""The index jobs the worker runs: build what they need from settings, run, raise a typed error."""

from __future__ import annotations

from typing import Any

from corral_common.errors import AppError
from corral_common.logs import get_logger

from corral_websearch.components import build_fetcher, open_index
from corral_websearch.crawler import CrawlLimits, Emit, Indexer
from corral_websearch.net.resolver import Resolver
from corral_websearch.robots import RobotsCache
from corral_websearch.settings import WebsearchSettings

log = get_logger("corral.websearch.jobs")


async def run_index_job(settings: WebsearchSettings, request: dict[str, Any], emit: Emit, crawl: bool,
                        resolver: Resolver | None = None) -> None:
    """Index one page or crawl from it; raises the AppError that ended the job."""
    fetcher = build_fetcher(settings, resolver)
    index = open_index(settings)
    try:
        indexer = Indexer(fetcher, index, emit, settings.limits.max_content_chars)
        if crawl:
            limits = CrawlLimits(int(request.get("max_pages", 20)), int(request.get("max_depth", 2)))
            summary = await indexer.crawl(request["url"], limits, RobotsCache(fetcher))
        else:
            summary = await indexer.add(request["url"])
        emit(summary)
    except AppError as exc:
        log.info("index job failed", url=request.get("url"), error=exc.message)
        raise
    finally:
        index.close()
