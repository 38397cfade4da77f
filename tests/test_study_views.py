"""The study views (migration 0007): figures aggregated over a sweep's repeats, equal to the same figures computed in
Python from the raw rows, on SQLite and PostgreSQL; the course's figure of merit; memory in MB; `orch results`
grouped, by repeat, in every format."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import statistics
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from orchestrator.results.db import alembic_config, make_engine, open_database
from orchestrator.results.mapping import config_sha256, series_config
from tests.support import one_line_error, orch, run_env
from tests.support.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)
from tests.support.results import SPEC, create_0001_database, full_result, store_with_variants

SPREAD = ("mean_ms", "p50_ms", "p90_ms")
# (latency mean, p50, p90, mJ per image, net mJ, mean W, max W, peak MB, model MB, accuracy) of each repeat
LATEST = [(10.0, 9.0, 12.0, 50.0, 20.0, 4.0, 6.0, 80.0, 30.0, 0.90),
          (11.0, 9.5, 13.5, 55.0, 22.0, 4.5, 7.5, 82.0, 31.5, 0.91),
          (12.5, 10.5, 14.0, 53.0, 21.0, 4.2, 6.5, 81.0, 29.0, 0.92)]
OLDER = [(20.0, 18.0, 24.0, 90.0, 40.0, 5.0, 9.0, 99.0, 50.0, 0.50)] * 2


def measured(figures: tuple[float, ...], index: int, of: int, status: str = "ok") -> dict:
    mean_ms, p50, p90, energy, net, mean_w, max_w, peak_mb, model_mb, accuracy = figures
    result = full_result(p50, accuracy, energy)
    result["status"] = status
    result["timing"].update(mean_ms=mean_ms, p90_ms=p90, inputs="evaluation_set")
    result["power"].update(energy_per_inference_net_mj=net, mean_w=mean_w, max_w=max_w)
    result["memory"] = {"peak_rss_mb": peak_mb, "rss_before_session_mb": peak_mb - model_mb, "model_mb": model_mb}
    result["repeat"] = {"index": index, "of": of}
    return result


def record_study(engine: Engine) -> None:
    """Variant `a`: an older sweep, then the latest with three valid repeats and one invalid one (wild figures
    that must not count); variant `b`: one repeat without a power meter."""
    spec = dict(SPEC, measure={"min_iters": 10, "min_s": 0.5, "max_s": 10, "inputs": "evaluation_set"})
    store, older, device = store_with_variants(engine, ("a" * 64, "dense", {"prune_ratio": 0.0}),
                                               ("b" * 64, "pruned", {"prune_ratio": 0.5}))
    for index, figures in enumerate(OLDER, 1):
        store.record_result(older, device, "a" * 64, spec, measured(figures, index, 2))
    latest = store.start_sweep("tiny", "tiny.yaml", "0" * 64, ["jetson"], jobs_total=5)
    for index, figures in enumerate(LATEST, 1):
        store.record_result(latest, device, "a" * 64, spec, measured(figures, index, 4))
    store.record_result(latest, device, "a" * 64, spec, measured((1.0,) * 9 + (1.0,), 4, 4, status="invalid"))
    alone = measured(LATEST[0], 1, 1)
    alone.pop("power")
    store.record_result(latest, device, "b" * 64, spec, alone)


def expected_from_raw_rows(engine: Engine) -> dict[str, float]:
    """Variant a's figures, computed here from its valid raw rows of the latest sweep."""
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT r.* FROM results r JOIN variants v ON v.sha256 = r.variant_sha256 WHERE v.name = 'dense' "
            "AND r.status = 'ok' AND r.sweep_id = (SELECT max(sweep_id) FROM results)")).mappings().all()
    assert len(rows) == 3
    expected: dict[str, float] = {"repeats": len(rows)}
    for name in SPREAD:
        values = [row[name] for row in rows]
        expected.update({name: statistics.fmean(values), f"{name}_min": min(values), f"{name}_max": max(values),
                         f"{name}_sd": statistics.stdev(values)})
    for name in ("energy_per_inference_mj", "energy_per_inference_net_mj", "mean_w", "accuracy"):
        expected[name] = statistics.fmean(row[name] for row in rows)
    for name in ("max_w", "peak_rss_mb", "model_rss_mb"):
        expected[name] = max(row[name] for row in rows)
    expected["accuracy_pct"] = 100 * expected["accuracy"]
    return expected


