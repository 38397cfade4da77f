"""The `orch` command line: thin commands over the Lab (orchestrator/lab/), and the one place where an error
becomes a message and an exit code (the table in orchestrator/errors.py)."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from orchestrator.cli import dashboard, data, devices, score, stream, sweep
from orchestrator.cli.options import errors
from orchestrator.errors import ExitCode, OrchError

app = typer.Typer(help="Benchmark orchestrator for edge ML: build compressed variants, time them on boards, "
                       "keep every number in SQL.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
sweep.register(app)
data.register(app)
dashboard.register(app)
score.register(app)
stream.register(app)
app.add_typer(devices.app, name="devices")

# How each kind of error is told, by the exit code it maps to.
PREFIX = {ExitCode.BAD_INPUT: "[red]error:[/red]", ExitCode.INTERRUPTED: "[yellow]interrupted:[/yellow]",
          ExitCode.FAILURE: "[red]failed:[/red]", ExitCode.JOBS_FAILED: "[red]failed:[/red]",
          ExitCode.JOBS_INVALID: "[yellow]invalid:[/yellow]"}


def main() -> None:
    """Entry point of the `orch` script: exit codes by orchestrator/errors.py's table."""
    try:
        app()
    except OrchError as exc:
        code = exc.exit_code
        errors.print(f"{PREFIX[code]} {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(int(code))


if __name__ == "__main__":
    main()
