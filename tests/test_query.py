"""`orch query`, `orch export` and `orch results` on a real results.db, and other tools reading the same file."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.errors import DatabaseError
from orchestrator.results.readonly import open_readonly, run_query
from orchestrator.results.samples import decode_samples
from tests.support import one_line_error, orch, run_env


def _snapshot(path: Path) -> tuple:
    with sqlite3.connect(path) as plain:
        return (plain.execute("SELECT count(*), sum(p50_ms) FROM results").fetchone(),
                plain.execute("SELECT count(*) FROM latency_samples").fetchone(),
                plain.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall())


def test_query_prints_a_table_or_csv_json_markdown_parquet(tmp_path, lab_db):
    env = run_env(tmp_path)
    sql = "SELECT device, variant, p50_ms, accuracy FROM latest_results ORDER BY device, variant"
    table = orch("query", sql, env=env)
    assert table.returncode == 0, table.stderr
    assert "device" in table.stdout and "board-1" in table.stdout and "6 rows" in table.stdout
    rows = list(csv.DictReader(io.StringIO(orch("query", sql, "--format", "csv", env=env).stdout)))
    assert len(rows) == 6 and rows[0]["device"] == "board-0" and float(rows[0]["p50_ms"]) > 0
    records = json.loads(orch("query", sql, "-f", "json", env=env).stdout)
    assert [r["variant"] for r in records] == [r["variant"] for r in rows] and isinstance(records[0]["p50_ms"], float)
    markdown = orch("query", sql, "-f", "markdown", env=env).stdout.splitlines()
    assert markdown[0] == "| device | variant | p50_ms | accuracy |" and len(markdown) == 8
    parquet = tmp_path / "latest.parquet"
    done = orch("query", sql, "-f", "parquet", "-o", str(parquet), env=env)
    assert done.returncode == 0 and "6 rows written" in done.stderr
    frame = pd.read_parquet(parquet)
    assert list(frame.columns) == ["device", "variant", "p50_ms", "accuracy"] and frame["p50_ms"].dtype == "float64"
    blobs = orch("query", "SELECT result_id, data FROM latency_samples LIMIT 1", "-f", "json", env=env).stdout
    assert len(decode_samples(base64.b64decode(json.loads(blobs)[0]["data"]))) == 20


@pytest.mark.parametrize("sql", [
    "DELETE FROM results", "DROP TABLE results", "UPDATE results SET p50_ms = 0",
    "INSERT INTO devices (name, kind, info, first_seen, last_seen) VALUES ('x', 'x', '{}', 0, 0)",
    "SELECT 1; DELETE FROM results", "PRAGMA query_only = 0", "ATTACH DATABASE 'other.db' AS other",
    "CREATE TABLE mine (i INTEGER)", "VACUUM",
])
def test_a_query_can_never_change_the_database(tmp_path, lab_db, sql, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _snapshot(lab_db)
    engine = open_readonly(str(lab_db))
    if sql.startswith("PRAGMA"):  # switching query_only off is allowed, and still cannot write: the file is read-only
        run_query(engine, sql)
        sql = "DELETE FROM results"
    with pytest.raises(DatabaseError, match="query failed"):
        run_query(engine, sql)
    assert _snapshot(lab_db) == before
    assert not (tmp_path / "other.db").exists()


def test_a_write_attempt_in_orch_query_is_a_one_line_error(tmp_path, lab_db):
    before = _snapshot(lab_db)
    one_line_error(orch("query", "DELETE FROM results", env=run_env(tmp_path)), "query failed",
                   "attempt to write a readonly database", "orch query is read-only")
    assert _snapshot(lab_db) == before


def test_bad_queries_and_bad_files_are_one_line_errors(tmp_path, lab_db):
    env = run_env(tmp_path)
    one_line_error(orch("query", "SELEC * FROM results", env=env), "query failed", "syntax error")
    one_line_error(orch("query", "SELECT * FROM nope", env=env), "no such table: nope")
    one_line_error(orch("query", "  ", env=env), "the query is empty")
    one_line_error(orch("query", "SELECT 1", "-f", "xml", env=env), "--format xml")
    one_line_error(orch("query", "SELECT 1", "-f", "parquet", env=env), "--output FILE")
    missing = dict(env, ORCH_DB=str(tmp_path / "missing.db"))
    one_line_error(orch("query", "SELECT 1", env=missing), "missing.db: no such results database")
    assert not (tmp_path / "missing.db").exists()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    one_line_error(orch("query", "SELECT 1", env=dict(env, ORCH_DB=str(junk))), "junk.db")
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as plain:
        plain.execute("CREATE TABLE invoices (id INTEGER)")
    one_line_error(orch("regress", env=dict(env, ORCH_DB=str(foreign))), "not an orch results database")


def test_export_dumps_every_table_and_view(tmp_path, lab_db):
    env = run_env(tmp_path)
    done = orch("export", str(tmp_path / "csv"), env=env)
    assert done.returncode == 0, done.stderr
    names = {p.stem for p in (tmp_path / "csv").iterdir()}
    assert {"results", "latency_samples", "series", "software_stacks", "latest_results", "pareto", "fom",
            "regressions", "alerts", "change_markers"} <= names and "alembic_version" not in names
    results = pd.read_csv(tmp_path / "csv" / "results.csv")
    assert len(results) == 18 and "results: 18 rows" in done.stdout
    samples = pd.read_csv(tmp_path / "csv" / "latency_samples.csv")
    assert len(decode_samples(base64.b64decode(samples["data"][0]))) == 20
    done = orch("export", str(tmp_path / "pq"), "-f", "parquet", "-t", "results", "-t", "latest_results", env=env)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_parquet(tmp_path / "pq" / "results.parquet")) == 18
    assert len(pd.read_parquet(tmp_path / "pq" / "latest_results.parquet")) == 6
    one_line_error(orch("export", str(tmp_path / "x"), "-t", "nope", env=env), "no table or view named nope")


def test_results_filters_by_sweep_device_and_recipe(tmp_path, lab_db):
    env = run_env(tmp_path)
    shown = orch("results", "--sweep", "all", "--device", "board-1", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("l1-0.") == 9 and "board-0" not in shown.stdout
    assert orch("results", "--sweep", "2", "--recipe", "synthetic", env=env).stdout.count(" ok ") == 6
    assert orch("results", "--sweep", "all", "--recipe", "other", env=env).stdout.count(" ok ") == 0


def test_sqlite3_and_pandas_read_results_db_as_is(tmp_path, lab_db):
    """What docs/results.md shows: no orch needed to read the file."""
    sqlite3_cli = shutil.which("sqlite3")
    if sqlite3_cli:
        done = subprocess.run([sqlite3_cli, "-csv", str(lab_db), "SELECT count(*) FROM latest_results"],
                              capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "6"
    with sqlite3.connect(lab_db) as plain:
        frame = pd.read_sql("SELECT device, variant, p50_ms, energy_per_inference_mj FROM latest_results", plain)
        pareto = pd.read_sql("SELECT * FROM pareto", plain)
    assert len(frame) == 6 and frame["energy_per_inference_mj"].notna().all() and len(pareto) >= 2
