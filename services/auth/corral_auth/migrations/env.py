"""Alembic environment: migrations run on the connection handed over by ``db.engine.migrate``."""

from __future__ import annotations

from alembic import context

from corral_auth.db.engine import VERSION_TABLE
from corral_auth.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through corral_auth.db.engine.migrate")
context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
