"""make_engine and migrate: one PRAGMA set on SQLite, one migrator at a time on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError

from corral_common import db as db_module
from corral_common.db import make_engine, migrate, normalise_url, sessions
from corral_common.testing.threads import run_together

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
LOCK = "corral_common_test_migrate"

_ENV = '''
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table="common_test_alembic_version")
with context.begin_transaction():
    context.run_migrations()
'''
_REVISION = '''
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table("things", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("parent", sa.Integer, sa.ForeignKey("things.id")))
'''


def _postgres_or_skip() -> Engine:
    """An engine on the local Postgres, or a skip where none is running."""
    engine = make_engine(POSTGRES)
    try:
        engine.connect().close()
    except OperationalError:
        engine.dispose()
        pytest.skip("Postgres is not running on 127.0.0.1:5432")
    return engine


def _run(engine: Engine, statement: str) -> None:
    """One statement in its own transaction."""
    with engine.begin() as db:
        db.execute(text(statement))


@pytest.fixture
def alembic_dir(tmp_path: Path) -> Path:
    """A one-revision Alembic environment that creates ``things`` (with a self-referencing foreign key)."""
    root = tmp_path / "migrations"
    (root / "versions").mkdir(parents=True)
    (root / "env.py").write_text(_ENV)
    (root / "versions" / "0001_things.py").write_text(_REVISION)
    return root


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway schema on the local Postgres, so runs never see each other's tables."""
    schema, admin = f"common_test_{secrets.token_hex(4)}", _postgres_or_skip()
    _run(admin, f'CREATE SCHEMA "{schema}"')
    yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    _run(admin, f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


@pytest.mark.parametrize("url, expected", [
    ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
    ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
    ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
    ("sqlite:///x.db", "sqlite:///x.db"),
])
def test_normalise_url(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


def test_sqlite_gets_its_directory_and_every_pragma(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'x.db'}")
    with engine.connect() as db:
        assert db.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert db.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_in_memory_sqlite_works(alembic_dir: Path) -> None:
    engine = make_engine("sqlite://")
    migrate(engine, alembic_dir, LOCK)
    assert "things" in inspect(engine).get_table_names()
    engine.dispose()


def test_sqlite_migrates_once_and_enforces_foreign_keys(tmp_path: Path, alembic_dir: Path) -> None:
    database = tmp_path / "x.db"
    engine = make_engine(f"sqlite:///{database}")
    migrate(engine, alembic_dir, LOCK)
    migrate(engine, alembic_dir, LOCK)  # an up-to-date schema: a no-op
    assert Path(f"{database}.migrate.lock").exists()
    factory = sessions(engine)
    with factory.begin() as db:
        db.execute(text("INSERT INTO things (id) VALUES (1)"))
    with pytest.raises(IntegrityError), factory.begin() as db:
        db.execute(text("INSERT INTO things (id, parent) VALUES (2, 99)"))
    with engine.connect() as db:
        assert db.execute(text("SELECT version_num FROM common_test_alembic_version")).scalars().all() == ["0001"]
    engine.dispose()


def test_concurrent_sqlite_migrators_both_succeed(tmp_path: Path, alembic_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    errors = _migrate_concurrently([make_engine(url) for _ in range(4)], alembic_dir)
    assert errors == []


def test_threads_of_one_process_never_read_migration_scripts_at_once(
        tmp_path: Path, alembic_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPython 3.11.7 can raise "AST constructor recursion depth mismatch" when two threads parse at once,
    so migrators in one process take turns even on databases that share no lock."""
    inside, most = [0], [0]
    guard = threading.Lock()
    real = db_module.head_revisions

    def counting(directory: Path) -> set[str]:
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        threading.Event().wait(0.05)
        try:
            return real(directory)
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(db_module, "head_revisions", counting)
    engines = [make_engine(f"sqlite:///{tmp_path / f'{n}.db'}") for n in range(4)]
    assert _migrate_concurrently(engines, alembic_dir) == []
    assert most[0] == 1


def test_postgres_migrates_once(pg_url: str, alembic_dir: Path) -> None:
    engine = make_engine(pg_url)
    assert engine.dialect.driver == "psycopg"
    assert _migrate_concurrently([make_engine(pg_url) for _ in range(4)], alembic_dir) == []
    migrate(engine, alembic_dir, LOCK)
    with engine.connect() as db:
        assert db.execute(text("SELECT version_num FROM common_test_alembic_version")).scalars().all() == ["0001"]
    engine.dispose()


def test_postgres_migrator_waits_for_the_advisory_lock(pg_url: str, alembic_dir: Path) -> None:
    holder = create_engine(normalise_url(POSTGRES))
    engine = make_engine(pg_url)
    with holder.connect() as held:
        held.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": LOCK})
        worker = threading.Thread(target=migrate, args=(engine, alembic_dir, LOCK))
        worker.start()
        _wait_for_lock_waiter(held)
        assert "things" not in inspect(engine).get_table_names()
        held.rollback()  # releases the transaction-scoped lock
    worker.join()
    assert "things" in inspect(engine).get_table_names()
    engine.dispose()
    holder.dispose()


def _wait_for_lock_waiter(held) -> None:  # noqa: ANN001 - a Connection inside a transaction
    """Poll pg_locks until another backend is queued on an advisory lock."""
    probe = create_engine(normalise_url(POSTGRES))
    query = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    try:
        for _ in range(600):
            with probe.connect() as db:
                if db.execute(query).scalar():
                    return
            threading.Event().wait(0.05)
        raise AssertionError("the migrator never waited for the advisory lock")
    finally:
        probe.dispose()


def _migrate_concurrently(engines: list, alembic_dir: Path) -> list[BaseException]:
    """Run migrate on every engine at once; the exceptions raised, if any."""
    def run(engine) -> None:  # noqa: ANN001 - an Engine
        try:
            migrate(engine, alembic_dir, LOCK)
        finally:
            engine.dispose()

    return run_together(run, [(e,) for e in engines])


_SECOND = '''
import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"


def upgrade() -> None:
    op.add_column("things", sa.Column("name", sa.String))
'''
# One start of a service: migrate, then say whether Alembic was loaded to do it.
_START = ("import sys; from pathlib import Path; from corral_common.db import make_engine, migrate; "
          "migrate(make_engine(sys.argv[1]), Path(sys.argv[2]), 'x_version'); print('alembic' in sys.modules)")


def test_a_database_at_the_newest_revision_starts_without_loading_alembic(tmp_path: Path, alembic_dir: Path) -> None:
    (alembic_dir / "env.py").write_text(_ENV.replace("common_test_alembic_version", "x_version"))
    url = f"sqlite:///{tmp_path / 'x.db'}"

    def start() -> str:
        return subprocess.run([sys.executable, "-c", _START, url, str(alembic_dir)], capture_output=True, text=True,
                              check=True, timeout=120).stdout.strip()

    assert [start(), start()] == ["True", "False"]  # the first start migrates; the next finds nothing to do
    (alembic_dir / "versions" / "0002_names.py").write_text(_SECOND)
    assert [start(), start()] == ["True", "False"]  # a new revision (annotated, as Alembic writes them) runs once
    engine = make_engine(url)
    with engine.connect() as db:
        assert db.execute(text("SELECT version_num FROM x_version")).scalars().all() == ["0002"]
        assert "name" in {c["name"] for c in inspect(engine).get_columns("things")}
    engine.dispose()