def check_study_views(engine: Engine) -> None:
    record_study(engine)
    expected = expected_from_raw_rows(engine)
    with engine.connect() as connection:
        study = {row["variant"]: row for row in connection.execute(text("SELECT * FROM study_results")).mappings()}
        fom = {row["variant"]: row for row in connection.execute(text("SELECT * FROM fom")).mappings()}
        figure = connection.execute(text("SELECT * FROM figures_of_merit")).mappings().one()
        sweeps = connection.execute(text("SELECT sweep_id, repeats, jobs, invalid_jobs FROM series_sweeps "
                                         "WHERE variant = 'dense' ORDER BY sweep_id")).all()
    dense = study["dense"]
    assert {name: dense[name] for name in expected} == pytest.approx(expected)
    assert (dense["sweep_id"], dense["measure_inputs"], dense["power_measured"]) == (2, "evaluation_set", 1)
    # The course's figure of merit: accuracy (%) / (average latency (ms) x average energy per image (mJ)).
    course = expected["accuracy_pct"] / (expected["mean_ms"] * expected["energy_per_inference_mj"])
    assert fom["dense"]["fom_pct_per_ms_mj"] == pytest.approx(course)
    assert (figure["name"], figure["units"]) == ("fom_pct_per_ms_mj", "% / (ms x mJ)")
    # One repeat: no spread; no meter: no energy, so no figure of merit (but its accuracy is reported).
    assert (study["pruned"]["repeats"], study["pruned"]["p50_ms_sd"]) == (1, None)
    assert fom["pruned"]["fom_pct_per_ms_mj"] is None
    assert [tuple(row) for row in sweeps] == [(1, 2, 2, 0), (2, 3, 4, 1)]


def test_study_results_equal_the_figures_computed_from_raw_rows_on_sqlite(tmp_path):
    check_study_views(open_database(str(tmp_path / "results.db")))


def test_study_results_equal_the_figures_computed_from_raw_rows_on_postgresql(postgres_url):  # noqa: F811
    check_study_views(open_database(postgres_url))


def test_measure_inputs_is_part_of_a_series_only_when_it_is_the_evaluation_set():
    base = {"providers": ["CPUExecutionProvider"], "intra_op_threads": 1, "inter_op_threads": 1,
            "graph_optimization": "all"}
    digest = config_sha256(series_config(base))
    synthetic = dict(base, measure={"min_iters": 10, "inputs": "synthetic"})
    assert config_sha256(series_config(synthetic)) == digest
    real = series_config(dict(base, measure={"min_iters": 10, "inputs": "evaluation_set"}))
    assert real["measure_inputs"] == "evaluation_set" and config_sha256(real) != digest


def test_migration_0007_converts_memory_from_mib_to_mb_and_keeps_series(tmp_path):
    from alembic import command

    path = tmp_path / "old.db"
    create_0001_database(f"sqlite:///{path}", results=2)
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0006")
        connection.execute(text("UPDATE results SET peak_rss_mb = 100.0, rss_before_session_mb = 40.0 WHERE id = 1"))
        key_before = connection.execute(text("SELECT key FROM series")).scalar()
    engine.dispose()
    upgraded = open_database(str(path))
    with upgraded.connect() as connection:
        memory = connection.execute(text("SELECT peak_rss_mb, rss_before_session_mb, model_rss_mb FROM results "
                                         "ORDER BY id")).all()
        key_after = connection.execute(text("SELECT key FROM series")).scalar()
        study = connection.execute(text("SELECT repeats, peak_rss_mb FROM study_results")).one()
    assert [tuple(row) for row in memory] == [(pytest.approx(104.8576), pytest.approx(41.94304), None),
                                              (None, None, None)]
    assert key_after == key_before == "local:aaaaaaaaaaaa:704eb844"
    assert tuple(study) == (2, pytest.approx(104.8576))


# -- orch results ---------------------------------------------------------------------------------------------------


@pytest.fixture
def study_env(tmp_path: Path) -> dict[str, str]:
    env = run_env(tmp_path)
    engine = open_database(env["ORCH_DB"])
    record_study(engine)
    engine.dispose()
    return env


