"""Opening the results database: SQLite (WAL, busy timeout, foreign keys) or any SQLAlchemy URL.

Opening applies pending migrations, so a database written by an older orch
opens in a newer one.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import DatabaseError as SQLAlchemyDatabaseError
from sqlalchemy.exc import OperationalError

from orchestrator.errors import DatabaseError

DEFAULT_DB = "results.db"
MIGRATIONS = Path(__file__).parent / "migrations"
ORCH_TABLES = {"sweeps", "devices", "variants", "results"}
BUSY_TIMEOUT_MS = 30_000


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


def alembic_config(engine_connection=None) -> Config:
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
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            current = MigrationContext.configure(connection).get_current_revision()
            if current != head:
                tables = set(inspect(connection).get_table_names())
                if current is None and tables and not ORCH_TABLES & tables:
                    raise DatabaseError(f"{_shown(url)}: not an orch results database "
                                        f"(it has tables {', '.join(sorted(tables)[:5])})")
                command.upgrade(alembic_config(connection), "head")
    except (SQLAlchemyDatabaseError, OperationalError) as exc:
        raise DatabaseError(f"{_shown(url)}: cannot open results database: {exc.orig}") from None
    return engine


def _shown(url: str) -> str:
    return url.removeprefix("sqlite:///")
