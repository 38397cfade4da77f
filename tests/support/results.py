"""Results-database helpers the tests share: a stand-in variant, agent results of every contract era, and a
database at the walking skeleton's schema (0001) with rows, to test upgrades."""

from __future__ import annotations

from sqlalchemy import text

from orchestrator.results.db import HEAD_REVISION
from orchestrator.results.samples import decode_samples, encode_samples
from orchestrator.results.store import ResultsStore


class StubVariant:
    """The fields ResultsStore.upsert_variant reads from a BuiltVariant."""

    def __init__(self, sha: str, name: str):
        self.sha256, self.name = sha, name
        self.axes = {"prune_ratio": 0.5}
        self.lineage = [{"step": "train", "params": {}, "wall_s": 1.5, "key": "k" * 64, "version": "1"}]
        self.meta = {"params": 1234, "macs": 5_000_000_000, "sparsity": 0.0, "host_accuracy": 0.97}
        self.file_size_bytes = 4096
        self.build_s = 1.5


def result_with_samples(samples: list[float]) -> dict:
    return {"schema": 1, "status": "ok", "reasons": [],
            "timing": {"p50_ms": 1.0, "p90_ms": 1.5, "p99_ms": 2.0, "mean_ms": 1.1, "std_ms": 0.1, "min_ms": 0.9,
                       "max_ms": 2.5, "iterations": len(samples), "duration_s": 3.0, "throughput_ips": 900.0,
                       "session_create_ms": 12.0, "first_run_ms": 3.0},
            "latency_samples_ms": samples, "memory": {"peak_rss_mb": 55.5, "rss_before_session_mb": 40.0},
            "accuracy": {"metric": "top1", "value": 0.96, "n": 360}, "telemetry": {"onnxruntime": "1.32.0"}}


SPEC = {"providers": ["CPUExecutionProvider"], "intra_op_threads": 1, "inter_op_threads": 1,
        "graph_optimization": "all", "inputs": [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"}],
        "evaluation": {"sha256": "e" * 64, "metric": "top1"}, "warmup": {"min_iters": 10, "min_s": 0.5}}


def full_result(p50: float = 1.0, accuracy: float = 0.9, energy_mj: float = 5.0, **telemetry: str) -> dict:
    """A result with every key of the current contract."""
    conditions = {"temperatures_c": {"cpu": 51.5, "gpu": 48.0},
                  "throttling": {"under_voltage_now": False, "throttled_now": True, "soft_temp_limit_now": False,
                                 "arm_frequency_capped_now": False, "throttled_since_boot": True},
                  "cpu_freq_mhz": {"cpu0": 1800.0}, "governors": {"cpu0": "performance"}, "power_mode": "MAXN"}
    result = result_with_samples([p50, p50 * 1.1, p50 * 0.9])
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


def store_with_variants(engine, *variants: tuple[str, str, dict]) -> tuple[ResultsStore, int, int]:
    store = ResultsStore(engine)
    sweep = store.start_sweep("tiny", "tiny.yaml", "0" * 64, ["jetson"], jobs_total=len(variants))
    device = store.upsert_device("jetson", "ssh", {"board": "Jetson Orin Nano"})
    for sha, name, axes in variants:
        variant = StubVariant(sha, name)
        variant.axes = axes
        store.upsert_variant("tiny", variant)
    return store, sweep, device


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
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD_REVISION
        rows = connection.execute(text("SELECT id, p50_ms, series_id, stack_id, temp_before_max_c, temp_after_max_c "
                                       "FROM results ORDER BY id")).all()
        assert [(r[0], r[1]) for r in rows] == [(i, float(i)) for i in range(1, results + 1)]
        assert {r[2] for r in rows} == {1} and {r[3] for r in rows} == {1} and rows[0][4:] == (40.0, 47.5)
        assert connection.execute(text("SELECT count(*) FROM latency_samples")).scalar() == results
        blob = connection.execute(text(f"SELECT data FROM latency_samples WHERE result_id = {results}")).scalar()
        assert list(decode_samples(blob)) == [1.0, float(results)]
        assert connection.execute(text("SELECT key, providers FROM series")).one() == (
            f"local:{'a' * 12}:{config_digest()[:8]}", "CPUExecutionProvider")
        stack = connection.execute(text("SELECT onnxruntime_version, kernel, orch_version FROM software_stacks")).one()
        assert tuple(stack) == ("1.20.0", "6.1.0", "0.0.9")
        assert connection.execute(text("SELECT prune_method, prune_ratio, quantize FROM variants")).one() == (
            "l1", 0.5, "none")
        assert tuple(connection.execute(text("SELECT build_status, simplify FROM variants")).one()) == ("ok", False)
        latest = connection.execute(text("SELECT result_id, p50_ms, device, variant FROM latest_results")).one()
        assert tuple(latest) == (results, float(results), "local", "l1-0.50/ft0/fp32")


def config_digest() -> str:
    from orchestrator.results.mapping import config_sha256, series_config

    return config_sha256(series_config({"providers": ["CPUExecutionProvider"], "intra_op_threads": 1,
                                        "inter_op_threads": 1, "graph_optimization": "all"}))

