"""Alembic environment of the websearch index; the connection is handed over by ``index.db.migrate``."""

from alembic import context

from corral_websearch.index.db import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
