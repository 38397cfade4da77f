"""Results database at scale: 1,002,000 results with latency samples in SQLite (2,000 series, 167 nights, 3 repeats).

The targets: `latest_results`, `study_results` (the averages over a sweep's repeats) and `fom` for one device
answer in under 200 ms, and a full regress over the 2,000 series finishes in under 30 s. The history is written
with executemany in one transaction (orchestrator.results.synthetic.bulk_history); the queries go through orch's
own read-only and regress paths.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DEVICES, SERIES_PER_DEVICE, NIGHTS, REPEATS, SAMPLES = 10, 200, 167, 3, 100
TIMED_QUERIES = (  # (view, SQL): each answers one device's question, SERIES_PER_DEVICE rows
    ("latest_results", "SELECT * FROM latest_results WHERE device = 'dev-03'"),
    ("study_results", "SELECT * FROM study_results WHERE device = 'dev-03'"),
    ("fom", "SELECT * FROM fom WHERE device = 'dev-03' ORDER BY fom_pct_per_ms_mj DESC"),
)


def run() -> Iterator[tuple[str, float, str]]:
    from orchestrator.results.db import open_database
    from orchestrator.results.judge import RegressConfig
    from orchestrator.results.readonly import open_readonly, run_query
    from orchestrator.results.regress import regress
    from orchestrator.results.synthetic import bulk_history

    with tempfile.TemporaryDirectory(prefix="orch-bench-db-") as tmp:
        path = Path(tmp) / "results.db"
        engine = open_database(str(path))
        started = time.perf_counter()
        written = bulk_history(engine, DEVICES, SERIES_PER_DEVICE, NIGHTS, samples_per_result=SAMPLES, repeats=REPEATS)
        yield f"write {written:,} results + samples (executemany)", time.perf_counter() - started, "s"
        yield "database size", path.stat().st_size / 2**20, "MiB"

        readonly = open_readonly(str(path))
        for view, sql in TIMED_QUERIES:
            timings, rows = [], 0
            for _ in range(7):
                started = time.perf_counter()
                rows = len(run_query(readonly, sql).rows)
                timings.append(time.perf_counter() - started)
            if rows != SERIES_PER_DEVICE:
                raise RuntimeError(f"{view} gave {rows} rows for one device, expected {SERIES_PER_DEVICE}")
            yield f"{view} for one device ({rows} rows), first query", 1000 * timings[0], "ms (target < 200)"
            yield f"{view} for one device ({rows} rows), median of 7", 1000 * statistics.median(timings), \
                "ms (target < 200)"
        started = time.perf_counter()
        repeats = run_query(readonly, f"SELECT repeats FROM series_sweeps WHERE sweep_id = {NIGHTS}").rows
        if len(repeats) != DEVICES * SERIES_PER_DEVICE or {row[0] for row in repeats} != {REPEATS}:
            raise RuntimeError(f"series_sweeps gave {len(repeats)} rows for the last sweep")
        yield f"series_sweeps for one sweep ({len(repeats):,} rows)", 1000 * (time.perf_counter() - started), "ms"
        started = time.perf_counter()
        pareto = len(run_query(readonly, "SELECT * FROM pareto WHERE device = 'dev-03'").rows)
        yield f"pareto for one device ({pareto} rows)", 1000 * (time.perf_counter() - started), "ms"
        readonly.engine.dispose()

        started = time.perf_counter()
        report = regress(engine, RegressConfig(cooldown_s=0))
        elapsed = time.perf_counter() - started
        if report.series_checked != DEVICES * SERIES_PER_DEVICE:
            raise RuntimeError(f"regress checked {report.series_checked} series")
        yield f"regress over {report.series_checked:,} series (no re-run hook)", elapsed, "s (target < 30)"
        engine.dispose()
