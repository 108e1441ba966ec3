"""web_search providers behind one interface, chosen by CORRAL_SEARCH_PROVIDER."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SearchResult:
    """One result as ollama.com's web_search returns it."""

    title: str
    url: str
    content: str

    def wire(self) -> dict[str, str]:
        """The ``{"title", "url", "content"}`` object."""
        return {"title": self.title, "url": self.url, "content": self.content}


class SearchProvider(Protocol):
    """Answers a query with up to ``max_results`` results, best first."""

    name: str

    async def search(self, query: str, max_results: int) -> list[SearchResult]:
        """The results; raises a typed AppError when the provider cannot answer."""
        ...

    async def cache_key(self) -> str:
        """What besides the query decides the answer (the index's generation, or nothing)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
