"""Writing query results and whole tables as CSV, JSON, Markdown or Parquet.

Values keep their type where the format has one (Parquet, JSON numbers); binary values (the latency
sample blobs) are base64 text in CSV and JSON, `<N bytes>` in Markdown, and binary in Parquet.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, inspect

from orchestrator.errors import UserError
from orchestrator.results.db import translate_errors
from orchestrator.results.readonly import QueryResult, iter_query

TEXT_FORMATS = ("csv", "json", "markdown")
FORMATS = (*TEXT_FORMATS, "parquet")
EXPORT_FORMATS = ("csv", "parquet")
SUFFIX = {"csv": ".csv", "json": ".json", "markdown": ".md", "parquet": ".parquet"}


def _text(value: Any) -> Any:
    """A value as CSV/JSON carry it."""
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def cell_text(value: Any) -> str:
    """A value as a human reads it in a table cell."""
    if value is None:
        return ""
    if isinstance(value, bytes | memoryview):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_text(result: QueryResult, fmt: str, out: IO[str]) -> None:
    """Write rows as CSV, JSON (a list of objects) or a Markdown table."""
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([_text(v) for v in row] for row in result.rows)
    elif fmt == "json":
        json.dump([dict(zip(result.columns, map(_text, row), strict=True)) for row in result.rows], out, indent=1,
                  default=str)
        out.write("\n")
    elif fmt == "markdown":
        out.write("| " + " | ".join(result.columns) + " |\n")
        out.write("|" + "|".join(" --- " for _ in result.columns) + "|\n")
        for row in result.rows:
            out.write("| " + " | ".join(cell_text(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |\n")
    else:
        raise UserError(f"--format {fmt}: not a text format (one of {', '.join(TEXT_FORMATS)})")


def _arrow_table(results: Iterable[QueryResult]) -> Any:
    """One Arrow table from row chunks; a column whose values have no single type becomes text."""
    import pyarrow as pa

    tables = []
    for chunk in results:
        arrays = []
        for index, _ in enumerate(chunk.columns):
            values = [row[index] for row in chunk.rows]
            try:
                arrays.append(pa.array(values))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
        tables.append(pa.table(arrays, names=chunk.columns))
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.concat_tables([t.cast(pa.schema([(n, pa.string()) for n in t.column_names])) for t in tables])


def write_parquet(results: Iterable[QueryResult], path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(_arrow_table(results), path)


def write_result(result: QueryResult, fmt: str, path: Path) -> None:
    """Write one query's rows to a file in the given format."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown format (one of table, {', '.join(FORMATS)})")
    try:
        if fmt == "parquet":
            write_parquet([result], path)
        else:
            with path.open("w", encoding="utf-8", newline="") as out:
                write_text(result, fmt, out)
    except OSError as exc:
        raise UserError(f"{path}: cannot write: {exc.strerror}") from None


def write_json_report(data: dict[str, Any], path: Path) -> None:
    """A report (regress, nightly) as indented JSON; a path that cannot be written is a UserError."""
    try:
        path.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot write: {exc.strerror}") from None


def render_text(result: QueryResult, fmt: str) -> str:
    buffer = io.StringIO()
    write_text(result, fmt, buffer)
    return buffer.getvalue()


@dataclass
class Exported:
    """One table or view written by export_tables."""

    name: str
    rows: int
    path: Path


@translate_errors
def exportable_names(engine: Engine) -> list[str]:
    """Every table and view of the database except alembic's bookkeeping."""
    inspector = inspect(engine)
    return sorted((set(inspector.get_table_names()) | set(inspector.get_view_names())) - {"alembic_version"})


def export_tables(engine: Engine, folder: Path, fmt: str = "csv", names: list[str] | None = None) -> list[Exported]:
    """Dump tables and views (default: all) to folder/<name>.csv or .parquet, streaming big tables in chunks."""
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"--format {fmt}: export writes one of {', '.join(EXPORT_FORMATS)}")
    known = exportable_names(engine)
    chosen = names or known
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise UserError(f"no table or view named {', '.join(unknown)} (known: {', '.join(known)})")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{folder}: cannot create folder: {exc.strerror}") from None
    done = []
    for name in chosen:
        path = folder / f"{name}{SUFFIX[fmt]}"
        counted = _Counting(iter_query(engine, f'SELECT * FROM "{name}"'))
        if fmt == "parquet":
            write_parquet(counted, path)
        else:
            with path.open("w", encoding="utf-8", newline="") as out:
                _write_csv_chunks(counted, out)
        done.append(Exported(name, counted.rows, path))
    return done


class _Counting:
    """Passes chunks through and counts their rows."""

    def __init__(self, chunks: Iterator[QueryResult]):
        self.chunks, self.rows = chunks, 0

    def __iter__(self) -> Iterator[QueryResult]:
        for chunk in self.chunks:
            self.rows += len(chunk.rows)
            yield chunk


def _write_csv_chunks(chunks: Iterable[QueryResult], out: IO[str]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    for number, chunk in enumerate(chunks):
        if number == 0:
            writer.writerow(chunk.columns)
        writer.writerows([_text(v) for v in row] for row in chunk.rows)
