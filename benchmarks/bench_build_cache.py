"""Build cache: `orch build recipes/quickstart.yaml` cold, then again with nothing changed, then with one axis changed.

The issue's target: the second build builds 0 variants and takes under 10% of the first build's time.
Times are whole-command wall times (process start, imports and database included).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ORCH = str(Path(sys.executable).with_name("orch"))


def _build(workdir: Path, recipe: Path) -> tuple[float, str]:
    env = dict(os.environ, ORCH_DB=str(workdir / "results.db"), ORCH_ARTIFACTS=str(workdir / "artifacts"),
               COLUMNS="200")
    started = time.perf_counter()
    done = subprocess.run([ORCH, "build", str(recipe)], env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, done.stdout.strip().splitlines()[-1]


def run() -> Iterator[tuple[str, float, str]]:
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        workdir = Path(tmp)
        recipe = REPO / "recipes" / "quickstart.yaml"
        cold, _ = _build(workdir, recipe)
        yield "first build (16 variants)", cold, "s"
        warm, summary = _build(workdir, recipe)
        if "nothing to build" not in summary:
            raise RuntimeError(f"the second build built something: {summary}")
        yield "second build, nothing changed (0 variants built)", warm, "s"
        yield "second / first", warm / cold, "ratio (target < 0.10)"
        changed = workdir / "quickstart-ft3.yaml"
        changed.write_text(recipe.read_text().replace("finetune_epochs: [0, 2]", "finetune_epochs: [0, 3]"))
        partial, summary = _build(workdir, changed)
        yield f"one axis changed (finetune 2 -> 3 epochs): {summary.split(',')[0]}", partial, "s"
