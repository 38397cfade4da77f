"""The agent reaching into the workstation's code (it must stand alone)."""

import orchestrator.errors  # noqa: F401
