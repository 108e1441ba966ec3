"""SQLAlchemy engines and Alembic migrations, the same way for every service that owns tables.

SQLite (the embedded default) is shared by a service, its worker and the command line, so every
connection gets WAL, a 30 s busy timeout and foreign keys. PostgreSQL (distributed mode) gets
pre-ping, and migrations there are serialised by a transaction-scoped advisory lock, which the
server releases on commit, rollback or a dropped connection, so a crashed migrator never holds it.
"""

from __future__ import annotations

import ast
import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=30000", "PRAGMA foreign_keys=ON")
_SQLITE_CONNECT_ARGS = {"timeout": 30, "check_same_thread": False}


def normalise_url(url: str) -> str:
    """Use psycopg 3 for ``postgres://`` and ``postgresql://`` URLs."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI types
    """Apply SQLITE_PRAGMAS to a new SQLite connection."""
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _sqlite_file(engine: Engine) -> str | None:
    """The database file of a SQLite engine, or None for in-memory databases and other dialects."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    return database if database and database != ":memory:" else None


def make_engine(url: str) -> Engine:
    """An engine for a database URL; SQLite files get their directory and SQLITE_PRAGMAS on every connection."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args=dict(_SQLITE_CONNECT_ARGS))
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def sessions(engine: Engine) -> sessionmaker[Session]:
    """The session factory services use (``with factory.begin() as db``)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """One SQLite migrator at a time: an exclusive lock on ``<database>.migrate.lock`` beside the file."""
    database = _sqlite_file(engine)
    if database is None:
        yield
        return
    with open(f"{database}.migrate.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def advisory_xact_lock(connection: Connection, lock_name: str) -> None:
    """On PostgreSQL, wait for the transaction-scoped advisory lock named ``lock_name`` (a no-op elsewhere)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": lock_name})


# One migrating thread per process: Alembic's script loading is not thread-safe (and its parsing hit the
# interpreter bug corral_common.astguard works around). The file and advisory locks below order processes; this
# orders threads.
_IN_PROCESS = threading.Lock()


def migrate(engine: Engine, alembic_dir: Path, lock_name: str) -> None:
    """Bring the schema to the newest revision in ``alembic_dir``; one migrator per ``lock_name`` (the name of the
    service's version table) at a time."""
    with _IN_PROCESS:
        _migrate(engine, alembic_dir, lock_name)


def _migrate(engine: Engine, alembic_dir: Path, lock_name: str) -> None:
    if at_head(engine, alembic_dir, lock_name):  # every start but the first: Alembic (~15 MiB) stays unloaded
        return
    # Imported here: services that only open an engine (and the CLI) need not load Alembic.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(alembic_dir))
    with _file_lock(engine), engine.begin() as connection:
        advisory_xact_lock(connection, lock_name)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def head_revisions(alembic_dir: Path) -> set[str]:
    """The revisions no other revision in ``alembic_dir/versions`` builds on, read from the scripts' own
    ``revision`` and ``down_revision`` assignments (what Alembic's script directory reads them from)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (alembic_dir / "versions").glob("*.py"):
        values = _assignments(ast.parse(script.read_text(), str(script)), ("revision", "down_revision"))
        revisions.update(values.get("revision", ()))
        parents.update(values.get("down_revision", ()))
    return revisions - parents


def _assignments(tree: ast.Module, names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Module-level ``name = "rev"`` (or a tuple of revisions, or None) for each of ``names``."""
    found: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else \
            node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and target.id in names and node.value is not None:
            value = ast.literal_eval(node.value)
            found[target.id] = (value,) if isinstance(value, str) else tuple(value or ())
    return found


def at_head(engine: Engine, alembic_dir: Path, version_table: str) -> bool:
    """Whether the database already holds exactly the newest revisions (False when it cannot tell)."""
    heads = head_revisions(alembic_dir)
    try:
        with engine.connect() as connection:
            current = {row[0] for row in connection.execute(text(f"SELECT version_num FROM {version_table}"))}
    except DBAPIError:  # no version table yet: a new database
        return False
    return bool(heads) and current == heads