def test_results_show_one_row_per_series_with_its_repeats(study_env):
    done = orch("results", "--columns", "default,latency,memory", env=study_env)
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if "variant" in line)
    for name in ("n", "jobs", "mean ms", "sd ms", "p50 sd", "mJ/inf", "max W", "peak MB", "model MB", "acc %"):
        assert f" {name} " in f" {header} ", header
    dense = next(line for line in done.stdout.splitlines() if line.split()[:1] == ["dense"])
    assert "3/4 ok" in dense and " 3 " in dense and "11.167" in dense  # mean of 10, 11, 12.5 ms
    assert "82.0" in dense  # peak MB: the maximum over the repeats


def test_results_repeats_lists_every_job_labelled(study_env):
    done = orch("results", "--repeats", env=study_env)
    assert done.returncode == 0, done.stderr
    labels = [line.split()[2] for line in done.stdout.splitlines() if line.split()[:1] == ["dense"]]
    assert labels == ["#1/4", "#2/4", "#3/4", "#4/4"]


def test_results_as_csv_json_and_markdown(study_env):
    rows = list(csv.DictReader(io.StringIO(orch("results", "-f", "csv", env=study_env).stdout)))
    assert [row["variant"] for row in rows] == ["dense", "pruned"]
    assert float(rows[0]["mean_ms"]) == pytest.approx(statistics.fmean(f[0] for f in LATEST))
    assert rows[0]["repeats"] == "3" and rows[1]["energy_per_inference_mj"] == ""
    data = json.loads(orch("results", "--format", "json", "--columns", "power", "--repeats", env=study_env).stdout)
    assert [row["repeat"] for row in data] == ["1/4", "2/4", "3/4", "4/4", "1/1"]
    assert {"mean_w", "max_w"} <= set(data[0]) and "p50_ms" not in data[0]
    markdown = orch("results", "-f", "markdown", "--columns", "accuracy", env=study_env).stdout.splitlines()
    assert markdown[0].startswith("| sweep | device | variant |") and markdown[0].endswith("| accuracy |")
    assert len(markdown) == 4


def test_results_bad_flags_are_one_line_errors(study_env):
    one_line_error(orch("results", "--columns", "latency,speed", env=study_env), "--columns latency,speed",
                   "speed", "default, latency, energy, power, memory, accuracy")
    one_line_error(orch("results", "--format", "xml", env=study_env), "--format xml", "table, csv, json, markdown")


def test_results_table_is_not_cut_at_80_columns_when_piped(study_env):
    env = {name: value for name, value in study_env.items() if name != "COLUMNS"}
    done = orch("results", "--columns", "default,latency,energy,power,memory", env=env)
    assert done.returncode == 0, done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) > 80 and "…" not in done.stdout
    narrow = orch("results", env=dict(env, COLUMNS="60"))
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 60


def test_plain_sqlite_reads_the_study_views(study_env):
    with sqlite3.connect(study_env["ORCH_DB"]) as plain:
        assert plain.execute("SELECT variant, repeats FROM study_results ORDER BY variant").fetchall() == [
            ("dense", 3), ("pruned", 1)]


def test_a_resumed_sweeps_repeats_count_with_the_ones_before_them(tmp_path: Path):
    """Repeats #1 and #2 in one sweep, #3 measured by the sweep that resumed it: one run of three repeats. A new run
    (its own repeat #1) starts afresh."""
    engine = open_database(str(tmp_path / "results.db"))
    spec = dict(SPEC, measure={"min_iters": 10, "min_s": 0.5, "max_s": 10, "inputs": "evaluation_set"})
    store, first, device = store_with_variants(engine, ("a" * 64, "dense", {"prune_ratio": 0.0}))
    for index in (1, 2):
        store.record_result(first, device, "a" * 64, spec, measured(LATEST[index - 1], index, 3))
    resumed = store.start_sweep("tiny", "tiny.yaml", "0" * 64, ["jetson"], jobs_total=1)
    store.record_result(resumed, device, "a" * 64, spec, measured(LATEST[2], 3, 3))
    with engine.connect() as connection:
        row = connection.execute(text("SELECT repeats, mean_ms, sweep_id FROM study_results")).one()
    assert tuple(row) == (3, pytest.approx(statistics.fmean(figures[0] for figures in LATEST)), resumed)
    again = store.start_sweep("tiny", "tiny.yaml", "0" * 64, ["jetson"], jobs_total=1)
    store.record_result(again, device, "a" * 64, spec, measured(OLDER[0], 1, 3))
    with engine.connect() as connection:
        row = connection.execute(text("SELECT repeats, mean_ms, sweep_id FROM study_results")).one()
    assert tuple(row) == (1, OLDER[0][0], again)
