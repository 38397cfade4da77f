"""Where each job setting comes from when a recipe and a board's inventory entry both speak of it: one function
per setting, and nowhere else.

    setting        rule
    thermal gate   the board's max_c is a ceiling: the recipe may set a lower one, never a higher one
    power meter    the board's declared meter is its hardware: the recipe may switch power off ({type: none})
                   or set options of that same meter, never swap it for another; a board that declares none
                   takes the recipe's meter (or none)
    providers      the recipe's when it names them, else the board's preferred ones, else the CPU
    gates          warm-up and measurement gates, max_cv, rest and idle time: the recipe's alone
"""

from __future__ import annotations

from typing import Any

from agent.spec import Thermal
from orchestrator.recipes.schema import BenchmarkSpec

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


def thermal_for(recipe: Thermal, board: Thermal | None) -> Thermal:
    """The stricter of the two thermal gates: the lower max_c (None: no limit), the longer wait."""
    if board is None or board.max_c is None:
        return recipe
    limits = [c for c in (recipe.max_c, board.max_c) if c is not None]
    return Thermal(max_c=min(limits), wait_timeout_s=max(recipe.wait_timeout_s, board.wait_timeout_s))


def power_for(recipe: dict[str, Any] | None, board: dict[str, Any] | None) -> dict[str, Any] | None:
    """The power meter spec a job reads (see the module docstring; a board's `auto` or `none` declares no meter)."""
    if recipe is None or board is None:
        return board if recipe is None else recipe
    if board.get("type") in ("auto", "none") or recipe.get("type") == "none":
        return recipe
    if recipe.get("type") in ("auto", board.get("type")):
        return {**board, **{k: v for k, v in recipe.items() if k != "type"}}
    return board


def providers_for(benchmark: BenchmarkSpec, board: tuple[str, ...] | None) -> list[str]:
    """The recipe's providers when it names them, else the board's preferred ones, else the CPU."""
    if "providers" in benchmark.model_fields_set:
        return list(benchmark.providers)
    return list(board or DEFAULT_PROVIDERS)
