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
from orchestrator.results.db import database_url, open_database
from orchestrator.results.queries import result_rows
from orchestrator.results.store import ResultsStore, decode_samples, encode_samples
from tests.conftest import REPO


class _Variant:
    """The fields ResultsStore.upsert_variant reads from a BuiltVariant."""

    def __init__(self, sha: str, name: str):
        self.sha256, self.name = sha, name
        self.axes = {"prune_ratio": 0.5}
        self.lineage = [{"step": "train", "params": {}, "wall_s": 1.5, "key": "k" * 64, "version": "1"}]
        self.meta = {"params": 1234, "macs": 5_000_000_000, "sparsity": 0.0, "host_accuracy": 0.97}
        self.file_size_bytes = 4096
        self.build_s = 1.5


def _result(samples: list[float]) -> dict:
    return {"schema": 1, "status": "ok", "reasons": [],
            "timing": {"p50_ms": 1.0, "p90_ms": 1.5, "p99_ms": 2.0, "mean_ms": 1.1, "std_ms": 0.1, "min_ms": 0.9,
                       "max_ms": 2.5, "iterations": len(samples), "duration_s": 3.0, "throughput_ips": 900.0,
                       "session_create_ms": 12.0, "first_run_ms": 3.0},
            "latency_samples_ms": samples, "memory": {"peak_rss_mb": 55.5, "rss_before_session_mb": 40.0},
            "accuracy": {"metric": "top1", "value": 0.96, "n": 360}, "telemetry": {"onnxruntime": "1.32.0"}}


def test_round_trip_through_a_real_file(tmp_path):
    path = tmp_path / "results.db"
    engine = open_database(str(path))
    store = ResultsStore(engine)
    sweep = store.start_sweep("tiny", "tiny.yaml", "0" * 64, ["local"], jobs_total=1)
    device = store.upsert_device("local", "local", {"board": "test bench"})
    store.upsert_variant("tiny", _Variant("a" * 64, "dense/ft0/fp32"))
    samples = [1.0, 1.25, 0.75, 2.5]
    result_id = store.record_result(sweep, device, "a" * 64, {"providers": ["CPUExecutionProvider"],
                                                              "intra_op_threads": 1, "graph_optimization": "all"},
                                    _result(samples))
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
        assert plain.execute("SELECT version_num FROM alembic_version").fetchone() == ("0002",)
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

    from orchestrator.results.db import HEAD_REVISION, alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD_REVISION


# -- schema 0002: series, stacks, the contract's new fields, views, the samples quantile -----------------------------

