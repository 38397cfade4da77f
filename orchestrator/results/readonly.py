"""Read-only access for ad-hoc SQL (`orch query`, `orch export`): a query can never change or delete results,
never changes the database file, and never runs longer than its time limit.

SQLite: the file is opened with `mode=ro` (the library refuses every write, whatever the SQL says), with
PRAGMA query_only on top and ATTACH refused (it could create files); nothing else is done to it, so its journal
mode and its schema stay as they are (an older schema is read as it is). A progress handler stops the query at
its deadline or on Ctrl-C. PostgreSQL: every transaction is READ ONLY (default_transaction_read_only, then SET
TRANSACTION READ ONLY and a first query, after which no statement can switch it back to read-write), the SQL runs
as one prepared statement (no smuggled COMMIT and second statement), statement_timeout is set, and a role that
could write server files or run programs (COPY ... TO '/file', TO PROGRAM work even in a read-only transaction)
or a superuser is refused unless the user says that is meant.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import DatabaseError as SQLAlchemyDatabaseError
from sqlalchemy.exc import OperationalError

from orchestrator.errors import DatabaseError, Interrupted
from orchestrator.results.db import BUSY_TIMEOUT_MS, ORCH_TABLES, database_url, driver_url, shown_url
from orchestrator.results.samples import register_sqlite_functions

DEFAULT_TIMEOUT_S = 60.0
PROGRESS_STEPS = 1000  # SQLite virtual machine steps between two looks at the deadline and Ctrl-C
READ_ONLY_ROLE_SQL = (
    "CREATE ROLE orch_reader LOGIN PASSWORD '...'; GRANT CONNECT ON DATABASE {database} TO orch_reader; "
    "GRANT USAGE ON SCHEMA public TO orch_reader; GRANT SELECT ON ALL TABLES IN SCHEMA public TO orch_reader; "
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO orch_reader")


@dataclass
class QueryResult:
    """Rows of one query: column names and one tuple per row, values as the driver returns them."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass
class ReadOnly:
    """A read-only engine and the time limit of every query run on it."""

    engine: Engine
    timeout_s: float = DEFAULT_TIMEOUT_S


def _deny_attach(action: int, *_args: Any) -> int:
    return sqlite3.SQLITE_DENY if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH) else sqlite3.SQLITE_OK


def _sqlite_readonly_connection(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA query_only=ON")
    register_sqlite_functions(connection)
    connection.set_authorizer(_deny_attach)
    return connection


def open_readonly(db: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                  allow_privileged_role: bool = False) -> ReadOnly:
    """A read-only view of an existing orch results database, each query limited to timeout_s seconds."""
    if not timeout_s > 0:
        raise DatabaseError(f"--timeout {timeout_s}: a query needs a time limit above 0 seconds")
    url = database_url(db)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise DatabaseError(f"{path}: no such results database")
        engine = create_engine("sqlite://", creator=lambda: _sqlite_readonly_connection(path))
    else:  # database_url admits only SQLite and PostgreSQL
        engine = _postgres(url, timeout_s, allow_privileged_role)
    _check_orch_database(engine, url)
    return ReadOnly(engine, timeout_s)


def _postgres(url: str, timeout_s: float, allow_privileged_role: bool) -> Engine:
    options = f"-c default_transaction_read_only=on -c statement_timeout={int(timeout_s * 1000)}"
    engine = create_engine(driver_url(url), connect_args={"options": options})

    @event.listens_for(engine, "begin")
    def _read_only_transaction(connection: Any) -> None:
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        connection.exec_driver_sql("SELECT 1")  # takes the snapshot: from here on nothing can make it read-write

    if not allow_privileged_role:
        _refuse_privileged_role(engine, url)
    return engine


def _refuse_privileged_role(engine: Engine, url: str) -> None:
    """A role that can write files on the server or run programs there is refused, with the fix."""
    try:
        with engine.connect() as connection:
            row = connection.exec_driver_sql(
                "SELECT current_user, rolsuper, pg_has_role(current_user, 'pg_write_server_files', 'member'), "
                "pg_has_role(current_user, 'pg_execute_server_program', 'member'), current_database() "
                "FROM pg_roles WHERE rolname = current_user").one()
    except (SQLAlchemyDatabaseError, OperationalError) as exc:
        raise DatabaseError(f"{shown_url(url)}: cannot open results database: {exc.orig}") from None
    user, superuser, writes_files, runs_programs, database = row
    if superuser or writes_files or runs_programs:
        can = "is a superuser" if superuser else "can write server files" if writes_files else "can run programs"
        raise DatabaseError(f"{shown_url(url)}: role {user} {can}, so a query could write files on the server "
                            f"even in a read-only transaction; connect as a SELECT-only role ("
                            f"{READ_ONLY_ROLE_SQL.format(database=database)}) or pass --allow-privileged-role")


def _check_orch_database(engine: Engine, url: str) -> None:
    """Refuse what is not an orch results database (without changing anything in it)."""
    try:
        tables = set(inspect(engine).get_table_names())
    except (SQLAlchemyDatabaseError, OperationalError) as exc:
        raise DatabaseError(f"{shown_url(url)}: cannot open results database: {exc.orig}") from None
    if not tables >= ORCH_TABLES:
        raise DatabaseError(f"{shown_url(url)}: not an orch results database (it has tables "
                            f"{', '.join(sorted(tables)[:5]) or 'none'})")


@contextmanager
def _guard(dbapi: Any, timeout_s: float) -> Iterator[dict[str, bool]]:
    """Stop a SQLite query at its deadline or on Ctrl-C (the flags say which); PostgreSQL has statement_timeout,
    and psycopg cancels its query on Ctrl-C by itself."""
    stopped = {"interrupted": False, "timed_out": False}
    if not isinstance(dbapi, sqlite3.Connection):
        yield stopped
        return
    deadline = time.monotonic() + timeout_s

    def progress() -> int:
        stopped["timed_out"] = stopped["timed_out"] or time.monotonic() > deadline
        return int(stopped["interrupted"] or stopped["timed_out"])

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: stopped.update(interrupted=True))
    dbapi.set_progress_handler(progress, PROGRESS_STEPS)
    try:
        yield stopped
    finally:
        dbapi.set_progress_handler(None, PROGRESS_STEPS)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


