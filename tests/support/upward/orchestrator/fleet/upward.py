"""The fleet layer importing the application and interface layers above it, each in another way."""

from typing import TYPE_CHECKING

from orchestrator.lab import Lab  # noqa: F401  (module level)

if TYPE_CHECKING:
    from orchestrator.cli import app  # noqa: F401  (only for the type checker)


def later() -> None:
    from ..lab import sweep  # noqa: F401  (relative, inside a function)


class Deferred:
    def method(self) -> None:
        import orchestrator.cli.options  # noqa: F401  (inside a method)