SPEC = {"providers": ["CPUExecutionProvider"], "intra_op_threads": 1, "inter_op_threads": 1,
        "graph_optimization": "all", "inputs": [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"}],
        "evaluation": {"sha256": "e" * 64, "metric": "top1"}, "warmup": {"min_iters": 10, "min_s": 0.5}}


def _full_result(p50: float = 1.0, accuracy: float = 0.9, energy_mj: float = 5.0, **telemetry: str) -> dict:
    """A result with every key of the current contract."""
    conditions = {"temperatures_c": {"cpu": 51.5, "gpu": 48.0},
                  "throttling": {"under_voltage_now": False, "throttled_now": True, "soft_temp_limit_now": False,
                                 "arm_frequency_capped_now": False, "throttled_since_boot": True},
                  "cpu_freq_mhz": {"cpu0": 1800.0}, "governors": {"cpu0": "performance"}, "power_mode": "MAXN"}
    result = _result([p50, p50 * 1.1, p50 * 0.9])
    result["timing"].update(p50_ms=p50, timed_s=2.9, warmup_iterations=12, warmup_s=0.6)
    result["accuracy"]["value"] = accuracy
    result.update(
        power={"method": "meter", "meter": "ina3221", "measured": True, "samples": 290, "rate_hz": 100.0,
               "idle_w": 2.0, "mean_w": 4.5, "max_w": 6.0, "energy_j": 13.0, "energy_per_inference_mj": energy_mj,
               "energy_per_inference_net_mj": energy_mj / 2, "window_s": 2.9, "reasons": []},
        conditions_before=dict(conditions, temperatures_c={"cpu": 45.0}), conditions_after=conditions,
        repeat={"index": 1, "of": 3},
        telemetry={"board": "Jetson Orin Nano", "onnxruntime": "1.32.0", "kernel": "5.15.136-tegra",
                   "os": "Ubuntu 22.04", "python": "3.10.12", "jetpack": "6.0", "agent_version": "0.1.0", **telemetry})
    return result


def _store_with_variants(engine, *variants: tuple[str, str, dict]) -> tuple[ResultsStore, int, int]:
    store = ResultsStore(engine)
    sweep = store.start_sweep("tiny", "tiny.yaml", "0" * 64, ["jetson"], jobs_total=len(variants))
    device = store.upsert_device("jetson", "ssh", {"board": "Jetson Orin Nano"})
    for sha, name, axes in variants:
        variant = _Variant(sha, name)
        variant.axes = axes
        store.upsert_variant("tiny", variant)
    return store, sweep, device


def test_a_full_result_maps_to_columns_series_and_stack(tmp_path):
    engine = open_database(str(tmp_path / "results.db"))
    axes = {"prune_method": "l1", "prune_ratio": 0.5, "finetune_epochs": 2, "quantize": "int8_static",
            "input_size": 32, "distill": None, "fold_bn": True}
    store, sweep, device = _store_with_variants(engine, ("a" * 64, "l1-0.50/ft2/int8_static", axes))
    first = store.record_result(sweep, device, "a" * 64, SPEC, _full_result())
    second = store.record_result(sweep, device, "a" * 64, dict(SPEC, seed=3), _full_result(onnxruntime="1.33.0"))
    other = store.record_result(sweep, device, "a" * 64, dict(SPEC, intra_op_threads=4), _full_result())
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
    store, sweep, device = _store_with_variants(engine, *((sha, name, {"prune_ratio": 0.0})
                                                          for name, sha in shas.items()))
    figures = {"fast": (1.0, 0.80, 9.0), "accurate": (3.0, 0.95, 9.0), "dominated": (3.5, 0.85, 9.5),
               "frugal": (4.0, 0.90, 2.0)}
    for name, (p50, accuracy, energy) in figures.items():
        store.record_result(sweep, device, shas[name], SPEC, _full_result(p50 * 2, accuracy, energy))  # older
        store.record_result(sweep, device, shas[name], SPEC, _full_result(p50, accuracy, energy))
    store.record_result(sweep, device, shas["fast"], SPEC, dict(_full_result(0.1), status="invalid"))  # not valid
    with engine.connect() as connection:
        latest = {r.variant: r
                  for r in connection.execute(text("SELECT * FROM latest_results WHERE device = 'jetson'"))}
        pareto = {r.variant: (r.on_latency_front, r.on_energy_front)
                  for r in connection.execute(text("SELECT * FROM pareto"))}
        fom = dict(connection.execute(text("SELECT variant, fom_per_ms_mj FROM fom")).all())
        quantiles = connection.execute(text(
            "SELECT samples_quantile(s.data, 0.5), samples_quantile(s.data, 1.0), samples_quantile(NULL, 0.5) "
            "FROM latency_samples s JOIN latest_results l ON l.result_id = s.result_id "
            "WHERE l.variant = 'fast'")).one()
    assert {name: row.p50_ms for name, row in latest.items()} == {n: f[0] for n, f in figures.items()}
    assert latest["fast"].throttled == 1 and latest["fast"].onnxruntime_version == "1.32.0"
    assert latest["fast"].quantize is None and latest["fast"].prune_ratio == 0.0
    # accurate beats frugal on latency, frugal wins on energy; dominated is beaten on both by one or the other
    assert pareto == {"fast": (1, 0), "accurate": (1, 1), "frugal": (0, 1)}
    assert fom["frugal"] == pytest.approx(0.90 / (4.0 * 2.0))
    assert quantiles == pytest.approx((1.0, 1.1, None), abs=1e-6)


def test_the_quantile_is_nearest_rank():
    from orchestrator.results.samples import encode_samples, samples_quantile

    blob = encode_samples([float(v) for v in range(100, 0, -1)])  # 100..1, unsorted
    assert [samples_quantile(blob, q) for q in (0.0, 0.01, 0.5, 0.9, 0.99, 1.0)] == [1, 1, 50, 90, 99, 100]
    with pytest.raises(ValueError, match="not in"):
        samples_quantile(blob, 1.5)


# -- migrations: a walking-skeleton (0001) database keeps every row -------------------------------------------------

def fill_0001(connection, results: int = 3) -> None:
    """Rows as the walking skeleton's orch wrote them (schema 0001, its result JSON)."""
    now = "2024-05-01 12:00:00"
    connection.execute(text(
        "INSERT INTO sweeps (id, recipe_name, recipe_path, recipe_sha256, kind, status, devices, jobs_total, "
        "orch_version, started_at) VALUES (1, 'tiny', 'tiny.yaml', :sha, 'manual', 'finished', '[\"local\"]', 3, "
        "'0.0.9', :now)"), {"sha": "0" * 64, "now": now})
    connection.execute(text("INSERT INTO devices (id, name, kind, board, info, first_seen, last_seen) "
                            "VALUES (1, 'local', 'local', 'workstation', '{}', :now, :now)"), {"now": now})
    connection.execute(text(
        "INSERT INTO variants (sha256, recipe_name, name, axes, lineage, params, macs, file_size_bytes, created_at) "
        "VALUES (:sha, 'tiny', 'l1-0.50/ft0/fp32', :axes, '[]', 10, 20, 4096, :now)"),
        {"sha": "a" * 64, "axes": '{"prune_method": "l1", "prune_ratio": 0.5, "quantize": "none"}', "now": now})
    spec = ('{"providers": ["CPUExecutionProvider"], "intra_op_threads": 1, "inter_op_threads": 1, '
            '"graph_optimization": "all", "seed": 0}')
    telemetry = ('{"board": "workstation", "onnxruntime": "1.20.0", "kernel": "6.1.0", '
                 '"temperatures_before_c": {"cpu": 40.0}, "temperatures_after_c": {"cpu": 47.5}}')
    for result_id in range(1, results + 1):
        connection.execute(text(
            "INSERT INTO results (id, sweep_id, device_id, variant_sha256, status, reasons, providers, threads, "
            "graph_optimization, p50_ms, p90_ms, accuracy, telemetry, spec, created_at) VALUES (:id, 1, 1, :sha, "
            "'ok', '[]', 'CPUExecutionProvider', 1, 'all', :p50, 2.0, 0.9, :telemetry, :spec, :now)"),
            {"id": result_id, "sha": "a" * 64, "p50": float(result_id), "telemetry": telemetry, "spec": spec,
             "now": now})
        connection.execute(text("INSERT INTO latency_samples (result_id, count, encoding, data) "
                                "VALUES (:id, 2, 'zlib-float32le-ms', :data)"),
                           {"id": result_id, "data": encode_samples([1.0, float(result_id)])})


def create_0001_database(url: str, results: int = 3) -> None:
    """A database at the walking skeleton's schema, with rows."""
    from alembic import command

    from orchestrator.results.db import alembic_config, make_engine

    engine = make_engine(url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        fill_0001(connection, results)
    engine.dispose()


def check_upgraded_0001(engine, results: int = 3) -> None:
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
        rows = connection.execute(text("SELECT id, p50_ms, series_id, stack_id, temp_before_max_c, temp_after_max_c "
                                       "FROM results ORDER BY id")).all()
        assert [(r[0], r[1]) for r in rows] == [(i, float(i)) for i in range(1, results + 1)]
        assert {r[2] for r in rows} == {1} and {r[3] for r in rows} == {1} and rows[0][4:] == (40.0, 47.5)
        assert connection.execute(text("SELECT count(*) FROM latency_samples")).scalar() == results
        blob = connection.execute(text(f"SELECT data FROM latency_samples WHERE result_id = {results}")).scalar()
        assert list(decode_samples(blob)) == [1.0, float(results)]
        assert connection.execute(text("SELECT key, providers FROM series")).one() == (
            f"local:{'a' * 12}:{_config_digest()[:8]}", "CPUExecutionProvider")
        stack = connection.execute(text("SELECT onnxruntime_version, kernel, orch_version FROM software_stacks")).one()
        assert tuple(stack) == ("1.20.0", "6.1.0", "0.0.9")
        assert connection.execute(text("SELECT prune_method, prune_ratio, quantize FROM variants")).one() == (
            "l1", 0.5, "none")
        latest = connection.execute(text("SELECT result_id, p50_ms, device, variant FROM latest_results")).one()
        assert tuple(latest) == (results, float(results), "local", "l1-0.50/ft0/fp32")


def _config_digest() -> str:
    from orchestrator.results.mapping import config_sha256, series_config

    return config_sha256(series_config({"providers": ["CPUExecutionProvider"], "intra_op_threads": 1,
                                        "inter_op_threads": 1, "graph_optimization": "all"}))


def test_a_walking_skeleton_database_upgrades_and_keeps_every_row(tmp_path):
    path = tmp_path / "old.db"
    create_0001_database(f"sqlite:///{path}", results=3)
    engine = open_database(str(path))
    check_upgraded_0001(engine, results=3)
    # New results join the old series: the baseline continues across the upgrade.
    store = ResultsStore(engine)
    new = store.record_result(1, 1, "a" * 64, {"providers": ["CPUExecutionProvider"], "intra_op_threads": 1,
                                               "inter_op_threads": 1, "graph_optimization": "all", "seed": 5},
                              _full_result())
    with engine.connect() as connection:
        assert connection.execute(text(f"SELECT series_id FROM results WHERE id = {new}")).scalar() == 1


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
    store, sweep, device = _store_with_variants(engine, ("a" * 64, "v", {}))
    for _ in range(400):
        store.record_result(sweep, device, "a" * 64, SPEC, _full_result())
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
from tests.test_results_db import SPEC, _Variant, _full_result

path, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
while not go.exists():
    time.sleep(0.005)
store = ResultsStore(open_database(path))  # both processes create (migrate) the new database at once
sweep = store.start_sweep("tiny", "tiny.yaml", "0" * 64, [name], count)
device = store.upsert_device(name, "ssh", {})
variant = _Variant("b" * 64, "shared")
store.upsert_variant("tiny", variant)
for index in range(count):
    store.record_result(sweep, device, variant.sha256, SPEC, _full_result(float(index + 1)))
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
