"""Writing query results and whole tables as CSV, JSON, Markdown, LaTeX or Parquet.

Values keep their type where the format has one (Parquet, JSON numbers); binary values (the latency
sample blobs) are base64 text in CSV and JSON, `<N bytes>` in Markdown, and binary in Parquet.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import inspect

from orchestrator.errors import UserError
from orchestrator.results.readonly import QueryResult, ReadOnly, iter_query
from orchestrator.results.schema import VIEW_NAMES, Base

TEXT_FORMATS = ("csv", "json", "markdown", "latex")
FORMATS = (*TEXT_FORMATS, "parquet")
EXPORT_FORMATS = ("csv", "parquet")
SUFFIX = {"csv": ".csv", "json": ".json", "markdown": ".md", "latex": ".tex", "parquet": ".parquet"}
LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


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


def latex_cell(value: Any) -> str:
    """A value as a LaTeX table cell reads it, every character LaTeX treats specially escaped."""
    return "".join(LATEX_SPECIAL.get(character, character) for character in cell_text(value).replace("\n", " "))


def write_chunks(chunks: Iterable[QueryResult], fmt: str, out: IO[str]) -> int:
    """Write rows as they come as CSV, JSON (a list of objects), a Markdown table or a LaTeX tabular (booktabs
    rules; columns right-aligned when the first chunk's values there are numbers); the number of rows."""
    if fmt not in TEXT_FORMATS:
        raise UserError(f"--format {fmt}: not a text format (one of {', '.join(TEXT_FORMATS)})")
    writer = csv.writer(out, lineterminator="\n")
    rows = 0
    for number, chunk in enumerate(chunks):
        if number == 0:
            _header(chunk, fmt, out, writer)
        for row in chunk.rows:
            if fmt == "latex":
                out.write(" & ".join(map(latex_cell, row)) + " \\\\\n")
            elif fmt == "csv":
                writer.writerow([_text(v) for v in row])
            elif fmt == "json":
                out.write(("[\n" if rows == 0 else ",\n") + json.dumps(
                    dict(zip(chunk.columns, map(_text, row), strict=True)), default=str))
            else:
                out.write("| " + " | ".join(cell_text(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |\n")
            rows += 1
    if fmt == "json":
        out.write("[]\n" if rows == 0 else "\n]\n")
    elif fmt == "latex":
        out.write("\\bottomrule\n\\end{tabular}\n")
    return rows


def _header(chunk: QueryResult, fmt: str, out: IO[str], writer: Any) -> None:
    columns = chunk.columns
    if fmt == "latex":
        numeric = [bool(chunk.rows) and all(isinstance(row[i], int | float) or row[i] is None for row in chunk.rows)
                   and any(row[i] is not None for row in chunk.rows) for i in range(len(columns))]
        out.write(f"\\begin{{tabular}}{{{''.join('r' if number else 'l' for number in numeric)}}}\n\\toprule\n")
        out.write(" & ".join(map(latex_cell, columns)) + " \\\\\n\\midrule\n")
    elif fmt == "csv":
        writer.writerow(columns)
    elif fmt == "markdown":
        out.write("| " + " | ".join(columns) + " |\n")
        out.write("|" + "|".join(" --- " for _ in columns) + "|\n")


def write_text(result: QueryResult, fmt: str, out: IO[str]) -> None:
    """Write one result's rows as CSV, JSON or Markdown."""
    write_chunks([result], fmt, out)


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


def write_parquet(results: Iterable[QueryResult], path: Path) -> int:
    """Write row chunks to a Parquet file as they come (the first chunk's column types hold for all); rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer, rows = None, 0
    try:
        for chunk in results:
            table = _arrow_table([chunk])
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            try:
                writer.write_table(table.cast(writer.schema))
            except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
                raise UserError(f"{path}: a column changes type part way through the rows; use --format csv") \
                    from None
            rows += len(chunk.rows)
    finally:
        if writer is not None:
            writer.close()
    return rows


def write_result(chunks: Iterable[QueryResult], fmt: str, path: Path) -> int:
    """Write a query's rows, as they come, to a file in the given format; the number of rows."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown format (one of table, {', '.join(FORMATS)})")
    try:
        if fmt == "parquet":
            return write_parquet(chunks, path)
        with path.open("w", encoding="utf-8", newline="") as out:
            return write_chunks(chunks, fmt, out)
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


def exportable_names(readonly: ReadOnly) -> list[str]:
    """orch's own tables and views that the database has (a table someone else added is never exported)."""
    inspector = inspect(readonly.engine)
    present = set(inspector.get_table_names()) | set(inspector.get_view_names())
    return sorted(present & (set(Base.metadata.tables) | set(VIEW_NAMES)))


def export_tables(readonly: ReadOnly, folder: Path, fmt: str = "csv",
                  names: list[str] | None = None) -> list[Exported]:
    """Dump orch's tables and views (default: all) to folder/<name>.csv or .parquet, streaming them in chunks."""
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"--format {fmt}: export writes one of {', '.join(EXPORT_FORMATS)}")
    known = exportable_names(readonly)
    chosen = names or known
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise UserError(f"no table or view named {', '.join(unknown)} (known: {', '.join(known)})")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{folder}: cannot create folder: {exc.strerror}") from None
    # Every name is one of orch's own identifiers (schema.py), so each file lands inside `folder`.
    return [Exported(name, write_result(iter_query(readonly, f'SELECT * FROM "{name}"'), fmt,
                                        folder / f"{name}{SUFFIX[fmt]}"), folder / f"{name}{SUFFIX[fmt]}")
            for name in chosen]
