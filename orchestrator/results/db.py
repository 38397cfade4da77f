"""Opening the results database: SQLite (WAL, busy timeout, foreign keys) or any SQLAlchemy URL.

Opening applies pending migrations, so a database written by an older orch
opens in a newer one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DatabaseError as SQLAlchemyDatabaseError
from sqlalchemy.exc import OperationalError

from orchestrator.errors import DatabaseError

if TYPE_CHECKING:
    from alembic.config import Config

DEFAULT_DB = "results.db"
MIGRATIONS = Path(__file__).parent / "migrations"
ORCH_TABLES = {"sweeps", "devices", "variants", "results"}
BUSY_TIMEOUT_MS = 30_000
# The newest migration in migrations/versions (tests check that alembic agrees). Opening a database
# already at this revision needs no alembic at all, which keeps every command's start-up short.
HEAD_REVISION = "0001"


def database_url(db: str | None = None) -> str:
    """A SQLAlchemy URL from a --db value, ORCH_DB, or the default ./results.db."""
    value = db or os.environ.get("ORCH_DB") or DEFAULT_DB
    return value if "://" in value else f"sqlite:///{value}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


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
        with engine.begin() as connection:
            current = current_revision(connection)
            if current != HEAD_REVISION:
                tables = set(inspect(connection).get_table_names())
                if current is None and tables and not ORCH_TABLES & tables:
                    raise DatabaseError(f"{_shown(url)}: not an orch results database "
                                        f"(it has tables {', '.join(sorted(tables)[:5])})")
                from alembic import command

                command.upgrade(alembic_config(connection), "head")
    except (SQLAlchemyDatabaseError, OperationalError) as exc:
        raise DatabaseError(f"{_shown(url)}: cannot open results database: {exc.orig}") from None
    return engine


def current_revision(connection: Connection) -> Any:
    """The migration a database is at (None for a new or foreign one)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _shown(url: str) -> str:
    return url.removeprefix("sqlite:///")
