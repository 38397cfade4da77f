"""`orch dashboard` (static HTML dashboards, PNGs, served on 127.0.0.1) and `orch report` (a study's tables for
papers) from the results database (orchestrator/dashboards/)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.options import DbOption, lab, show
from orchestrator.dashboards.serve import DEFAULT_PORT, serve_folder
from orchestrator.errors import UserError
from orchestrator.results.export import TEXT_FORMATS, write_text
from orchestrator.results.readonly import DEFAULT_TIMEOUT_S
from orchestrator.ui import dashboard_lines, line, query_table, served_line

TimeoutOption = Annotated[float, typer.Option(help="Stop each query after this many seconds.")]


def dashboard(
    names: Annotated[list[str] | None, typer.Argument(
        help="Dashboards to write (study, leaderboard, nightly, or a .yaml file) [default: every shipped one].")]
    = None,
    recipe: Annotated[str | None, typer.Option(help="Only rows of this recipe (panels with a `recipe` column).")]
    = None,
    out: Annotated[Path, typer.Option(help="Folder to write the pages and index.html into.")] = Path("dashboards/out"),
    png: Annotated[bool, typer.Option("--png/--no-png", help="Also write one PNG per panel (needs Chromium).")]
    = True,
    serve: Annotated[bool, typer.Option("--serve", help="Then serve the folder on 127.0.0.1 until Ctrl-C.")] = False,
    port: Annotated[int, typer.Option(help="Port for --serve (0: any free one).")] = DEFAULT_PORT,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_S,
    db: DbOption = None,
) -> None:
    """Write static, self-contained HTML dashboards (charts and tables from SQL over the results views)."""
    written, pngs = lab(db).dashboards(names or [], out, recipe, timeout_s=timeout, png=png)
    show(*dashboard_lines(written, pngs, out / "index.html"))
    if serve:
        serve_folder(out, port, lambda url: show(served_line(url)))


def report(
    recipe: Annotated[str, typer.Argument(help="The recipe: its name, or its YAML file.")],
    table: Annotated[str, typer.Option("--table", "-t", help="leaderboard, ptq-comparison or pruning-steps.")]
    = "leaderboard",
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"table, {', '.join(TEXT_FORMATS)}.")] = "table",
    timeout: TimeoutOption = DEFAULT_TIMEOUT_S,
    db: DbOption = None,
) -> None:
    """Print one of a study's tables (the dashboards' tables, every row) for a paper: Markdown, CSV, LaTeX, ..."""
    if fmt not in ("table", *TEXT_FORMATS):
        raise UserError(f"--format {fmt}: unknown format (one of table, {', '.join(TEXT_FORMATS)})")
    rows = lab(db).report(recipe, table, timeout_s=timeout)
    if fmt != "table":
        write_text(rows, fmt, sys.stdout)
        return
    show(line((f"{table} of {recipe}", "bold")), query_table(rows, max_rows=len(rows.rows) or 1))


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
    app.command("report")(report)
