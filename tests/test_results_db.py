"""The results database on real SQLite files: migrations, round trips, refusals."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from sqlalchemy import text

from orchestrator.errors import DatabaseError
from orchestrator.results.db import HEAD_REVISION, database_url, open_database
from orchestrator.results.mapping import series_identity, series_key
from orchestrator.results.queries import ok_results_by_series, result_rows
from orchestrator.results.store import ResultsStore, decode_samples
from tests.support import REPO
from tests.support.results import (
    SPEC,
    StubVariant,
    check_upgraded_0001,
    create_0001_database,
    full_result,
    result_with_samples,
    store_with_variants,
)


def test_round_trip_through_a_real_file(tmp_path):
    path = tmp_path / "results.db"
    engine = open_database(str(path))
    store = ResultsStore(engine)
    sweep = store.start_sweep("tiny", "tiny.yaml", "0" * 64, ["local"], jobs_total=1)
    device = store.upsert_device("local", "local", {"board": "test bench"})
    store.upsert_variant("tiny", StubVariant("a" * 64, "dense/ft0/fp32"))
    samples = [1.0, 1.25, 0.75, 2.5]
    result_id = store.record_result(sweep, device, "a" * 64, {"providers": ["CPUExecutionProvider"],
                                                              "intra_op_threads": 1, "graph_optimization": "all"},
                                    result_with_samples(samples))
    store.finish_sweep(sweep, "finished")
    engine.dispose()

    again = open_database(str(path))  # a new engine on the same file: nothing lives only in memory
    rows = result_rows(again, sweep="last")
    assert len(rows) == 1
    row = rows[0]
    assert (row["device"], row["variant"], row["status"], row["p90_ms"], row["accuracy"]) == (
        "local", "dense/ft0/fp32", "ok", 1.5, 0.96)
    assert row["macs_m"] == 5000.0  # 5 GMACs: more than a 32-bit integer holds
    with again.connect() as connection:
        blob = connection.execute(text("SELECT data FROM latency_samples WHERE result_id = :id"),
                                  {"id": result_id}).scalar_one()
        assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    np.testing.assert_allclose(decode_samples(blob), samples)
    # Any SQLite client reads it as is.
    with sqlite3.connect(path) as plain:
        assert plain.execute("SELECT count(*) FROM results").fetchone() == (1,)
        assert plain.execute("SELECT version_num FROM alembic_version").fetchone() == (HEAD_REVISION,)
        assert plain.execute("SELECT count(*) FROM latest_results").fetchone() == (1,)


def test_db_location_comes_from_flag_then_environment_then_default(monkeypatch):
    monkeypatch.delenv("ORCH_DB", raising=False)
    assert database_url(None) == "sqlite:///results.db"
    monkeypatch.setenv("ORCH_DB", "/data/lab.db")
    assert database_url(None) == "sqlite:////data/lab.db"
    assert database_url("other.db") == "sqlite:///other.db"
    assert database_url("postgresql://lab/orch") == "postgresql://lab/orch"


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match="junk.db"):
        open_database(str(junk))


def test_someone_elses_database_is_not_touched(tmp_path):
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as plain:
        plain.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(DatabaseError, match="not an orch results database"):
        open_database(str(foreign))
    with sqlite3.connect(foreign) as plain:
        tables = {r[0] for r in plain.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"invoices"}


def test_empty_database_has_no_last_sweep(tmp_path):
    from orchestrator.errors import UserError

    engine = open_database(str(tmp_path / "empty.db"))
    with pytest.raises(UserError, match="no sweep has been recorded"):
        result_rows(engine, sweep="last")
    with pytest.raises(UserError, match="--sweep 7"):
        result_rows(engine, sweep="7")


def test_head_revision_constant_is_alembics_head():
    from alembic.script import ScriptDirectory

    from orchestrator.results.db import alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD_REVISION


# -- schema 0002: series, stacks, the contract's new fields, views, the samples quantile -----------------------------


def test_a_full_result_maps_to_columns_series_and_stack(tmp_path):
    engine = open_database(str(tmp_path / "results.db"))
    axes = {"prune_method": "l1", "prune_ratio": 0.5, "finetune_epochs": 2, "quantize": "int8_static",
            "input_size": 32, "distill": None, "fold_bn": True}
    store, sweep, device = store_with_variants(engine, ("a" * 64, "l1-0.50/ft2/int8_static", axes))
    first = store.record_result(sweep, device, "a" * 64, SPEC, full_result())
    second = store.record_result(sweep, device, "a" * 64, dict(SPEC, seed=3), full_result(onnxruntime="1.33.0"))
    other = store.record_result(sweep, device, "a" * 64, dict(SPEC, intra_op_threads=4), full_result())
    old_style = store.record_result(sweep, device, "a" * 64, SPEC, {"status": "error", "error": "boom"})
    with engine.connect() as connection:
        rows = {row.id: row for row in connection.execute(text("SELECT * FROM results"))}
        stacks = connection.execute(text("SELECT id, onnxruntime_version, jetpack, kernel FROM software_stacks "
                                         "ORDER BY id")).all()
        series = connection.execute(text("SELECT id, key, intra_op_threads FROM series ORDER BY id")).all()
        variant = connection.execute(text("SELECT prune_method, prune_ratio, quantize, fold_bn, distilled "
                                          "FROM variants")).one()
    row = rows[first]
    assert (row.energy_per_inference_mj, row.power_measured, row.power_method, row.idle_w) == (5.0, 1, "meter", 2.0)
    assert (row.temp_before_max_c, row.temp_after_max_c, row.throttled, row.power_mode) == (45.0, 51.5, 1, "MAXN")
    assert (row.repeat_index, row.repeat_count, row.warmup_iterations, row.timed_s) == (1, 3, 12, 2.9)
    # The seed is not part of the series; the thread count is. The stack is per result, never in the series.
    assert rows[first].series_id == rows[second].series_id == rows[old_style].series_id != rows[other].series_id
    assert rows[first].stack_id != rows[second].stack_id
    assert [s[1] for s in stacks] == ["1.32.0", "1.33.0", None] and stacks[0][2:] == ("6.0", "5.15.136-tegra")
    assert [s[2] for s in series] == [1, 4] and series[0][1].startswith("jetson:aaaaaaaaaaaa:")
    assert tuple(variant) == ("l1", 0.5, "int8_static", 1, 0)
    assert rows[old_style].status == "error" and rows[old_style].p50_ms is None


def test_views_latest_pareto_fom_and_the_quantile_function(tmp_path):
    engine = open_database(str(tmp_path / "results.db"))
    shas = {name: sha * 64 for name, sha in (("fast", "1"), ("accurate", "2"), ("dominated", "3"), ("frugal", "4"))}
    store, sweep, device = store_with_variants(engine, *((sha, name, {"prune_ratio": 0.0})
                                                          for name, sha in shas.items()))
    figures = {"fast": (1.0, 0.80, 9.0), "accurate": (3.0, 0.95, 9.0), "dominated": (3.5, 0.85, 9.5),
               "frugal": (4.0, 0.90, 2.0)}
    for name, (p50, accuracy, energy) in figures.items():
        store.record_result(sweep, device, shas[name], SPEC, full_result(p50 * 2, accuracy, energy))  # older
        store.record_result(sweep, device, shas[name], SPEC, full_result(p50, accuracy, energy))
    store.record_result(sweep, device, shas["fast"], SPEC, dict(full_result(0.1), status="invalid"))  # not valid
    with engine.connect() as connection:
        latest = {r.variant: r
                  for r in connection.execute(text("SELECT * FROM latest_results WHERE device = 'jetson'"))}
        pareto = {r.variant: (r.on_latency_front, r.on_energy_front)
                  for r in connection.execute(text("SELECT * FROM pareto"))}
        fom = dict(connection.execute(text("SELECT variant, fom_pct_per_ms_mj FROM fom")).all())
        quantiles = connection.execute(text(
            "SELECT samples_quantile(s.data, 0.5), samples_quantile(s.data, 1.0), samples_quantile(NULL, 0.5) "
            "FROM latency_samples s JOIN latest_results l ON l.result_id = s.result_id "
            "WHERE l.variant = 'fast'")).one()
    assert {name: row.p50_ms for name, row in latest.items()} == {n: f[0] for n, f in figures.items()}
    assert latest["fast"].throttled == 1 and latest["fast"].onnxruntime_version == "1.32.0"
    assert latest["fast"].quantize is None and latest["fast"].prune_ratio == 0.0
    # pareto reads the means over the sweep's two valid results (p50 1.5 x); the same order as above:
    # accurate beats frugal on latency, frugal wins on energy; dominated is beaten on both by one or the other
    assert pareto == {"fast": (1, 0), "accurate": (1, 1), "frugal": (0, 1)}
    assert fom["frugal"] == pytest.approx(90.0 / (1.1 * 2.0))  # accuracy % / (mean ms x mJ per image)
    assert quantiles == pytest.approx((1.0, 1.1, None), abs=1e-6)


def test_the_quantile_is_nearest_rank():
    from orchestrator.results.samples import encode_samples, samples_quantile

    blob = encode_samples([float(v) for v in range(100, 0, -1)])  # 100..1, unsorted
    assert [samples_quantile(blob, q) for q in (0.0, 0.01, 0.5, 0.9, 0.99, 1.0)] == [1, 1, 50, 90, 99, 100]
    with pytest.raises(ValueError, match="not in"):
        samples_quantile(blob, 1.5)


# -- migrations: a walking-skeleton (0001) database keeps every row -------------------------------------------------


def test_a_walking_skeleton_database_upgrades_and_keeps_every_row(tmp_path):
    path = tmp_path / "old.db"
    create_0001_database(f"sqlite:///{path}", results=3)
    engine = open_database(str(path))
    check_upgraded_0001(engine, results=3)
    # New results join the old series: the baseline continues across the upgrade.
    store = ResultsStore(engine)
    new = store.record_result(1, 1, "a" * 64, {"providers": ["CPUExecutionProvider"], "intra_op_threads": 1,
                                               "inter_op_threads": 1, "graph_optimization": "all", "seed": 5},
                              full_result())
    with engine.connect() as connection:
        assert connection.execute(text(f"SELECT series_id FROM results WHERE id = {new}")).scalar() == 1


def test_series_keys_are_a_stable_contract_for_resume_and_history(tmp_path):
    """The one job identity (mapping.series_identity) gives the same key it gave before: a database written by
    an older orch keeps every series, and a sweep's resume counts its old results as done."""
    spec = {"providers": ["CPUExecutionProvider"], "intra_op_threads": 1, "inter_op_threads": 1,
            "graph_optimization": "all"}
    device, variant, digest = series_identity("local", "a" * 64, spec)
    assert series_key(device, variant, digest) == "local:aaaaaaaaaaaa:704eb844"
    # Measurement gates, seeds and power settings are not part of the identity; threads are.
    assert series_identity("local", "a" * 64, dict(spec, seed=7, warmup={"min_iters": 1, "min_s": 0})) == \
        (device, variant, digest)
    assert series_identity("local", "a" * 64, dict(spec, intra_op_threads=4))[2] != digest
    path = tmp_path / "old.db"
    create_0001_database(f"sqlite:///{path}", results=3)
    engine = open_database(str(path))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT key FROM series")).scalar() == "local:aaaaaaaaaaaa:704eb844"
    assert ok_results_by_series(engine, "tiny") == {(device, variant, digest): 3}


