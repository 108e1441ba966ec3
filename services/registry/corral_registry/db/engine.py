"""Engine, sessions and migrations: SQLite for the embedded and standalone defaults, PostgreSQL distributed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from corral_common import db as shared_db
from corral_common.db import make_engine, sessions

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "registry_alembic_version"

__all__ = ["Database", "MIGRATIONS", "VERSION_TABLE", "make_engine", "migrate"]


def migrate(engine: Engine) -> None:
    """Bring the registry schema to the newest Alembic revision."""
    shared_db.migrate(engine, MIGRATIONS, lock_name=VERSION_TABLE)


class Database:
    """An engine plus a session factory; ``session()`` is one transaction."""

    def __init__(self, url: str, run_migrations: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if run_migrations:
            migrate(self.engine)
        self._sessions = sessions(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()
