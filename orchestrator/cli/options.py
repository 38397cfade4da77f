"""What every command shares: the consoles it prints to, the options naming where things are, and the Lab."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from orchestrator.lab import Lab

console = Console()
errors = Console(stderr=True)

DbOption = Annotated[str | None, typer.Option(
    "--db", envvar="ORCH_DB", help="Results database: a file path or SQLAlchemy URL [default: ./results.db].")]
ArtifactsOption = Annotated[Path, typer.Option(
    "--artifacts", envvar="ORCH_ARTIFACTS", help="Artifact store folder.")]
InventoryOption = Annotated[Path | None, typer.Option(
    "--inventory", envvar="ORCH_INVENTORY", help="Board inventory [default: ~/.config/orch/devices.yaml].")]
ConfigOption = Annotated[Path | None, typer.Option(
    "--config", help="YAML file of regress settings (baseline_size, z_threshold, metrics, ...); flags win.")]


def lab(db: str | None = None, artifacts: Path = Path("artifacts"), inventory: Path | None = None) -> Lab:
    """The Lab the options name."""
    return Lab(db=db, artifacts=artifacts, inventory_path=inventory)


def show(*renderables: Any) -> None:
    """Print each table or line (rich markup) to stdout, as written."""
    for item in renderables:
        console.print(item, highlight=False, soft_wrap=isinstance(item, str))
