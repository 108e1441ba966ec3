"""robots.txt for the crawler: fetched once per site through the safe fetcher, read by urllib's parser."""

from __future__ import annotations

import urllib.parse
import urllib.robotparser

from corral_common.errors import AppError

from corral_websearch.net.fetcher import SafeFetcher
from corral_websearch.net.policy import FetchRefused

AGENT = "corral"


def origin_of(url: str) -> str:
    """``https://Example.com/a?b`` → ``https://example.com``."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class RobotsCache:
    """The parsed robots.txt of each site this crawl visits (missing: all allowed; unreachable: none)."""

    def __init__(self, fetcher: SafeFetcher, agent: str = AGENT) -> None:
        self.fetcher = fetcher
        self.agent = agent
        self._parsers: dict[str, urllib.robotparser.RobotFileParser] = {}

    async def parser(self, url: str) -> urllib.robotparser.RobotFileParser:
        """The rules for the site of ``url``, fetched on first use."""
        origin = origin_of(url)
        if origin not in self._parsers:
            self._parsers[origin] = await self._load(origin)
        return self._parsers[origin]

    async def _load(self, origin: str) -> urllib.robotparser.RobotFileParser:
        parser = urllib.robotparser.RobotFileParser(f"{origin}/robots.txt")
        try:
            fetched = await self.fetcher.fetch(f"{origin}/robots.txt")
        except FetchRefused:
            raise
        except AppError:
            parser.disallow_all = True  # unreachable robots.txt: assume the site wants no crawling now
            return parser
        if fetched.status in (401, 403) or fetched.status >= 500:
            parser.disallow_all = True
        elif fetched.status >= 400:
            parser.allow_all = True
        else:
            parser.parse(fetched.body.decode("utf-8", errors="replace").splitlines())
        return parser

    async def allowed(self, url: str) -> bool:
        """May the crawler fetch ``url``?"""
        return (await self.parser(url)).can_fetch(self.agent, url)

    async def delay(self, url: str) -> float:
        """The site's Crawl-delay for us, in seconds (0 when none)."""
        value = (await self.parser(url)).crawl_delay(self.agent)
        return float(value or 0)

    async def sitemaps(self, url: str) -> list[str]:
        """Sitemap URLs the site's robots.txt lists."""
        return list((await self.parser(url)).site_maps() or [])
