"""Registry metadata through SQLAlchemy, migrated with Alembic."""

from corral_registry.db.engine import Database, make_engine, migrate

__all__ = ["Database", "make_engine", "migrate"]
