"""One half of a module-level cycle."""

from orchestrator.results import b  # noqa: F401
