"""Dashboards at scale: every shipped dashboard, PNGs included, drawn from the 1,002,000-result database.

The targets: `orch dashboard` (all pages and one PNG per drawn panel) finishes in under 30 s and the largest page
stays under 15 MB. The database is bench_queries' (10 devices x 200 series x 167 nights x 3 repeats); the
dashboards run through orch's own read-only path, so big panels are downsampled per series as a user sees them.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.bench_queries import DEVICES, NIGHTS, REPEATS, SERIES_PER_DEVICE

SAMPLES = 10  # latency samples per result: the dashboards never read them


def run() -> Iterator[tuple[str, float, str]]:
    from orchestrator.dashboards import SHIPPED, dashboard_paths, render_dashboards
    from orchestrator.results.db import open_database
    from orchestrator.results.readonly import open_readonly
    from orchestrator.results.synthetic import bulk_history

    with tempfile.TemporaryDirectory(prefix="orch-bench-dash-") as tmp:
        path, out = Path(tmp) / "results.db", Path(tmp) / "out"
        engine = open_database(str(path))
        written = bulk_history(engine, DEVICES, SERIES_PER_DEVICE, NIGHTS, samples_per_result=SAMPLES,
                               repeats=REPEATS)
        engine.dispose()
        yield f"database of {written:,} results", path.stat().st_size / 2**20, "MiB"
        started = time.perf_counter()
        pages, pngs = render_dashboards(open_readonly(str(path)), dashboard_paths([], SHIPPED), out)
        elapsed = time.perf_counter() - started
        if pngs.skipped:
            raise RuntimeError(f"PNGs not written: {pngs.skipped}")
        drawn = sum(page.drawn for page in pages)
        if pngs.written != drawn:
            raise RuntimeError(f"{pngs.written} PNGs for {drawn} drawn panels")
        yield (f"all {len(pages)} dashboards ({drawn} panels drawn, "
               f"{sum(page.downsampled for page in pages)} downsampled, {pngs.written} PNGs)", elapsed,
               "s (target < 30)")
        largest = max(pages, key=lambda page: page.path.stat().st_size)
        yield f"largest page ({largest.name}.html)", largest.path.stat().st_size / 1e6, "MB (target < 15)"
