"""Commands over the results database: query, export, regress, mark, nightly (registered on the app by cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from orchestrator.cli import ArtifactsOption, DbOption, console, errors
from orchestrator.errors import UserError

if TYPE_CHECKING:
    from orchestrator.results.findings import RegressReport
    from orchestrator.results.judge import RegressConfig
    from orchestrator.results.readonly import QueryResult

TABLE_MAX_ROWS = 1000
ConfigOption = Annotated[Path | None, typer.Option(
    "--config", help="YAML file of regress settings (baseline_size, z_threshold, metrics, ...); flags win.")]


def query(
    sql: Annotated[str, typer.Argument(help="One SQL statement, e.g. \"SELECT * FROM latest_results\".")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv, json, markdown or parquet.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
    db: DbOption = None,
) -> None:
    """Run one read-only SQL query on the results database (it can never change a row) and print the rows."""
    from orchestrator.results.export import render_text, write_result
    from orchestrator.results.readonly import open_readonly, run_query

    _check_format(fmt, output)
    result = run_query(open_readonly(db), sql, max_rows=TABLE_MAX_ROWS + 1 if fmt == "table" else None)
    if output is not None:
        write_result(result, fmt, output)
        errors.print(f"{len(result.rows)} rows written to {output}", highlight=False)
    elif fmt == "table":
        console.print(_query_table(result))
    else:
        sys.stdout.write(render_text(result, fmt))


def export(
    folder: Annotated[Path, typer.Argument(help="Folder to write <table>.csv or <table>.parquet files into.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or parquet.")] = "csv",
    table: Annotated[list[str] | None, typer.Option("--table", "-t", help="Only this table or view (repeatable).")]
    = None,
    db: DbOption = None,
) -> None:
    """Dump tables and views (default: all of them) to CSV or Parquet files, reading the database read-only."""
    from orchestrator.results.export import export_tables
    from orchestrator.results.readonly import open_readonly

    for done in export_tables(open_readonly(db), folder, fmt, table or None):
        console.print(f"{done.name}: {done.rows} rows -> {done.path}", highlight=False)


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
    inventory: Annotated[Path | None, typer.Option(
        envvar="ORCH_INVENTORY", help="Board inventory [default: ~/.config/orch/devices.yaml].")] = None,
) -> None:
    """Compare every series' newest valid result with its baseline; exit 1 if a confirmed regression exists."""
    from orchestrator.artifacts import ArtifactStore
    from orchestrator.fleet.inventory import default_inventory_path, load_inventory
    from orchestrator.fleet.rerun import board_rerun
    from orchestrator.fleet.ssh import default_settings
    from orchestrator.results.db import open_database
    from orchestrator.results.queries import resolve_sweep
    from orchestrator.results.regress import regress as find_regressions
    from orchestrator.sweep import SweepOptions

    settings = _regress_config(config, z_threshold=z, baseline_size=baseline, min_baseline=min_baseline)
    engine = open_database(db)
    devices = [name.strip() for name in device.split(",") if name.strip()] if device else None
    hook = None
    if rerun:
        boards = load_inventory(inventory or default_inventory_path())
        hook = board_rerun(ArtifactStore(artifacts), boards, SweepOptions(ssh=default_settings(boards)))
    report = find_regressions(engine, settings, rerun=hook, devices=devices, sweep_id=resolve_sweep(engine, sweep))
    _show_regress(report, json_path)


def mark(
    series: Annotated[list[str] | None, typer.Argument(help="Series keys or ids (see the latest_results view).")]
    = None,
    reason: Annotated[str, typer.Option(help="Why the new numbers are the new normal.")] = "",
    device: Annotated[str | None, typer.Option(help="Mark every series of this device (and close its board alert).")]
    = None,
    db: DbOption = None,
) -> None:
    """Add a change marker: regress compares these series only with results from their newest on."""
    from orchestrator.results.db import open_database
    from orchestrator.results.queries import resolve_series
    from orchestrator.results.store import ResultsStore

    engine = open_database(db)
    for key, marker_id in ResultsStore(engine).mark(resolve_series(engine, series or [], device), reason, device):
        console.print(f"{key}: change marker {marker_id}", highlight=False)


