"""SearchIndex over SQLAlchemy: BM25 through SQLite FTS5, or ranked Postgres full-text search."""

from __future__ import annotations

import time

from sqlalchemy import Engine, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from corral_common.db import make_engine

from corral_websearch.index import Document, Hit
from corral_websearch.index.db import migrate, pages
from corral_websearch.index.snippets import query_terms

# bm25() weights per FTS5 column: a match in the title counts four times a match in the body.
_SQLITE_SEARCH = text(
    "SELECT p.url, p.title, p.content, bm25(websearch_pages_fts, 4.0, 1.0) AS score "
    "FROM websearch_pages_fts JOIN websearch_pages p ON p.id = websearch_pages_fts.rowid "
    "WHERE websearch_pages_fts MATCH :query ORDER BY score LIMIT :limit")
_POSTGRES_SEARCH = text(
    "SELECT url, title, content, ts_rank(search, q, 1) AS score "
    "FROM websearch_pages, to_tsquery('english', :query) AS q "
    "WHERE search @@ q ORDER BY score DESC, id LIMIT :limit")


class SqlIndex:
    """The built-in index in SQLite (embedded default) or PostgreSQL (CORRAL_DATABASE_URL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"the search index needs SQLite or PostgreSQL, not {self.dialect}")

    @classmethod
    def open(cls, url: str) -> "SqlIndex":
        """Connect and migrate."""
        engine = make_engine(url)
        migrate(engine)
        return cls(engine)

    def add(self, doc: Document) -> None:
        values = {"url": doc.url, "title": doc.title, "content": doc.content, "source": doc.source,
                  "indexed_at": time.time()}
        insert = (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(pages).values(**values)
        update = {k: insert.excluded[k] for k in ("title", "content", "source", "indexed_at")}
        with self.engine.begin() as connection:
            connection.execute(insert.on_conflict_do_update(index_elements=["url"], set_=update))

    def search(self, query: str, limit: int) -> list[Hit]:
        terms = query_terms(query)
        if not terms:
            return []
        if self.dialect == "sqlite":
            statement, expression = _SQLITE_SEARCH, " OR ".join(f'"{t}"' for t in terms)
        else:
            statement, expression = _POSTGRES_SEARCH, " | ".join(terms)
        with self.engine.connect() as connection:
            rows = connection.execute(statement, {"query": expression, "limit": limit}).all()
        return [Hit(r.url, r.title, r.content, float(r.score)) for r in rows]

    def generation(self) -> str:
        with self.engine.connect() as connection:
            count, newest = connection.execute(select(func.count(), func.max(pages.c.indexed_at))).one()
        return f"{count}:{newest}"

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(pages)).scalar_one())

    def close(self) -> None:
        self.engine.dispose()
