"""The `orch` command line: thin commands over the library. The only place errors become exit codes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from orchestrator.errors import Interrupted, OrchError, UserError

app = typer.Typer(help="Benchmark orchestrator for edge ML: build compressed variants, time them on boards, "
                       "keep every number in SQL.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
console = Console()
errors = Console(stderr=True)

DbOption = Annotated[str | None, typer.Option(
    "--db", envvar="ORCH_DB", help="Results database: a file path or SQLAlchemy URL [default: ./results.db].")]
ArtifactsOption = Annotated[Path, typer.Option(
    "--artifacts", envvar="ORCH_ARTIFACTS", help="Artifact store folder.")]


@app.command()
def sweep(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    devices: Annotated[str, typer.Option(help="Comma-separated device names, `tag:NAME` or `local`.")] = "local",
    db: DbOption = None,
    artifacts: ArtifactsOption = Path("artifacts"),
    inventory: Annotated[Path | None, typer.Option(
        envvar="ORCH_INVENTORY", help="Board inventory [default: ~/.config/orch/devices.yaml].")] = None,
    resume: Annotated[bool, typer.Option(help="Run only jobs without an ok result yet (the default).")] = False,
    force: Annotated[bool, typer.Option(help="Run every job, even those already measured.")] = False,
    lock: Annotated[str, typer.Option(help="A board locked by another sweep: `wait` for it or `fail`.")] = "wait",
    repeat: Annotated[int | None, typer.Option(
        min=1, help="Measure every job N times, each kept [default: the recipe's benchmark.repeat].")] = None,
) -> None:
    """Build every variant of RECIPE, benchmark each on the devices, record every result."""
    from orchestrator.artifacts import ArtifactStore
    from orchestrator.fleet.devices import resolve_devices
    from orchestrator.fleet.inventory import default_inventory_path, load_inventory
    from orchestrator.fleet.ssh import default_settings
    from orchestrator.recipes import load_recipe
    from orchestrator.results.db import open_database
    from orchestrator.sweep import SweepOptions, run_sweep
    from orchestrator.ui import SweepProgress

    if (resume and force) or lock not in ("wait", "fail"):
        raise UserError("--resume and --force exclude each other" if resume and force else "--lock is wait or fail")
    loaded = load_recipe(recipe)
    if repeat is not None:
        loaded = loaded.with_repeat(repeat)
    boards = load_inventory(inventory or default_inventory_path())
    targets = resolve_devices(devices, boards)
    options = SweepOptions(skip_done=not force, ssh=default_settings(boards), wait_for_lock=lock == "wait")
    engine = open_database(db)
    with SweepProgress(console) as progress:
        report = run_sweep(loaded, targets, engine, ArtifactStore(artifacts), observer=progress, options=options)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.statuses.items()))
    skipped = f"; {report.jobs_skipped} already measured (--force runs them again)" if report.jobs_skipped else ""
    console.print(f"sweep {report.sweep_id}: {report.jobs_done} jobs ({counts or 'none run'}){skipped}; "
                  f"{progress.built_fresh} variants built; results in {engine.url.database or engine.url}")
    for board in report.down:
        errors.print(f"[red]{board.device} is down:[/red] {board.reason}", highlight=False, soft_wrap=True)
    if report.down:
        raise typer.Exit(1)


@app.command()
def build(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    db: DbOption = None,
    artifacts: ArtifactsOption = Path("artifacts"),
) -> None:
    """Build every variant of RECIPE (nothing already built is built again) and show them."""
    import time

    from orchestrator.artifacts import ArtifactStore
    from orchestrator.build.pipeline import build_recipe
    from orchestrator.recipes import load_recipe
    from orchestrator.results.db import open_database
    from orchestrator.ui import SweepProgress, variants_table

    loaded = load_recipe(recipe)
    started = time.perf_counter()
    with SweepProgress(console) as progress:
        outcome = build_recipe(loaded, ArtifactStore(artifacts), open_database(db), observer=progress)
    console.print(variants_table(outcome.variants, title=f"{loaded.recipe.name}: {len(outcome.variants)} variants"))
    built = sum(1 for v in outcome.variants if v.steps_run)
    summary = f"built {built} variants ({outcome.steps_run} steps)" if built else "nothing to build: all cached"
    console.print(f"{summary}, {time.perf_counter() - started:.1f} s; artifacts in {artifacts}/")


@app.command()
def results(
    sweep: Annotated[str, typer.Option(help="`last`, `all` or a sweep id.")] = "last",
    device: Annotated[str | None, typer.Option(help="Only this device.")] = None,
    recipe: Annotated[str | None, typer.Option(help="Only sweeps of this recipe name.")] = None,
    db: DbOption = None,
) -> None:
    """Show recorded results as a table."""
    from orchestrator.results.db import open_database
    from orchestrator.results.queries import result_rows
    from orchestrator.ui import results_table

    rows = result_rows(open_database(db), sweep=sweep, device=device, recipe=recipe)
    console.print(results_table(rows, title=f"results (sweep {sweep})", width=console.width))


recipes_app = typer.Typer(help="Check and inspect recipes.", no_args_is_help=True)
app.add_typer(recipes_app, name="recipes")


@recipes_app.command("check")
def recipes_check(files: Annotated[list[Path], typer.Argument(help="Recipe YAML files.")]) -> None:
    """Validate recipes: one line per file, `ok` or what is wrong and where. Exit code 2 if any is bad."""
    from orchestrator.errors import RecipeError
    from orchestrator.recipes import check_recipe, expand

    bad = 0
    for path in files:
        try:
            loaded = check_recipe(path)
            console.print(f"[green]ok[/green]   {path}: {len(expand(loaded))} variants", highlight=False)
        except RecipeError as exc:
            bad += 1
            errors.print(f"[red]bad[/red]  {exc}", highlight=False, soft_wrap=True)
    if bad:
        raise typer.Exit(2)


@recipes_app.command("show")
def recipes_show(recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")]) -> None:
    """Show the expanded grid: every variant the recipe builds, with its steps."""
    from orchestrator.recipes import expand, load_recipe
    from orchestrator.ui import plans_table

    loaded = load_recipe(recipe)
    plans = expand(loaded)
    console.print(plans_table(plans, title=f"{loaded.recipe.name}: {len(plans)} variants"))


from orchestrator import cli_data  # noqa: E402  (command modules import the app's options)
from orchestrator.cli_devices import devices_app  # noqa: E402

app.add_typer(devices_app, name="devices")
cli_data.register(app)


def main() -> None:
    """Entry point of the `orch` script: bad input exits 2, failures 1, an interrupt 130."""
    try:
        app()
    except UserError as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Interrupted as exc:
        errors.print(f"[yellow]interrupted:[/yellow] {exc}", highlight=False, soft_wrap=True)
        sys.exit(130)
    except OrchError as exc:
        errors.print(f"[red]failed:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
