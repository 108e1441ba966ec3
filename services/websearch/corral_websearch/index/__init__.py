"""The built-in search index: pages stored with their text and ranked by full-text search."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Document:
    """A page to index: where it came from, its title and its Markdown text."""

    url: str
    title: str
    content: str
    source: str = "index"  # index (added by hand), crawl, or fetch (retrieved by web_fetch)


@dataclass(frozen=True)
class Hit:
    """One ranked page: its title, URL and full stored text (the snippet is chosen later)."""

    url: str
    title: str
    content: str
    score: float


class SearchIndex(Protocol):
    """Stores pages and ranks them for a query (SQLite FTS5 BM25, or Postgres full-text search)."""

    def add(self, doc: Document) -> None:
        """Insert or replace the page at ``doc.url``."""
        ...

    def search(self, query: str, limit: int) -> list[Hit]:
        """The best ``limit`` pages for ``query``, best first."""
        ...

    def generation(self) -> str:
        """A value that changes whenever the index does (part of the search cache key)."""
        ...

    def count(self) -> int:
        """How many pages are stored."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
