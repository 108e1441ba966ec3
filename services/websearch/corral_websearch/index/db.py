"""The index's tables, engine and migrations (Alembic, run at start-up under a lock).

SQLite (embedded default) and PostgreSQL (distributed mode) share one table; each dialect adds
its own full-text machinery in the migration: an FTS5 table kept in step by triggers, or a
generated, weighted tsvector column with a GIN index.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Column, Engine, Float, Integer, MetaData, String, Table, Text, create_engine, event, text
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "websearch_alembic_version"  # its own, so the database can be shared with other services

metadata = MetaData()
pages = Table(
    "websearch_pages", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("source", String(16), nullable=False),
    Column("indexed_at", Float, nullable=False),
)


def create_index_engine(url: str) -> Engine:
    """An engine for the index database; SQLite gets WAL and a busy timeout (API and worker share it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One migrator at a time: a file lock beside a SQLite file (Postgres locks in the transaction)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def migrate(engine: Engine) -> None:
    """Bring the index schema to the newest revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _migration_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('corral_websearch_migrate'))"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
