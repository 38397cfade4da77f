"""`orch devices ...`: the board inventory (a typer sub-app, mounted by cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

devices_app = typer.Typer(help="List, check, add, remove and trust boards.", no_args_is_help=True)
console = Console()

InventoryOption = Annotated[Path | None, typer.Option(
    "--inventory", envvar="ORCH_INVENTORY", help="Board inventory [default: ~/.config/orch/devices.yaml].")]


def _inventory(path: Path | None):  # noqa: ANN202 (the import is deferred to keep start-up short)
    from orchestrator.fleet.inventory import default_inventory_path, load_inventory

    return load_inventory(path or default_inventory_path())


@devices_app.command("list")
def list_devices(inventory: InventoryOption = None) -> None:
    """Show every device --devices can name."""
    boards = _inventory(inventory)
    table = Table(title=f"devices ({boards.path})", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("name", "target", "tags", "python", "providers", "power"):
        table.add_column(column, no_wrap=column in ("name", "target"))
    table.add_row("local", "this machine", "", "", "", "")
    for board in boards.boards.values():
        table.add_row(board.name, board.target, ",".join(board.tags), board.python, ",".join(board.providers or []),
                      (board.power or {}).get("type", ""))
    console.print(table)


@devices_app.command("check")
def check(names: Annotated[list[str] | None, typer.Argument(help="Devices (default: all).")] = None,
          inventory: InventoryOption = None) -> None:
    """Connect to each board, deploy the agent, and report its software; print the fix for anything missing."""
    from orchestrator.fleet.check import check_boards
    from orchestrator.fleet.ssh import default_settings

    boards = _inventory(inventory)
    checks = check_boards([boards.get(name) for name in names or list(boards.boards)], default_settings(boards))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("device", "", "python", "numpy", "onnxruntime", "providers", "board", "free MB", "meter"):
        table.add_column(column)
    for result in checks:
        info = result.info
        table.add_row(result.device, "[green]ok" if result.ok else "[red]fix", info.get("python", "-"),
                      info.get("numpy", "-"), info.get("onnxruntime", "-"),
                      ",".join(info.get("providers_available") or []) or "-", info.get("board") or "-",
                      f"{info['disk_free_mb']:.0f}" if "disk_free_mb" in info else "-",
                      (info.get("power_meter_detected") or {}).get("type", "-"))
    console.print(table)
    for result in checks:
        for problem in result.problems:
            console.print(f"[red]{result.device}:[/red] {problem.what}\n  fix: {problem.fix}", highlight=False,
                          soft_wrap=True)
    if not all(result.ok for result in checks):
        raise typer.Exit(1)


@devices_app.command("add")
def add(name: Annotated[str, typer.Argument(help="Device name.")],
        host: Annotated[str, typer.Option(help="Host name, address or ~/.ssh/config alias.")],
        port: Annotated[int | None, typer.Option(help="SSH port.")] = None,
        user: Annotated[str | None, typer.Option(help="Login name.")] = None,
        key: Annotated[str | None, typer.Option(help="Private key file.")] = None,
        python: Annotated[str, typer.Option(help="Python on the board.")] = "python3",
        tag: Annotated[list[str] | None, typer.Option(help="A tag (repeatable).")] = None,
        provider: Annotated[list[str] | None, typer.Option(help="Preferred provider (repeatable, in order).")] = None,
        power: Annotated[str | None, typer.Option(help="Power meter type, e.g. ina3221.")] = None,
        inventory: InventoryOption = None) -> None:
    """Add a board to the inventory (then `orch devices trust NAME` and `orch devices check NAME`)."""
    from orchestrator.fleet.inventory import board_from_fields

    boards = _inventory(inventory)
    fields = {"host": host, "port": port, "user": user, "key": key, "python": python, "tags": tag or [],
              "providers": provider or None, "power": {"type": power} if power else None}
    boards.add(board_from_fields(str(boards.path), name, {k: v for k, v in fields.items() if v is not None}))
    boards.save()
    console.print(f"added {name} to {boards.path}; next: orch devices trust {name}")


@devices_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="Device name.")], inventory: InventoryOption = None) -> None:
    """Remove a board from the inventory (its results stay in the database)."""
    boards = _inventory(inventory)
    boards.remove(name)
    boards.save()
    console.print(f"removed {name} from {boards.path}")


@devices_app.command("trust")
def trust(name: Annotated[str, typer.Argument(help="Device name.")],
          yes: Annotated[bool, typer.Option("--yes", help="Trust without asking.")] = False,
          inventory: InventoryOption = None) -> None:
    """Show the board's SSH host key fingerprint and, when confirmed, add it to orch's known_hosts."""
    from orchestrator.fleet.ssh import default_settings, fetch_host_key, trust_host_key

    boards = _inventory(inventory)
    settings = default_settings(boards)
    offer = fetch_host_key(boards.get(name), settings)
    console.print(f"{name}: {offer.name} offers {offer.key.get_name()} {offer.fingerprint} ({offer.status})",
                  highlight=False)
    question = "Compare with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the board's console. Trust it?"
    if offer.status == "new" and not yes and not typer.confirm(question):
        raise typer.Exit(1)
    added = trust_host_key(offer, settings)
    console.print(f"added to {settings.known_hosts}" if added else "already trusted")