def nightly(
    devices: Annotated[str, typer.Option(help="Comma-separated device names.")] = "local",
    recipe: Annotated[Path, typer.Option(help="The nightly recipe.")] = Path("recipes/nightly.yaml"),
    report_dir: Annotated[Path, typer.Option(help="Folder for the Markdown and JSON reports.")] = Path("reports"),
    config: ConfigOption = None,
    db: DbOption = None,
    artifacts: ArtifactsOption = Path("artifacts"),
    inventory: Annotated[Path | None, typer.Option(
        envvar="ORCH_INVENTORY", help="Board inventory [default: ~/.config/orch/devices.yaml].")] = None,
) -> None:
    """Sweep the nightly recipe on the devices, check what it measured, write a report; exit 1 on a regression."""
    from orchestrator.artifacts import ArtifactStore
    from orchestrator.fleet.devices import resolve_devices
    from orchestrator.fleet.inventory import default_inventory_path, load_inventory
    from orchestrator.fleet.rerun import board_rerun
    from orchestrator.fleet.ssh import default_settings
    from orchestrator.recipes import load_recipe
    from orchestrator.results.db import open_database
    from orchestrator.results.nightly import run_nightly, write_reports
    from orchestrator.sweep import SweepOptions
    from orchestrator.ui import SweepProgress

    boards = load_inventory(inventory or default_inventory_path())
    settings, loaded, targets = _regress_config(config), load_recipe(recipe), resolve_devices(devices, boards)
    engine, options = open_database(db), SweepOptions(ssh=default_settings(boards))
    with SweepProgress(console) as progress:
        report = run_nightly(loaded, targets, engine, ArtifactStore(artifacts), settings, observer=progress,
                             options=options, rerun=board_rerun(ArtifactStore(artifacts), boards, options))
    files = write_reports(report, report_dir)
    console.print(f"report: {files[0]} and {files[1]}", highlight=False)
    _show_regress(report.regress, None)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `orch` app."""
    for command in (query, export, regress, mark, nightly):
        app.command()(command)


# -- presentation and edge helpers ---------------------------------------------------------------------------------
def _check_format(fmt: str, output: Path | None) -> None:
    from orchestrator.results.export import FORMATS

    if fmt not in ("table", *FORMATS):
        raise UserError(f"--format {fmt}: unknown format (one of table, {', '.join(FORMATS)})")
    if fmt == "table" and output is not None:
        raise UserError("--output needs a file format: add --format csv, json, markdown or parquet")
    if fmt == "parquet" and output is None:
        raise UserError("--format parquet writes a binary file: add --output FILE")


def _query_table(result: QueryResult) -> Table:
    from orchestrator.results.export import cell_text

    shown = result.rows[:TABLE_MAX_ROWS]
    more = len(result.rows) > TABLE_MAX_ROWS
    caption = f"first {TABLE_MAX_ROWS} rows; use --format csv for all" if more else f"{len(shown)} rows"
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, caption=caption, caption_justify="left")
    for column in result.columns:
        table.add_column(column, overflow="fold")
    for row in shown:
        table.add_row(*(cell_text(value) for value in row))
    return table


def _regress_config(path: Path | None, **flags: Any) -> RegressConfig:
    """Settings from the YAML file (if any) with flags on top."""
    import yaml

    from orchestrator.results.judge import regress_config

    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise UserError(f"{path}: cannot read regress settings: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: YAML error: {' '.join(str(exc).split())}") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: regress settings must be a YAML mapping")
    data.update({name: value for name, value in flags.items() if value is not None})
    return regress_config(data, str(path) if path else "flags:")


def _show_regress(report: RegressReport, json_path: Path | None) -> None:
    import json

    from orchestrator.results.findings import CLEARED, CONFIRMED, IMPROVEMENT, SUSPECT

    findings = [*report.confirmed, *report.with_status(SUSPECT), *report.with_status(CLEARED)]
    findings += [f for board in report.boards for f in board.shifted]
    if findings:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="regressions", title_justify="left")
        for name in ("status", "series", "device", "variant", "metric", "baseline", "new", "re-run", "change", "z"):
            table.add_column(name, no_wrap=name in ("series", "status"))
        style = {CONFIRMED: "red", SUSPECT: "yellow", CLEARED: "green"}
        for f in findings:
            unit = "pts" if f.unit == "points" else "%"
            table.add_row(f"[{style.get(f.status, 'red')}]{f.status}", f.series.key, f.series.device, f.series.variant,
                          f.metric, f"{f.baseline_value:.4g}", f"{f.new_value:.4g}",
                          "-" if f.rerun_value is None else f"{f.rerun_value:.4g}", f"{f.change_pct:+.1f}{unit}",
                          f"{f.z:.1f}")
        console.print(table)
    for board in report.boards:
        console.print(f"board {board.device}: {board.status}: {board.note}", highlight=False)
    for alert in report.open_confirmed:
        console.print(f"[red]open confirmed alert {alert['alert_id']}[/red]: {alert['series_key'] or alert['device']} "
                      f"{alert['metric']} (accept with `orch mark`)", highlight=False)
    console.print(f"{report.series_checked} series checked: {len(report.confirmed)} confirmed, "
                  f"{len(report.with_status(SUSPECT))} suspect, {len(report.with_status(CLEARED))} cleared by re-run, "
                  f"{len(report.with_status(IMPROVEMENT))} improvements, {len(report.insufficient)} insufficient data",
                  highlight=False)
    if json_path is not None:
        try:
            json_path.write_text(json.dumps(report.to_dict(), indent=1, default=str) + "\n", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{json_path}: cannot write: {exc.strerror}") from None
    if report.has_confirmed:
        raise typer.Exit(1)