def test_a_database_from_a_newer_orch_is_refused(tmp_path):
    path = tmp_path / "newer.db"
    open_database(str(path)).dispose()
    with sqlite3.connect(path) as plain:
        plain.execute("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(DatabaseError, match="newer orch .*0099"):
        open_database(str(path))


def test_a_damaged_database_is_a_clear_error(tmp_path):
    path = tmp_path / "damaged.db"
    engine = open_database(str(path))
    store, sweep, device = store_with_variants(engine, ("a" * 64, "v", {}))
    for _ in range(400):
        store.record_result(sweep, device, "a" * 64, SPEC, full_result())
    engine.dispose()
    with sqlite3.connect(path) as plain:
        plain.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = plain.execute("SELECT rootpage FROM sqlite_master WHERE name = 'results'").fetchone()[0]
        page_size = plain.execute("PRAGMA page_size").fetchone()[0]
    with path.open("r+b") as raw:  # scribble over the results table's root page
        raw.seek((root - 1) * page_size)
        raw.write(b"\xde\xad\xbe\xef" * (page_size // 4))
    with pytest.raises(DatabaseError, match="damaged.db: database disk image is malformed"):
        result_rows(open_database(str(path)), sweep="all")


# -- faults: concurrent writers, a crash mid-sweep ------------------------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
from orchestrator.results.db import open_database
from orchestrator.results.store import ResultsStore
from tests.support.results import SPEC, StubVariant, full_result

path, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
while not go.exists():
    time.sleep(0.005)
store = ResultsStore(open_database(path))  # both processes create (migrate) the new database at once
sweep = store.start_sweep("tiny", "tiny.yaml", "0" * 64, [name], count)
device = store.upsert_device(name, "ssh", {})
variant = StubVariant("b" * 64, "shared")
store.upsert_variant("tiny", variant)
for index in range(count):
    store.record_result(sweep, device, variant.sha256, SPEC, full_result(float(index + 1)))
    print(index + 1, flush=True)
store.finish_sweep(sweep, "finished")
"""


def _writer(tmp_path, path, name: str, count: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(count), str(tmp_path / "go")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_writing_at_once_both_succeed_and_lose_nothing(tmp_path):
    path = tmp_path / "shared.db"
    writers = [_writer(tmp_path, path, name, 150) for name in ("rpi", "jetson")]
    time.sleep(1.0)  # let both import and wait at the start line
    (tmp_path / "go").touch()
    for process in writers:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    with sqlite3.connect(path) as plain:
        assert plain.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert plain.execute("SELECT count(*) FROM results").fetchone() == (300,)
        assert plain.execute("SELECT count(*) FROM latency_samples").fetchone() == (300,)
        per_device = dict(plain.execute("SELECT d.name, count(*) FROM results r JOIN devices d ON d.id = r.device_id "
                                        "GROUP BY d.name").fetchall())
        assert per_device == {"rpi": 150, "jetson": 150}
        assert plain.execute("SELECT count(*) FROM series").fetchone() == (2,)
        assert plain.execute("SELECT count(*) FROM variants").fetchone() == (1,)


def test_a_crash_mid_sweep_keeps_every_committed_result(tmp_path):
    path = tmp_path / "crash.db"
    (tmp_path / "go").touch()
    process = _writer(tmp_path, path, "rpi", 100_000)
    assert process.stdout is not None
    reported = 0
    while reported < 30:
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else ""
        reported = int(line)
    os.kill(process.pid, signal.SIGKILL)  # no cleanup, no finally: as a power cut looks to the process
    process.wait(timeout=30)
    engine = open_database(str(path))
    rows = result_rows(engine, sweep="all")
    assert len(rows) >= reported  # every result the writer saw committed is there
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        orphans = connection.execute(text("SELECT count(*) FROM results r LEFT JOIN latency_samples s "
                                          "ON s.result_id = r.id WHERE s.result_id IS NULL")).scalar()
    assert orphans == 0  # a result and its samples commit together
    assert {row["status"] for row in rows} == {"ok"}
