"""Wall time of the demo: `orch sweep recipes/quickstart.yaml --devices local`, cold and warm.

Cold starts from an empty artifact store and database (everything is built);
warm runs the same sweep again (every variant comes from the build cache).
The issue's target: the cold sweep under 3 minutes on 2 cores.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ORCH = str(Path(sys.executable).with_name("orch"))


def _sweep(workdir: Path) -> float:
    env = dict(os.environ, ORCH_DB=str(workdir / "results.db"), ORCH_ARTIFACTS=str(workdir / "artifacts"))
    started = time.perf_counter()
    subprocess.run([ORCH, "sweep", str(REPO / "recipes" / "quickstart.yaml"), "--devices", "local"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def run() -> Iterator[tuple[str, float, str]]:
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        workdir = Path(tmp)
        cold = _sweep(workdir)
        yield "quickstart sweep, cold (build + benchmark 16 variants)", cold, "s"
        yield "  target", 180.0, "s"
        warm = _sweep(workdir)
        yield "quickstart sweep, warm (benchmark only, build cached)", warm, "s"
        with sqlite3.connect(workdir / "results.db") as db:
            rows = db.execute(
                "SELECT v.name, r.p50_ms FROM results r JOIN variants v ON v.sha256 = r.variant_sha256 "
                "WHERE r.sweep_id = 1 AND v.name IN ('dense/ft0/fp32', 'l1-0.50/ft2/fp32')").fetchall()
        p50 = dict(rows)
        ratio = p50["l1-0.50/ft2/fp32"] / p50["dense/ft0/fp32"]
        yield "p50 of l1-0.50/ft2/fp32 / p50 of dense/ft0/fp32", ratio, "ratio"
