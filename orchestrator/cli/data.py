"""Commands over the results database: `orch query`, `export`, `regress`, `mark` and `nightly`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from orchestrator.cli.options import (
    AllowCommandOption,
    ArtifactsOption,
    BuildExecutorOption,
    ConfigOption,
    DbOption,
    InventoryOption,
    OverlapLocalOption,
    console,
    errors,
    lab,
    show,
)
from orchestrator.errors import FailureFound, UserError
from orchestrator.results.export import FORMATS, write_chunks, write_json_report, write_result
from orchestrator.results.findings import RegressReport
from orchestrator.results.judge import load_regress_config
from orchestrator.results.readonly import DEFAULT_TIMEOUT_S
from orchestrator.ui import SweepProgress, query_table, regress_findings

TABLE_MAX_ROWS = 1000


def query(
    sql: Annotated[str, typer.Argument(help="One SQL statement, e.g. \"SELECT * FROM latest_results\".")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv, json, markdown, latex or parquet.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
    timeout: Annotated[float, typer.Option(help="Stop the query after this many seconds.")] = DEFAULT_TIMEOUT_S,
    allow_privileged_role: Annotated[bool, typer.Option(
        "--allow-privileged-role", help="PostgreSQL: query as a role that could write server files.")] = False,
    db: DbOption = None,
) -> None:
    """Run one read-only SQL query on the results database (it can never change a row) and print the rows."""
    check_format(fmt, output)
    where = lab(db)
    if fmt == "table":
        show(query_table(where.query(sql, TABLE_MAX_ROWS + 1, timeout, allow_privileged_role), TABLE_MAX_ROWS))
        return
    chunks = where.query_chunks(sql, timeout, allow_privileged_role)
    if output is None:
        write_chunks(chunks, fmt, sys.stdout)
        return
    errors.print(f"{write_result(chunks, fmt, output)} rows written to {escape(str(output))}", highlight=False)


def export(
    folder: Annotated[Path, typer.Argument(help="Folder to write <table>.csv or <table>.parquet files into.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or parquet.")] = "csv",
    table: Annotated[list[str] | None, typer.Option("--table", "-t", help="Only this table or view (repeatable).")]
    = None,
    db: DbOption = None,
) -> None:
    """Dump tables and views (default: all of them) to CSV or Parquet files, reading the database read-only."""
    show(*(f"{done.name}: {done.rows} rows -> {done.path}" for done in lab(db).export(folder, fmt, table or None)))


def regress(
    device: Annotated[str | None, typer.Option(help="Only these devices (comma-separated).")] = None,
    sweep: Annotated[str | None, typer.Option(help="Only series measured in this sweep (`last` or an id).")] = None,
    config: ConfigOption = None,
    z: Annotated[float | None, typer.Option("--z", help="Robust z threshold [default: 4].")] = None,
    baseline: Annotated[int | None, typer.Option(help="Baseline size in results [default: 14].")] = None,
    min_baseline: Annotated[int | None, typer.Option(help="Fewer baseline results: insufficient data [5].")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    rerun: Annotated[bool, typer.Option(help="Re-run flagged series on their boards to confirm them.")] = True,
    db: DbOption = None,
    artifacts: ArtifactsOption = Path("artifacts"),
    inventory: InventoryOption = None,
) -> None:
    """Compare every series' newest valid result with its baseline; exit 1 if a confirmed regression exists."""
    settings = load_regress_config(config, z_threshold=z, baseline_size=baseline, min_baseline=min_baseline)
    devices = [name.strip() for name in device.split(",") if name.strip()] if device else None
    report = lab(db, artifacts, inventory).regress(settings, devices=devices, sweep=sweep, rerun=rerun)
    conclude(report, json_path)


def mark(
    series: Annotated[list[str] | None, typer.Argument(help="Series keys or ids (see the latest_results view).")]
    = None,
    reason: Annotated[str, typer.Option(help="Why the new numbers are the new normal.")] = "",
    device: Annotated[str | None, typer.Option(help="Mark every series of this device (and close its board alert).")]
    = None,
    db: DbOption = None,
) -> None:
    """Add a change marker: regress compares these series only with results from their newest on."""
    show(*(f"{key}: change marker {marker_id}" for key, marker_id in lab(db).mark(series or [], reason, device)))


def nightly(
    devices: Annotated[str, typer.Option(help="Comma-separated device names.")] = "local",
    recipe: Annotated[Path, typer.Option(help="The nightly recipe.")] = Path("recipes/nightly.yaml"),
    report_dir: Annotated[Path, typer.Option(help="Folder for the Markdown and JSON reports.")] = Path("reports"),
    config: ConfigOption = None,
    db: DbOption = None,
    artifacts: ArtifactsOption = Path("artifacts"),
    inventory: InventoryOption = None,
    overlap_local: OverlapLocalOption = False,
    build_executor: BuildExecutorOption = None,
    allow_command_meter: AllowCommandOption = False,
) -> None:
    """Sweep the nightly recipe on the devices, check what it measured, write a report; exit 1 on a regression."""
    settings = load_regress_config(config)
    with SweepProgress(console) as progress:
        report = lab(db, artifacts, inventory, allow_command_meter).nightly(recipe, devices, settings, report_dir,
                                                                           observer=progress,
                                                                           overlap_local=overlap_local,
                                                                           build_executor=build_executor)
    show(f"report: {report.files[0]} and {report.files[1]}")
    conclude(report.regress, None)


def conclude(report: RegressReport, json_path: Path | None) -> None:
    """Show what regress found, write it as JSON if asked; a confirmed regression is a failure (exit 1)."""
    show(*regress_findings(report))
    if json_path is not None:
        write_json_report(report.to_dict(), json_path)
    if report.has_confirmed:
        raise FailureFound(f"confirmed regressions: {len(report.confirmed)} found now, {len(report.open_confirmed)} "
                           "alerts open (accept a new normal with `orch mark SERIES --reason ...`)")


def check_format(fmt: str, output: Path | None) -> None:
    """--format and --output must fit together."""
    if fmt not in ("table", *FORMATS):
        raise UserError(f"--format {fmt}: unknown format (one of table, {', '.join(FORMATS)})")
    if fmt == "table" and output is not None:
        raise UserError("--output needs a file format: add --format csv, json, markdown or parquet")
    if fmt == "parquet" and output is None:
        raise UserError("--format parquet writes a binary file: add --output FILE")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `orch` app."""
    for command in (query, export, regress, mark, nightly):
        app.command()(command)
