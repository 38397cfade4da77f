"""`orch devices list|check|add|remove|trust`: the board inventory."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.options import DbOption, InventoryOption, lab, show
from orchestrator.errors import FailureFound
from orchestrator.ui import checks_table, devices_table

app = typer.Typer(help="List, check, add, remove and trust boards.", no_args_is_help=True)


@app.command("list")
def list_devices(inventory: InventoryOption = None) -> None:
    """Show every device --devices can name."""
    show(devices_table(lab(inventory=inventory).inventory))


@app.command("check")
def check(names: Annotated[list[str] | None, typer.Argument(help="Devices (default: all).")] = None,
          inventory: InventoryOption = None, db: DbOption = None) -> None:
    """Connect to each board, deploy the agent, and report its software; print the fix for anything missing."""
    checks = lab(db, inventory=inventory).check_devices(names)
    show(*checks_table(checks))
    failing = [result.device for result in checks if not result.ok]
    if failing:
        raise FailureFound(f"{', '.join(failing)}: not ready to run jobs (the fix for each problem is above)")


@app.command("add")
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
    fields = {"host": host, "port": port, "user": user, "key": key, "python": python, "tags": tag or [],
              "providers": provider or None, "power": {"type": power} if power else None}
    where = lab(inventory=inventory)
    where.add_device(name, {k: v for k, v in fields.items() if v is not None})
    show(f"added {name} to {where.inventory.path}; next: orch devices trust {name}")


@app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="Device name.")], inventory: InventoryOption = None) -> None:
    """Remove a board from the inventory (its results stay in the database)."""
    where = lab(inventory=inventory)
    where.remove_device(name)
    show(f"removed {name} from {where.inventory.path}")


@app.command("trust")
def trust(name: Annotated[str, typer.Argument(help="Device name.")],
          yes: Annotated[bool, typer.Option("--yes", help="Trust without asking.")] = False,
          inventory: InventoryOption = None) -> None:
    """Show the board's SSH host key fingerprint and, when confirmed, add it to orch's known_hosts."""
    where = lab(inventory=inventory)
    offer = where.host_key(name)
    show(f"{name}: {offer.name} offers {offer.key.get_name()} {offer.fingerprint} ({offer.status})")
    question = "Compare with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the board's console. Trust it?"
    if offer.status == "new" and not yes and not typer.confirm(question):
        raise FailureFound(f"{name}: host key not trusted")
    show(f"added to {where.ssh.known_hosts}" if where.trust(offer) else "already trusted")
