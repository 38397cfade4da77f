"""The results database on a real PostgreSQL server: migrations, views, the quantile function, read-only queries,
regress, and the upgrade of a walking-skeleton database."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from orchestrator.errors import DatabaseError
from orchestrator.results.db import open_database
from orchestrator.results.judge import RegressConfig
from orchestrator.results.readonly import open_readonly, run_query
from orchestrator.results.regress import regress
from orchestrator.results.store import ResultsStore
from orchestrator.results.synthetic import Step, SyntheticLab
from tests.support.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)
from tests.support.results import (
    SPEC,
    check_upgraded_0001,
    create_0001_database,
    full_result,
    store_with_variants,
)


def test_round_trip_views_and_quantile(postgres_url):  # noqa: F811
    engine = open_database(postgres_url)
    store, sweep, device = store_with_variants(engine, ("a" * 64, "fast", {"prune_ratio": 0.0}),
                                                ("b" * 64, "slow", {"prune_ratio": 0.5}))
    store.record_result(sweep, device, "a" * 64, SPEC, full_result(1.0, 0.90, 3.0))
    store.record_result(sweep, device, "b" * 64, SPEC, full_result(2.0, 0.80, 4.0))  # dominated on both
    with engine.connect() as connection:
        latest = connection.execute(text("SELECT variant, p50_ms, throttled FROM latest_results "
                                          "ORDER BY variant")).all()
        pareto = connection.execute(text("SELECT variant, on_latency_front, on_energy_front FROM pareto")).all()
        fom = connection.execute(text("SELECT variant, fom_pct_per_ms_mj FROM fom ORDER BY variant")).all()
        quantile = connection.execute(text(
            "SELECT samples_quantile(s.samples_ms, 0.5), samples_quantile(s.samples_ms, 1.0) "
            "FROM latency_samples s JOIN latest_results l ON l.result_id = s.result_id "
            "WHERE l.variant = 'fast'")).one()
    assert [tuple(r) for r in latest] == [("fast", 1.0, True), ("slow", 2.0, True)]
    assert [tuple(r) for r in pareto] == [("fast", 1, 1)]
    assert fom[0][1] == pytest.approx(90.0 / (1.1 * 3.0))
    assert tuple(quantile) == pytest.approx((1.0, 1.1), abs=1e-6)


def test_queries_are_read_only(postgres_server, postgres_url):  # noqa: F811
    engine = open_database(postgres_url)
    store, sweep, device = store_with_variants(engine, ("a" * 64, "fast", {}))
    store.record_result(sweep, device, "a" * 64, SPEC, full_result())
    readonly = open_readonly(postgres_server.reader_url(postgres_url))
    for sql in ("DELETE FROM results", "SELECT 1; DELETE FROM results", "COMMIT; DELETE FROM results",
                "SET TRANSACTION READ WRITE", "DO $$ BEGIN DELETE FROM results; END $$",
                "CREATE TABLE x (i int)", "SELECT nextval('results_id_seq')"):
        with pytest.raises(DatabaseError, match="query failed"):
            run_query(readonly, sql)
    assert run_query(readonly, "SELECT count(*), '10:30', 'a%b' FROM results").rows == [(1, "10:30", "a%b")]
    with pytest.raises(DatabaseError, match="samples_ms"):  # the zlib blob is for SQLite's function only
        run_query(readonly, "SELECT samples_quantile(data, 0.5) FROM latency_samples")


def test_a_role_that_can_write_server_files_is_refused_and_copy_to_program_never_runs(
        postgres_server, postgres_url, tmp_path):  # noqa: F811
    open_database(postgres_url).dispose()
    with pytest.raises(DatabaseError, match="role postgres is a superuser, so a query could write files on the "
                                            "server.*CREATE ROLE orch_reader LOGIN.*--allow-privileged-role"):
        open_readonly(postgres_url)
    reader_url = postgres_server.reader_url(postgres_url)
    reader = open_readonly(reader_url)
    target = tmp_path / "pwned"
    for sql in (f"COPY (SELECT 1) TO '{target}'", f"COPY (SELECT 1) TO PROGRAM 'touch {target}'"):
        with pytest.raises(DatabaseError, match="query failed"):
            run_query(reader, sql)
    assert not target.exists()
    slow = open_readonly(reader_url, timeout_s=0.5)
    with pytest.raises(DatabaseError, match="time limit of 0.5 s"):
        run_query(slow, "SELECT pg_sleep(5)")


def test_regress_on_postgresql(postgres_url):  # noqa: F811
    engine = open_database(postgres_url)
    lab = SyntheticLab(boards=1, variants_per_board=3, steps=(Step(0, 12, latency_factor=1.5),), seed=1)
    store = ResultsStore(engine)
    for _ in range(12):
        lab.record_night(store)
    report = regress(engine, RegressConfig(cooldown_s=0), rerun=lab.rerun)
    assert {f.series.variant_sha256 for f in report.confirmed} == {lab.series[0].variant.sha256}
    assert "p50_ms" in {f.metric for f in report.confirmed}
    assert report.has_confirmed and report.open_confirmed


def test_a_walking_skeleton_database_upgrades_on_postgresql(postgres_url):  # noqa: F811
    create_0001_database(postgres_url, results=4)
    engine = open_database(postgres_url)
    check_upgraded_0001(engine, results=4)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT samples_ms FROM latency_samples WHERE result_id = 4")).scalar() == [
            1.0, 4.0]
