"""`orch devices ...`: the board inventory (a typer sub-app, mounted by cli.py)."""

from __future__ import annotations

import typer

devices_app = typer.Typer(help="List, check, add, remove and trust boards.", no_args_is_help=True)
