"""Read-only access for ad-hoc SQL (`orch query`, `orch export`): a query can never change or delete results.

SQLite: the file is opened with `mode=ro` (the library refuses every write, whatever the SQL says), with
PRAGMA query_only on top, and ATTACH refused (it could create files). PostgreSQL: every transaction is
READ ONLY (default_transaction_read_only, then SET TRANSACTION READ ONLY and a first query, after which no
statement can switch it back to read-write), and the SQL runs as one prepared statement, so it cannot
smuggle in a COMMIT and a second statement. For a shared lab, a database role with SELECT rights only is
the belt to these braces.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DatabaseError as SQLAlchemyDatabaseError
from sqlalchemy.exc import OperationalError

from orchestrator.errors import DatabaseError
from orchestrator.results.db import BUSY_TIMEOUT_MS, database_url, driver_url, open_database
from orchestrator.results.samples import register_sqlite_functions


@dataclass
class QueryResult:
    """Rows of one query: column names and one tuple per row, values as the driver returns them."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def _deny_attach(action: int, *_args: Any) -> int:
    return sqlite3.SQLITE_DENY if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH) else sqlite3.SQLITE_OK


def _sqlite_readonly_connection(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA query_only=ON")
    register_sqlite_functions(connection)
    connection.set_authorizer(_deny_attach)
    return connection


def open_readonly(db: str | None = None) -> Engine:
    """A read-only engine on an existing results database (first brought to the current schema)."""
    url = database_url(db)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise DatabaseError(f"{path}: no such results database")
        open_database(db).dispose()  # validates the file, and migrates a database written by an older orch
        return create_engine("sqlite://", creator=lambda: _sqlite_readonly_connection(path))
    open_database(db).dispose()
    engine = create_engine(driver_url(url), connect_args={"options": "-c default_transaction_read_only=on"})

    @event.listens_for(engine, "begin")
    def _read_only_transaction(connection: Any) -> None:
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        connection.exec_driver_sql("SELECT 1")  # takes the snapshot: from here on nothing can make it read-write

    return engine


@contextmanager
def _cursor(engine: Engine) -> Iterator[Any]:
    with engine.connect() as connection, connection.begin():
        dbapi = connection.connection.driver_connection
        assert dbapi is not None
        cursor = dbapi.cursor()
        try:
            yield cursor
        finally:
            cursor.close()


def _execute(cursor: Any, sql: str) -> None:
    if "psycopg" in type(cursor).__module__:
        cursor.execute(sql, prepare=True)  # a prepared statement is exactly one statement
    else:
        cursor.execute(sql)  # sqlite3 refuses more than one statement by itself


def _driver_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a bad query raises: the drivers' own, and SQLAlchemy's wrappers of them."""
    errors: list[type[BaseException]] = [sqlite3.Error, SQLAlchemyDatabaseError, OperationalError]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # SQLite-only installs
        pass
    return tuple(errors)


def run_query(engine: Engine, sql: str, max_rows: int | None = None) -> QueryResult:
    """Run one SQL statement read-only and return its rows (at most max_rows); bad SQL is a DatabaseError."""
    _refuse_empty(sql)
    try:
        with _cursor(engine) as cursor:
            _execute(cursor, sql)
            rows = cursor.fetchall() if max_rows is None else cursor.fetchmany(max_rows)
            return QueryResult([d[0] for d in cursor.description or []], [tuple(row) for row in rows])
    except _driver_errors() as exc:
        raise _query_error(exc) from None


def _refuse_empty(sql: str) -> None:
    if not sql.strip():
        raise DatabaseError("the query is empty")


def iter_query(engine: Engine, sql: str, chunk_rows: int = 50_000) -> Iterator[QueryResult]:
    """Run one SQL statement read-only and yield its rows in chunks (the first chunk may be empty)."""
    _refuse_empty(sql)
    try:
        with _cursor(engine) as cursor:
            _execute(cursor, sql)
            columns = [d[0] for d in cursor.description or []]
            chunk = cursor.fetchmany(chunk_rows)
            yield QueryResult(columns, [tuple(row) for row in chunk])
            while chunk := cursor.fetchmany(chunk_rows):
                yield QueryResult(columns, [tuple(row) for row in chunk])
    except _driver_errors() as exc:
        raise _query_error(exc) from None


def _query_error(exc: BaseException) -> DatabaseError:
    if isinstance(exc, SQLAlchemyDatabaseError | OperationalError) and exc.orig is not None:
        exc = exc.orig
    message = " ".join(str(exc).split())
    if "readonly" in message or "read-only" in message or "not authorized" in message:
        message += " (orch query is read-only: it never changes the database)"
    return DatabaseError(f"query failed: {message}")
