"""Engines and migrations: SQLite under CORRAL_HOME (embedded) or CORRAL_DATABASE_URL (distributed)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from corral_common import db as shared_db
from corral_common.db import make_engine, sessions

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "auth_alembic_version"

__all__ = ["MIGRATIONS", "VERSION_TABLE", "make_engine", "migrate", "sessions"]


def migrate(engine: Engine) -> None:
    """Bring the auth schema to the newest Alembic revision."""
    shared_db.migrate(engine, MIGRATIONS, lock_name=VERSION_TABLE)
