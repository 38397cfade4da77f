"""The results database on real SQLite files: migrations, round trips, refusals."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from sqlalchemy import text

from orchestrator.errors import DatabaseError
from orchestrator.results.db import database_url, open_database
from orchestrator.results.queries import result_rows
from orchestrator.results.store import ResultsStore, decode_samples


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
        assert plain.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)


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
