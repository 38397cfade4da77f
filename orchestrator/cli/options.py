"""What every command shares: the consoles it prints to, the options naming where things are, and the Lab."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from orchestrator.lab import Lab

# No emoji codes: a value such as `:x:` prints as written.
console = Console(emoji=False)
errors = Console(stderr=True, emoji=False)

DbOption = Annotated[str | None, typer.Option(
    "--db", envvar="ORCH_DB", help="Results database: a file path or SQLAlchemy URL [default: ./results.db].")]
ArtifactsOption = Annotated[Path, typer.Option(
    "--artifacts", envvar="ORCH_ARTIFACTS", help="Artifact store folder.")]
InventoryOption = Annotated[Path | None, typer.Option(
    "--inventory", envvar="ORCH_INVENTORY", help="Board inventory [default: ~/.config/orch/devices.yaml].")]
AllowCommandOption = Annotated[bool, typer.Option(
    "--allow-command-meter", help="Run a recipe whose power meter is a `command` (it runs that program on every "
                                  "board); a board's own command meter belongs in the inventory.")]
OverlapLocalOption = Annotated[bool, typer.Option(
    "--overlap-local", help="Measure on the `local` device while variants are still building (its timings then "
                            "share this machine with the build); by default it waits for the build to end.")]
BuildExecutorOption = Annotated[str | None, typer.Option(
    "--build-executor", envvar="ORCH_BUILD_EXECUTOR",
    help="Where build steps run: inline, processes[:N] (local processes) or ray[:HOST:PORT] (a Ray cluster; "
         "pip install 'orch[ray]') [default: inline].")]
ConfigOption = Annotated[Path | None, typer.Option(
    "--config", help="YAML file of regress settings (baseline_size, z_threshold, metrics, ...); flags win.")]


def lab(db: str | None = None, artifacts: Path = Path("artifacts"), inventory: Path | None = None,
        allow_command_meter: bool = False) -> Lab:
    """The Lab the options name."""
    return Lab(db=db, artifacts=artifacts, inventory_path=inventory, allow_command_meter=allow_command_meter)


def show(*renderables: Any) -> None:
    """Print each table or line to stdout; a plain string is printed as written (never read as markup)."""
    for item in renderables:
        console.print(Text(item) if isinstance(item, str) else item, highlight=False,
                      soft_wrap=isinstance(item, str | Text))
