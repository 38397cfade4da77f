"""Opening the results database: SQLite (WAL, busy timeout, foreign keys) or any SQLAlchemy URL (PostgreSQL).

Opening applies pending migrations, so a database written by an older orch opens in a newer one. Two
processes opening (and migrating) the same new database at once are serialized by a lock: SQLite's
BEGIN IMMEDIATE, PostgreSQL's advisory lock.

SQLite transactions: pysqlite's own implicit BEGIN is switched off and SQLAlchemy's begin emits ours, so
DDL is transactional too, and `writer(engine)` begins with BEGIN IMMEDIATE: a writer takes the write lock
up front and waits for it (busy timeout) instead of failing when another process wrote in between.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DatabaseError as SQLAlchemyDatabaseError
from sqlalchemy.exc import OperationalError

from orchestrator.errors import DatabaseError
from orchestrator.results.samples import register_sqlite_functions

if TYPE_CHECKING:
    from alembic.config import Config

DEFAULT_DB = "results.db"
MIGRATIONS = Path(__file__).parent / "migrations"
ORCH_TABLES = {"sweeps", "devices", "variants", "results"}
BUSY_TIMEOUT_MS = 30_000
# The newest migration in migrations/versions (tests check that alembic agrees). Opening a database
# already at this revision needs no alembic at all, which keeps every command's start-up short.
HEAD_REVISION = "0007"
MIGRATION_LOCK_ID = 0x6F726368  # "orch": PostgreSQL advisory lock held while migrating
P = ParamSpec("P")
T = TypeVar("T")


def database_url(db: str | None = None) -> str:
    """A SQLAlchemy URL from a --db value, ORCH_DB, or the default ./results.db: a file path, or a sqlite:// or
    postgresql:// URL (anything else is a DatabaseError saying so)."""
    value = db or os.environ.get("ORCH_DB") or DEFAULT_DB
    if "://" not in value:
        return f"sqlite:///{value}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(driver_url(value)).drivername
    except ArgumentError:
        backend = ""
    if backend not in ("sqlite", "postgresql+psycopg"):  # the drivers orch installs
        raise DatabaseError(f"--db {shown_url(value) if backend else value.split('://')[0] + '://...'}: orch keeps "
                            "results in a SQLite file (a path) or PostgreSQL (postgresql://user@host/database)")
    return value


def driver_url(url: str) -> str:
    """postgresql:// (and postgres://) mean psycopg 3, the driver orch installs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's begin event below emits BEGIN instead
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    register_sqlite_functions(dbapi_connection)


def _sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str) -> Engine:
    engine = create_engine(driver_url(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def writer(engine: Engine) -> Engine:
    """The same engine, whose transactions take SQLite's write lock at BEGIN (no effect elsewhere)."""
    return engine.execution_options(sqlite_begin="IMMEDIATE")


def alembic_config(engine_connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = engine_connection
    return config


def open_database(db: str | None = None) -> Engine:
    """An engine on the results database, created or upgraded to the current schema."""
    url = database_url(db)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if path.parent and not path.parent.exists():
            raise DatabaseError(f"{path}: folder {path.parent} does not exist")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            current = current_revision(connection)
        if current != HEAD_REVISION:
            _migrate(engine, url)
    except (SQLAlchemyDatabaseError, OperationalError) as exc:
        engine.dispose()
        raise DatabaseError(f"{shown_url(url)}: cannot open results database: {exc.orig}") from None
    return engine


def _migrate(engine: Engine, url: str) -> None:
    """Upgrade to HEAD_REVISION under a lock, so that concurrent openers migrate once."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    with writer(engine).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        current = current_revision(connection)
        if current == HEAD_REVISION:
            return  # another process migrated while we waited for the lock
        tables = set(inspect(connection).get_table_names())
        if current is None and tables and not ORCH_TABLES & tables:
            raise DatabaseError(f"{shown_url(url)}: not an orch results database "
                                f"(it has tables {', '.join(sorted(tables)[:5])})")
        config = alembic_config(connection)
        if current is not None:
            try:
                ScriptDirectory.from_config(config).get_revision(current)
            except CommandError:
                raise DatabaseError(f"{shown_url(url)}: written by a newer orch (schema revision {current}; "
                                    f"this orch knows up to {HEAD_REVISION}); upgrade orch to read it") from None
        command.upgrade(config, "head")


def translate_errors(function: Callable[P, T]) -> Callable[P, T]:
    """Turn a damaged database's errors ("database disk image is malformed", "disk I/O error", a table gone)
    met by `function` into a DatabaseError naming the database. Its first argument is an Engine, or an object
    with an `engine` attribute."""
    @functools.wraps(function)
    def translated(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except SQLAlchemyDatabaseError as exc:
            if type(exc.orig).__name__ not in ("DatabaseError", "OperationalError"):
                raise  # integrity and programming errors are bugs, not a damaged file
            engine = args[0] if isinstance(args[0], Engine) else getattr(args[0], "engine", None)
            where = shown_url(str(engine.url)) if isinstance(engine, Engine) else "results database"
            raise DatabaseError(f"{where}: {' '.join(str(exc.orig).split())}") from None
    return translated


def current_revision(connection: Connection) -> Any:
    """The migration a database is at (None for a new or foreign one)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def shown_url(url: str) -> str:
    """A database URL as shown in messages: the path of a SQLite file, the URL without password otherwise."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
