"""The index's tables and migrations (Alembic through corral_common.db, run at start-up under a lock).

SQLite (embedded default) and PostgreSQL (distributed mode) share one table; each dialect adds
its own full-text machinery in the migration: an FTS5 table kept in step by triggers, or a
generated, weighted tsvector column with a GIN index.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Engine, Float, Integer, MetaData, String, Table, Text

from corral_common import db as shared_db

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


def migrate(engine: Engine) -> None:
    """Bring the index schema to the newest revision."""
    shared_db.migrate(engine, MIGRATIONS, lock_name=VERSION_TABLE)
