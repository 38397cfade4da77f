"""Fleet helpers the tests share: a fast two-variant recipe, a sweep over a test fleet, SQL over a results file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from orchestrator.artifacts import ArtifactStore
from orchestrator.fleet.devices import resolve_devices
from orchestrator.fleet.inventory import load_inventory
from orchestrator.fleet.scheduler import RetryPolicy
from orchestrator.lab.sweep import SweepOptions, SweepReport, run_sweep
from orchestrator.recipes import load_recipe
from orchestrator.results.db import open_database
from tests.support import TINY_RECIPE
from tests.support.sshd import Fleet

QUICK_RETRY = RetryPolicy(attempts=2, backoff_s=0.2)


def recipe(tmp_path: Path, measure_s: float = 0.05, threads: str = "[1]", name: str = "fast.yaml") -> Path:
    """Two of the tiny recipe's variants (already built this session), with short gates."""
    text = (TINY_RECIPE
            .replace("finetune_epochs: [0, 1]", "finetune_epochs: [0]")
            .replace("quantize: [none, int8_static]", "quantize: [none]")
            .replace("warmup: {min_iters: 5, min_s: 0.05}", "warmup: {min_iters: 5, min_s: 0.01}")
            .replace("measure: {min_iters: 80, min_s: 0.2, max_s: 10}",
                     f"measure: {{min_iters: 64, min_s: {measure_s}, max_s: 10}}")
            .replace("threads: [1]", f"threads: {threads}"))
    path = tmp_path / name
    path.write_text(text)
    return path


def sweep(fleet: Fleet, recipe_path: Path, store: ArtifactStore, db: Path, devices: str = "tag:sim",
          observer: Any = None, **options: Any) -> SweepReport:
    inventory = load_inventory(fleet.inventory)
    return run_sweep(load_recipe(recipe_path), resolve_devices(devices, inventory), open_database(str(db)), store,
                     observer=observer, options=SweepOptions(ssh=fleet.settings(), retry=QUICK_RETRY, **options))


def rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(query).fetchall()
