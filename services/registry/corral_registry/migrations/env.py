"""Alembic environment: runs on the connection the caller passes (``corral_registry.db.migrate``)."""

from __future__ import annotations

from alembic import context

from corral_registry.db.engine import VERSION_TABLE
from corral_registry.db.models import Base

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from corral_registry.db.engine import make_engine

        url = config.get_main_option("sqlalchemy.url")
        with make_engine(url).begin() as conn:
            _configure(conn)
        return
    _configure(connection)


def _configure(connection) -> None:  # noqa: ANN001 - alembic passes a Connection
    context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run()
