"""One conformance suite for the SearchIndex seam: SQLite FTS5 (embedded) and PostgreSQL (distributed).

PostgreSQL runs when one answers at CORRAL_TEST_POSTGRES_URL (default: the local server CI starts);
each run gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import OperationalError

from corral_websearch.index import Document
from corral_websearch.index.snippets import best_passage, query_terms
from corral_websearch.index.store import SqlIndex

POSTGRES = os.environ.get("CORRAL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

PAGES = [
    Document("http://t/bread", "Baking sourdough bread",
             "A sourdough starter is wild yeast. Feed the starter flour and water.\n\n"
             "Bake the loaf hot, and let it cool before slicing."),
    Document("http://t/alpacas", "Alpacas of the Andes",
             "Alpacas are camelids kept for their fleece.\n\nThey hum when they are curious or worried."),
    Document("http://t/rust", "The Rust borrow checker",
             "Ownership rules: each value has one owner. The borrow checker rejects dangling references."),
    Document("http://t/mention", "Kitchen notes",
             "Someone once mentioned bread in passing, among many other unrelated kitchen topics like knives, "
             "pans, pots, spoons, ladles, whisks, graters, peelers, sieves and cutting boards."),
]


def _postgres_database() -> Iterator[str]:
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            name = f"corral_websearch_test_{uuid.uuid4().hex[:12]}"
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES}: {exc.orig}")
    try:
        yield POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlIndex]:
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'index.sqlite'}"])
    else:
        urls = _postgres_database()
    url = next(urls)
    idx = SqlIndex.open(url)
    try:
        yield idx
    finally:
        idx.close()
        next(urls, None)


def _fill(index: SqlIndex) -> None:
    for doc in PAGES:
        index.add(doc)


def test_the_page_about_the_query_ranks_first(index: SqlIndex) -> None:
    _fill(index)
    assert index.search("sourdough starter", 5)[0].url == "http://t/bread"
    assert index.search("why do alpacas hum?", 5)[0].url == "http://t/alpacas"
    assert index.search("borrow checker ownership", 5)[0].url == "http://t/rust"
    assert [h.url for h in index.search("bread", 5)][:2] == ["http://t/bread", "http://t/mention"]


def test_limit_and_no_match(index: SqlIndex) -> None:
    _fill(index)
    assert len(index.search("the bread alpacas rust", 2)) == 2
    assert index.search("zeppelin", 5) == []
    assert index.search("?! ()", 5) == []


def test_query_syntax_is_never_interpreted(index: SqlIndex) -> None:
    _fill(index)
    for query in ('"unbalanced', "NEAR(bread yeast)", "bread AND OR NOT", "a:b | c & !d", "'; DROP TABLE x; --",
                  "title:bread*", "()"):
        index.search(query, 5)  # no syntax errors reach the caller
    assert index.count() == len(PAGES)


def test_re_adding_a_url_replaces_the_page(index: SqlIndex) -> None:
    _fill(index)
    before = index.generation()
    index.add(Document("http://t/rust", "Rust lifetimes", "Lifetimes annotate how long references live."))
    assert index.count() == len(PAGES)
    assert index.search("borrow checker", 5) == []
    assert index.search("lifetimes", 5)[0].title == "Rust lifetimes"
    assert index.generation() != before


def test_migrations_use_their_own_version_table(index: SqlIndex) -> None:
    tables = set(inspect(index.engine).get_table_names())
    assert {"websearch_pages", "websearch_alembic_version"} <= tables and "alembic_version" not in tables
    SqlIndex.open(str(index.engine.url.render_as_string(hide_password=False))).close()  # idempotent


def test_snippets_are_the_matching_passage() -> None:
    content = "Intro about nothing much.\n\nThe borrow checker rejects dangling references.\n\nOutro."
    assert best_passage(content, "dangling references", 60).startswith("The borrow checker")
    assert best_passage(content, "zzz", 30) == "Intro about nothing much."
    assert query_terms("Bread, bread; YEAST!") == ["bread", "yeast"]