@contextmanager
def _cursor(readonly: ReadOnly) -> Iterator[tuple[Any, dict[str, bool]]]:
    with readonly.engine.connect() as connection, connection.begin():
        dbapi = connection.connection.driver_connection
        cursor = dbapi.cursor()  # type: ignore[union-attr]
        try:
            with _guard(dbapi, readonly.timeout_s) as stopped:
                yield cursor, stopped
        finally:
            with contextlib.suppress(sqlite3.Error):
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


def run_query(readonly: ReadOnly, sql: str, max_rows: int | None = None) -> QueryResult:
    """Run one SQL statement read-only and return its rows (at most max_rows); bad SQL is a DatabaseError."""
    chunks = iter_query(readonly, sql, chunk_rows=max_rows or 50_000)
    if max_rows is not None:
        first = next(chunks)
        chunks.close()
        return first
    results = list(chunks)
    return QueryResult(results[0].columns, [row for chunk in results for row in chunk.rows])


def iter_query(readonly: ReadOnly, sql: str, chunk_rows: int = 50_000) -> Generator[QueryResult, None, None]:
    """Run one SQL statement read-only and yield its rows in chunks (the first chunk may be empty)."""
    if not sql.strip():
        raise DatabaseError("the query is empty")
    stopped = {"interrupted": False, "timed_out": False}
    try:
        with _cursor(readonly) as (cursor, stopped):
            _execute(cursor, sql)
            columns = [d[0] for d in cursor.description or []]
            chunk = cursor.fetchmany(chunk_rows)
            yield QueryResult(columns, [tuple(row) for row in chunk])
            while chunk := cursor.fetchmany(chunk_rows):
                yield QueryResult(columns, [tuple(row) for row in chunk])
    except KeyboardInterrupt:
        raise Interrupted("query stopped; nothing was changed") from None
    except _driver_errors() as exc:
        raise _query_error(exc, stopped, readonly.timeout_s) from None


def _query_error(exc: BaseException, stopped: dict[str, bool], timeout_s: float) -> Exception:
    if stopped["interrupted"]:
        return Interrupted("query stopped; nothing was changed")
    if isinstance(exc, SQLAlchemyDatabaseError | OperationalError) and exc.orig is not None:
        exc = exc.orig
    message = " ".join(str(exc).split())
    if stopped["timed_out"] or "statement timeout" in message:
        return DatabaseError(f"query stopped after its time limit of {timeout_s:g} s (--timeout sets another)")
    if "readonly" in message or "read-only" in message or "not authorized" in message:
        message += " (orch query is read-only: it never changes the database)"
    return DatabaseError(f"query failed: {message}")
