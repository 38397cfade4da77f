"""`orch sweep`, `orch build`, `orch results` and `orch recipes check|show`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.options import (
    AllowCommandOption,
    ArtifactsOption,
    BuildExecutorOption,
    DbOption,
    InventoryOption,
    OverlapLocalOption,
    console,
    errors,
    lab,
    show,
)
from orchestrator.errors import FailureFound, RecipeError, UserError
from orchestrator.recipes import check_recipe, expand, load_recipe
from orchestrator.results.export import TEXT_FORMATS, write_text
from orchestrator.ui import (
    COLUMN_GROUPS,
    SweepProgress,
    build_failures,
    job_reasons,
    line,
    plans_table,
    result_columns,
    result_values,
    results_table,
    sweep_summary,
    table_width,
    variants_table,
)

RecipeArgument = Annotated[Path, typer.Argument(help="Recipe YAML file.")]
TargetOption = Annotated[str | None, typer.Option(
    "--target-runtime", help="Build for this onnxruntime: `auto` (the boards' oldest; for build, this machine's) "
                             "or a release such as 1.16 [default: the recipe's variants.target_runtime].")]


def sweep(
    recipe: RecipeArgument,
    devices: Annotated[str, typer.Option(help="Comma-separated device names, `tag:NAME` or `local`.")] = "local",
    db: DbOption = None,
    artifacts: ArtifactsOption = Path("artifacts"),
    inventory: InventoryOption = None,
    force: Annotated[bool, typer.Option(help="Run every job, even those already measured (by default a sweep "
                                             "runs only jobs without an ok result yet: it resumes).")] = False,
    lock: Annotated[str, typer.Option(help="A board locked by another sweep: `wait` for it or `fail`.")] = "wait",
    repeat: Annotated[int | None, typer.Option(
        min=1, help="Measure every job N times, each kept [default: the recipe's benchmark.repeat].")] = None,
    target_runtime: TargetOption = None,
    overlap_local: OverlapLocalOption = False,
    build_executor: BuildExecutorOption = None,
    allow_command_meter: AllowCommandOption = False,
) -> None:
    """Build every variant of RECIPE, benchmark each on the devices as soon as it is built, record every result."""
    if lock not in ("wait", "fail"):
        raise UserError("--lock is wait or fail")
    where = lab(db, artifacts, inventory, allow_command_meter)
    with SweepProgress(console) as progress:
        report = where.sweep(recipe, devices, force=force, wait_for_lock=lock == "wait", repeat=repeat,
                             observer=progress, target_runtime=target_runtime, overlap_local=overlap_local,
                             build_executor=build_executor)
    show(sweep_summary(report, progress.built_fresh, where.engine.url.database or str(where.engine.url)),
         *build_failures(report.failed_builds), *job_reasons(report))
    failure = report.failure()
    if failure is not None:
        raise failure


def build(recipe: RecipeArgument, db: DbOption = None, artifacts: ArtifactsOption = Path("artifacts"),
          target_runtime: TargetOption = None, build_executor: BuildExecutorOption = None,
          allow_command_meter: AllowCommandOption = False) -> None:
    """Build every variant of RECIPE (nothing already built is built again) and show them."""
    started = time.perf_counter()
    with SweepProgress(console) as progress:
        outcome = lab(db, artifacts, allow_command_meter=allow_command_meter).build(
            recipe, observer=progress, target_runtime=target_runtime, build_executor=build_executor)
    built = sum(1 for v in outcome.variants if v.steps_run)
    summary = f"built {built} variants ({outcome.steps_run} steps)" if built else "nothing to build: all cached"
    summary += f" for onnxruntime {outcome.target.version}" if outcome.target else ""
    show(variants_table(outcome.variants, title=f"{outcome.recipe}: {len(outcome.variants)} variants"),
         f"{summary}, {time.perf_counter() - started:.1f} s; artifacts in {artifacts}/",
         *build_failures(outcome.failures))
    if outcome.failures:
        raise FailureFound(f"{len(outcome.failures)} variants did not build")


def results(
    sweep: Annotated[str, typer.Option(help="`last`, `all` or a sweep id.")] = "last",
    device: Annotated[str | None, typer.Option(help="Only this device.")] = None,
    recipe: Annotated[str | None, typer.Option(help="Only sweeps of this recipe name.")] = None,
    columns: Annotated[str, typer.Option(help=f"Column groups, comma-separated: {', '.join(COLUMN_GROUPS)}.")]
    = "default",
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv, json, markdown or latex.")] = "table",
    repeats: Annotated[bool, typer.Option("--repeats", help="One row per job (each repeat), not per series.")]
    = False,
    db: DbOption = None,
) -> None:
    """Show recorded results: one row per series and sweep, its valid repeats aggregated (--repeats: every job)."""
    if fmt not in ("table", *TEXT_FORMATS):
        raise UserError(f"--format {fmt}: unknown format (one of table, {', '.join(TEXT_FORMATS)})")
    rows = lab(db).results(sweep=sweep, device=device, recipe=recipe, repeats=repeats)
    chosen = result_columns(columns, rows, grouped=not repeats)
    if fmt != "table":
        write_text(result_values(rows, chosen), fmt, sys.stdout)
        return
    table = results_table(rows, chosen, title=f"results (sweep {sweep})")
    console.width = table_width(console, table)  # rich caps a print's width at the console's
    show(table)


recipes_app = typer.Typer(help="Check and inspect recipes.", no_args_is_help=True)


@recipes_app.command("check")
def recipes_check(files: Annotated[list[Path], typer.Argument(help="Recipe YAML files.")],
                  allow_command_meter: AllowCommandOption = False) -> None:
    """Validate recipes: one line per file, `ok` or what is wrong and where. Exit code 2 if any is bad."""
    bad = 0
    for path in files:
        try:
            show(line(("ok", "green"), f"   {path}: {len(expand(check_recipe(path, allow_command_meter)))} variants"))
        except RecipeError as exc:
            bad += 1
            errors.print(line(("bad", "red"), f"  {exc}"), highlight=False, soft_wrap=True)
    if bad:
        raise UserError(f"{bad} of {len(files)} recipes did not check out")


@recipes_app.command("show")
def recipes_show(recipe: RecipeArgument, allow_command_meter: AllowCommandOption = False) -> None:
    """Show the expanded grid: every variant the recipe builds, with its steps."""
    loaded = load_recipe(recipe, allow_command_meter)
    plans = expand(loaded)
    show(plans_table(plans, title=f"{loaded.recipe.name}: {len(plans)} variants"))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `orch` app."""
    for command in (sweep, build, results):
        app.command()(command)
    app.add_typer(recipes_app, name="recipes")
