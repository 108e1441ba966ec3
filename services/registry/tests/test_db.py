"""Alembic migrations match the models, on SQLite and on the local PostgreSQL, and run concurrently."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from corral_common.testing.backends import port_open, postgres_schema
from corral_common.testing.threads import run_together
from corral_registry.db import Database, make_engine, migrate
from corral_registry.db import queries as q
from corral_registry.db.engine import VERSION_TABLE
from corral_registry.db.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    if not port_open("127.0.0.1", 5432):
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    with postgres_schema() as pg_url:
        yield pg_url


def test_migrations_create_exactly_the_models(url: str) -> None:
    engine = make_engine(url)
    migrate(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, Base.metadata) == []
        assert context.get_current_revision() == "0001"
    engine.dispose()


def test_migrating_twice_and_from_several_threads_is_harmless(url: str) -> None:
    assert run_together(lambda: Database(url).close(), [()] * 3) == []


def test_tables_share_a_database_without_clashing(url: str) -> None:
    db = Database(url)
    names = set(sqlalchemy.inspect(db.engine).get_table_names())
    assert names == {"registry_repositories", "registry_manifests", "registry_tags", "registry_uploads",
                     "registry_jobs", VERSION_TABLE}
    with db.session() as session:
        q.set_tag(session, "team/m", "v1", "sha256:" + "a" * 64)
        q.record_manifest(session, "team/m", "sha256:" + "a" * 64, "x", 1)
    with db.session() as session:
        assert q.tags(session, "team/m") == ["v1"] and q.repositories(session) == ["team/m"]
        q.create_job(session, "j1", "pull", "host/ns/m:t", "task")
    with db.session() as session:
        assert q.active_job(session, "pull", "host/ns/m:t").task_id == "task"
        q.update_job(session, "j1", state="succeeded")
    with db.session() as session:
        assert q.active_job(session, "pull", "host/ns/m:t") is None
    db.close()


def test_migrate_databases_leaves_the_store_database_current(tmp_path: Path) -> None:
    from corral_common.db import at_head
    from corral_registry.db.engine import MIGRATIONS
    from corral_registry.main import migrate_databases
    from corral_registry.settings import RegistrySettings

    settings = RegistrySettings.from_env({"CORRAL_HOME": str(tmp_path), "OLLAMA_MODELS": str(tmp_path / "models")})
    migrate_databases(settings)
    engine = make_engine(settings.service_database_url())
    try:
        assert at_head(engine, MIGRATIONS, VERSION_TABLE)  # the service's own start then has nothing to do
    finally:
        engine.dispose()
