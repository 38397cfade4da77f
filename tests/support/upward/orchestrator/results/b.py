"""The other half of a module-level cycle."""

from orchestrator.results import a  # noqa: F401
