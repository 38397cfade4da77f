"""Commands over the results database: query, export, regress, mark, nightly (registered on the app by cli.py)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `orch` app."""
