"""The application: a `Lab` is what every command works in (the results database, the artifact store, the board
inventory and how to reach the boards) and has one method per thing a user does. The CLI parses, calls one
method, renders; Python users do the same without the CLI.

    lab = Lab(db="results.db", artifacts=Path("artifacts"))
    report = lab.sweep(Path("recipes/quickstart.yaml"), devices="local")
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from orchestrator.artifacts import ArtifactStore
from orchestrator.builder.executors import parse_executor
from orchestrator.builder.pipeline import BuildOutcome
from orchestrator.dashboards import (
    SHIPPED,
    PngOutcome,
    RenderedDashboard,
    dashboard_paths,
    render_dashboards,
    report_table,
)
from orchestrator.errors import DeviceError, UserError
from orchestrator.fleet.check import BoardCheck, check_boards
from orchestrator.fleet.devices import DeviceSpec, resolve_devices
from orchestrator.fleet.inventory import BoardSpec, Inventory, board_from_fields, default_inventory_path, load_inventory
from orchestrator.fleet.local import LocalTransport
from orchestrator.fleet.ssh import HostKeyOffer, SshSettings, default_settings, fetch_host_key, trust_host_key
from orchestrator.lab.nightly import run_nightly
from orchestrator.lab.rerun import scheduled_rerun
from orchestrator.lab.stream import LiveStream, StreamSettings, open_stream
from orchestrator.lab.sweep import SweepObserver, SweepOptions, SweepReport, build_and_record, run_sweep
from orchestrator.lab.targets import resolve_target
from orchestrator.recipes import LoadedRecipe, load_recipe
from orchestrator.results.db import database_url, open_database, shown_url
from orchestrator.results.export import Exported, export_tables
from orchestrator.results.findings import RegressReport
from orchestrator.results.judge import RegressConfig
from orchestrator.results.nightly_report import NightlyReport, write_reports
from orchestrator.results.queries import resolve_series, resolve_sweep, result_rows, series_rows
from orchestrator.results.readonly import (
    DEFAULT_TIMEOUT_S,
    QueryResult,
    ReadOnly,
    iter_query,
    open_readonly,
    run_query,
)
from orchestrator.results.regress import regress
from orchestrator.results.store import ResultsStore

__all__ = ["Lab", "LiveStream", "StreamSettings", "SweepObserver", "SweepOptions", "SweepReport"]


@dataclass
class Lab:
    """Where orch keeps things, each opened on first use.

    db: results database, a file path or SQLAlchemy URL (None: ORCH_DB, else ./results.db)
    artifacts: the artifact store folder
    inventory_path: the board inventory (None: ~/.config/orch/devices.yaml)
    allow_command_meter: run recipes that name a `command` power meter (refused by default: recipes/loading.py)
    """

    db: str | None = None
    artifacts: Path = Path("artifacts")
    inventory_path: Path | None = None
    allow_command_meter: bool = False

    @cached_property
    def engine(self) -> Engine:
        """The results database, created or migrated to the current schema."""
        return open_database(self.db)

    @cached_property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.artifacts)

    @cached_property
    def inventory(self) -> Inventory:
        return load_inventory(self.inventory_path or default_inventory_path())

    @cached_property
    def ssh(self) -> SshSettings:
        return default_settings(self.inventory)

    # -- building and measuring ------------------------------------------------------------------------------
    def devices(self, names: str) -> list[DeviceSpec]:
        """The devices a --devices value names (names, `tag:NAME`, `local`)."""
        return resolve_devices(names, self.inventory)

    def options(self, **settings: Any) -> SweepOptions:
        """Sweep options reaching boards with this lab's SSH settings."""
        return SweepOptions(ssh=self.ssh, **settings)

    def sweep(self, recipe: Path, devices: str = "local", force: bool = False, wait_for_lock: bool = True,
              repeat: int | None = None, observer: SweepObserver | None = None,
              target_runtime: str | None = None, overlap_local: bool = False,
              build_executor: str | None = None) -> SweepReport:
        """Build every variant of the recipe (for `target_runtime` if given, else as the recipe says; its steps
        where `build_executor` says, builder/executors.py), measure each on the devices as soon as it is built
        (the `local` device once the build is over, unless `overlap_local`) and record every result."""
        loaded = self.recipe(recipe, repeat, target_runtime)
        targets = self.devices(devices)
        options = self.options(skip_done=not force, wait_for_lock=wait_for_lock, overlap_local=overlap_local,
                               build_executor=parse_executor(build_executor))
        return run_sweep(loaded, targets, self.engine, self.store, observer=observer, options=options)

    def build(self, recipe: Path, observer: SweepObserver | None = None,
              target_runtime: str | None = None, build_executor: str | None = None) -> BuildOutcome:
        """Build every variant of the recipe (nothing already built is built again), recording each; built for
        `target_runtime` if given, else as the recipe says (`auto`: this machine's onnxruntime), its steps where
        `build_executor` says."""
        loaded = self.recipe(recipe, target_runtime=target_runtime)
        executor = parse_executor(build_executor)
        target = resolve_target(loaded, dict, lambda: LocalTransport(self.store.root).info())
        return build_and_record(loaded, self.engine, self.store, observer, target=target, executor=executor)

    def stream(self, device: str, settings: StreamSettings) -> LiveStream:
        """Run a detector variant without end on one device and serve it to this machine's browser
        (lab/stream.py); wait() for its end, then close() it."""
        found = self.devices(device)
        if len(found) != 1:
            raise DeviceError(f"{device!r}: a stream runs on one device, not {len(found)}")
        return open_stream(found[0], settings, self.engine, self.store, self.ssh)

    def recipe(self, path: Path, repeat: int | None = None, target_runtime: str | None = None) -> LoadedRecipe:
        """A validated recipe, every job measured `repeat` times and built for `target_runtime` when given."""
        loaded = load_recipe(path, self.allow_command_meter)
        loaded = loaded.with_repeat(repeat) if repeat is not None else loaded
        return loaded.with_target_runtime(target_runtime) if target_runtime is not None else loaded

    # -- reading results -------------------------------------------------------------------------------------
    def results(self, sweep: str = "last", device: str | None = None, recipe: str | None = None,
                repeats: bool = False) -> list[dict[str, Any]]:
        """Recorded results as flat rows (results/queries.py): one per series and sweep with its valid repeats
        aggregated, or with `repeats` one per job."""
        rows = result_rows if repeats else series_rows
        return rows(self.engine, sweep=sweep, device=device, recipe=recipe)

    def readonly(self, timeout_s: float = DEFAULT_TIMEOUT_S, allow_privileged_role: bool = False) -> ReadOnly:
        """The results database opened for reading only (results/readonly.py: it never changes the file)."""
        return open_readonly(self.db, timeout_s, allow_privileged_role)

    def query(self, sql: str, max_rows: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
              allow_privileged_role: bool = False) -> QueryResult:
        """One read-only SQL query (it can never change a row), stopped at timeout_s."""
        return run_query(self.readonly(timeout_s, allow_privileged_role), sql, max_rows=max_rows)

    def query_chunks(self, sql: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                     allow_privileged_role: bool = False) -> Iterator[QueryResult]:
        """One read-only SQL query's rows, in chunks as they come (for output of any size)."""
        return iter_query(self.readonly(timeout_s, allow_privileged_role), sql)

    def dashboards(self, names: list[str], out: Path, recipe: str | None = None, folder: Path = SHIPPED,
                   timeout_s: float = DEFAULT_TIMEOUT_S, png: bool = True
                   ) -> tuple[list[RenderedDashboard], PngOutcome]:
        """The named dashboards (none: every one in folder) written as static HTML pages to out, with an index
        and (png) one PNG per panel."""
        return render_dashboards(self.readonly(timeout_s), dashboard_paths(names, folder), out, recipe, png)

    def report(self, recipe: str, table: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> QueryResult:
        """One of `orch report`'s tables for a recipe (a name, or a recipe file whose name is used)."""
        readonly = self.readonly(timeout_s)
        name = recipe_name(recipe)
        known = [row[0] for row in run_query(readonly, "SELECT DISTINCT recipe_name FROM variants").rows]
        if name not in known:
            raise UserError(f"no results for recipe {name!r} in {shown_url(database_url(self.db))}; "
                            f"recipes there: {', '.join(sorted(known)) or 'none'}")
        return report_table(readonly, table, name)

    def export(self, folder: Path, fmt: str, tables: list[str] | None = None) -> list[Exported]:
        """orch's tables and views (default: all) written to CSV or Parquet files, read read-only."""
        return export_tables(self.readonly(), folder, fmt, tables)

    # -- regressions -----------------------------------------------------------------------------------------
    def regress(self, config: RegressConfig, devices: list[str] | None = None, sweep: str | None = None,
                rerun: bool = True) -> RegressReport:
        """Check every series' newest valid result against its baseline; flagged series are re-run on their
        boards (through the scheduler) to confirm them, unless `rerun` is off."""
        hook = scheduled_rerun(self.store, self.inventory, self.options()) if rerun else None
        return regress(self.engine, config, rerun=hook, devices=devices, sweep_id=resolve_sweep(self.engine, sweep))

    def mark(self, series: list[str], reason: str, device: str | None = None) -> list[tuple[str, int]]:
        """A change marker on each named series (and every series of `device`); (series key, marker id)."""
        return ResultsStore(self.engine).mark(resolve_series(self.engine, series, device), reason, device)

    def nightly(self, recipe: Path, devices: str, config: RegressConfig, report_dir: Path,
                observer: SweepObserver | None = None, overlap_local: bool = False,
                build_executor: str | None = None) -> NightlyReport:
        """Sweep the nightly recipe on the devices (`overlap_local`, `build_executor` as for sweep), check what it
        measured, write the Markdown and JSON report."""
        loaded, targets = self.recipe(recipe), self.devices(devices)
        options = self.options(overlap_local=overlap_local, build_executor=parse_executor(build_executor))
        report = run_nightly(loaded, targets, self.engine, self.store, config, observer=observer, options=options,
                             rerun=scheduled_rerun(self.store, self.inventory, options))
        write_reports(report, report_dir)
        return report

    # -- the board inventory ---------------------------------------------------------------------------------
    def check_devices(self, names: list[str] | None = None) -> list[BoardCheck]:
        """Connect to each board (default: all), deploy the agent, judge what it reports; one check per board.
        What a board said (its software, what its onnxruntime loads) is kept with the device in the database."""
        checks = check_boards([self.inventory.get(name) for name in names or list(self.inventory.boards)], self.ssh)
        results = ResultsStore(self.engine)
        for check in checks:
            if check.info:
                results.upsert_device(check.device, "ssh", check.info)
        return checks

    def add_device(self, name: str, fields: dict[str, Any]) -> BoardSpec:
        """Add a board to the inventory file."""
        board = board_from_fields(str(self.inventory.path), name, fields)
        self.inventory.add(board)
        self.inventory.save()
        return board

    def remove_device(self, name: str) -> BoardSpec:
        """Remove a board from the inventory file (its results stay in the database)."""
        board = self.inventory.remove(name)
        self.inventory.save()
        return board

    def host_key(self, name: str) -> HostKeyOffer:
        """The SSH host key a board offers, compared with the trusted ones."""
        return fetch_host_key(self.inventory.get(name), self.ssh)

    def trust(self, offer: HostKeyOffer) -> bool:
        """Add an offered host key to orch's known_hosts; False when it was trusted already."""
        return trust_host_key(offer, self.ssh)


def recipe_name(recipe: str) -> str:
    """A recipe named by its name, or by its file (whose name is read from it)."""
    if recipe.endswith((".yaml", ".yml")) and Path(recipe).is_file():
        return load_recipe(Path(recipe), allow_command_meter=True).recipe.name
    return recipe
