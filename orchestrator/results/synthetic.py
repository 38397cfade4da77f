"""Synthetic benchmark history: a test double of a lab of boards, shipped with the package.

SyntheticLab produces agent result dicts (the real JSON contract) for a grid of boards x variants, night after
night, with relative noise and injected steps, and re-runs that draw afresh from the same (stepped or not)
distribution. Tests record them through ResultsStore, the path real results take. bulk_history writes a big
SQLite history directly (executemany), for the query benchmarks.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import sqlite3
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine

from orchestrator.results import mapping
from orchestrator.results.findings import SeriesRef
from orchestrator.results.samples import SAMPLES_ENCODING
from orchestrator.results.store import ResultsStore

EVALUATION_SHA256 = "e" * 64


@dataclass
class SyntheticVariant:
    """What ResultsStore.upsert_variant reads from a BuiltVariant."""

    sha256: str
    name: str
    axes: dict[str, Any]
    lineage: list[Any] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    file_size_bytes: int = 100_000
    build_s: float = 1.0


@dataclass(frozen=True)
class Step:
    """From `night` on, series `series` changes: latency and energy multiplied by a factor, accuracy shifted by
    points (negative: a drop)."""

    series: int
    night: int
    latency_factor: float = 1.0
    energy_factor: float = 1.0
    accuracy_points: float = 0.0


@dataclass
class LabSeries:
    device: str
    variant: SyntheticVariant
    p50_ms: float
    energy_mj: float
    accuracy: float


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def job_spec(variant_sha256: str, threads: int = 1) -> dict[str, Any]:
    """A job spec as the orchestrator sends it (and stores it with the result)."""
    return {"schema": 1, "artifact_sha256": variant_sha256, "providers": ["CPUExecutionProvider"],
            "intra_op_threads": threads, "inter_op_threads": 1, "graph_optimization": "all",
            "inputs": [{"name": "input", "shape": [1, 3, 32, 32], "dtype": "float32"}],
            "warmup": {"min_iters": 10, "min_s": 0.5, "max_s": None},
            "measure": {"min_iters": 300, "min_s": 3.0, "max_s": 60.0},
            "evaluation": {"sha256": EVALUATION_SHA256, "metric": "top1"}, "seed": 0}


class SyntheticLab:
    """`boards` x `variants_per_board` series whose figures vary night to night with relative noise `noise`."""

    def __init__(self, boards: int = 4, variants_per_board: int = 5, noise: float = 0.02, seed: int = 0,
                 steps: tuple[Step, ...] = (), samples_per_result: int = 50):
        self.noise, self.steps, self.samples_per_result = noise, steps, samples_per_result
        self.random = np.random.default_rng(seed)
        self.series: list[LabSeries] = []
        for board in range(boards):
            for index in range(variants_per_board):
                ratio = index / variants_per_board
                axes = {"prune_method": "l1" if ratio else None, "prune_ratio": ratio, "finetune_epochs": 2,
                        "quantize": "none", "input_size": 32, "distill": None}
                variant = SyntheticVariant(_sha(f"variant-{index}"), f"l1-{ratio:.2f}/ft2/fp32", axes)
                self.series.append(LabSeries(f"board-{board}", variant, p50_ms=(2.0 + board) * (1 - ratio / 2),
                                             energy_mj=(5.0 + board) * (1 - ratio / 2), accuracy=0.95 - ratio / 10))
        self.night = 0

    def _step(self, index: int) -> Step:
        factors = [s for s in self.steps if s.series == index and self.night >= s.night]
        return Step(index, 0, float(np.prod([s.latency_factor for s in factors])),
                    float(np.prod([s.energy_factor for s in factors])), sum(s.accuracy_points for s in factors))

    def onnxruntime_version(self, index: int) -> str:
        """1.32.0, or 1.33.0 on a series from the night a latency step begins: a stack change to report."""
        latency_steps = [s for s in self.steps if s.series == index and s.latency_factor != 1.0]
        return "1.33.0" if any(self.night >= s.night for s in latency_steps) else "1.32.0"

    def result(self, index: int) -> dict[str, Any]:
        """A fresh agent result for series `index` tonight."""
        lab, step = self.series[index], self._step(index)

        def noisy(value: float) -> float:
            return float(value * (1 + self.noise * self.random.standard_normal()))

        p50 = noisy(lab.p50_ms * step.latency_factor)
        samples = (p50 * (1 + 0.05 * np.abs(self.random.standard_normal(self.samples_per_result)))).tolist()
        energy = noisy(lab.energy_mj * step.energy_factor)
        conditions = {"temperatures_c": {"cpu": 45.0 + float(self.random.uniform(0, 5))},
                      "throttling": {"under_voltage_now": False, "arm_frequency_capped_now": False,
                                     "throttled_now": False, "soft_temp_limit_now": False},
                      "cpu_freq_mhz": {"cpu0": 1500.0}, "governors": {"cpu0": "performance"}, "power_mode": "MAXN"}
        return {
            "schema": 1, "status": "ok", "reasons": [], "error": None,
            "timing": {"p50_ms": p50, "p90_ms": noisy(p50 * 1.15), "p99_ms": noisy(p50 * 1.3), "mean_ms": p50 * 1.02,
                       "std_ms": p50 * 0.05, "min_ms": min(samples), "max_ms": max(samples), "iterations": 300,
                       "duration_s": 3.2, "timed_s": 3.0, "throughput_ips": 1000 / p50, "session_create_ms": 30.0,
                       "first_run_ms": 3 * p50, "warmup_iterations": 10, "warmup_s": 0.5},
            "latency_samples_ms": samples,
            "memory": {"rss_before_session_mb": 40.0, "peak_rss_mb": 60.0},
            "accuracy": {"metric": "top1", "value": round(lab.accuracy + step.accuracy_points / 100, 6), "n": 10000},
            "power": {"method": "meter", "meter": "ina3221", "measured": True, "samples": 300, "rate_hz": 100.0,
                      "idle_w": 2.0, "mean_w": energy / p50, "max_w": 1.2 * energy / p50, "energy_j": energy * 0.3,
                      "energy_per_inference_mj": energy, "energy_per_inference_net_mj": energy * 0.6,
                      "window_s": 3.0, "reasons": []},
            "conditions_before": conditions, "conditions_after": conditions,
            "telemetry": {"board": "synthetic", "soc": "synthetic", "kernel": "5.10.120", "os": "Ubuntu 20.04",
                          "python": "3.8.10", "numpy": "1.24.4", "onnxruntime": self.onnxruntime_version(index),
                          "providers_available": ["CPUExecutionProvider"], "agent_version": "0.1.0"},
            "repeat": {"index": 0, "of": 1},
        }

    def record_night(self, store: ResultsStore) -> int:
        """Advance one night and record a nightly sweep with one result per series; the sweep id."""
        self.night += 1
        devices = sorted({s.device for s in self.series})
        sweep = store.start_sweep("synthetic", "synthetic.yaml", "0" * 64, devices, len(self.series), kind="nightly")
        device_ids = {name: store.upsert_device(name, "ssh", {"board": "synthetic"}) for name in devices}
        for index, lab in enumerate(self.series):
            if self.night == 1:
                store.upsert_variant("synthetic", lab.variant)
            store.record_result(sweep, device_ids[lab.device], lab.variant.sha256, job_spec(lab.variant.sha256),
                                self.result(index))
        store.finish_sweep(sweep, "finished")
        return sweep

    def index_of(self, ref: SeriesRef) -> int:
        return next(i for i, s in enumerate(self.series)
                    if s.device == ref.device and s.variant.sha256 == ref.variant_sha256)

    def rerun(self, ref: SeriesRef) -> dict[str, Any]:
        """The re-run hook: a fresh draw from the series' current (stepped or not) distribution."""
        return self.result(self.index_of(ref))


def bulk_history(engine: Engine, devices: int, series_per_device: int, nights: int, samples_per_result: int = 100,
                 noise: float = 0.02, seed: int = 0, repeats: int = 1) -> int:
    """Write `devices x series_per_device x nights x repeats` results (each night a sweep measuring every series
    `repeats` times) with their samples into a new SQLite database, fast (executemany in one transaction);
    returns how many results were written. Blobs cycle through a pool of
    real encodings, since only their size matters to the queries measured."""
    rng = random.Random(seed)
    blob_pool = [zlib.compress(np.asarray([rng.gauss(5, 0.2) for _ in range(samples_per_result)], "<f4").tobytes())
                 for _ in range(512)]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        assert isinstance(raw.driver_connection, sqlite3.Connection), "bulk_history writes SQLite only"
        # A generated history is disposable: skip the fsyncs, and give the b-trees room in memory.
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.execute("PRAGMA cache_size=-262144")
        cursor.execute("BEGIN")
        stack = mapping.stack_fields({"onnxruntime": "1.32.0", "kernel": "6.1"}, "bulk")
        cursor.execute("INSERT INTO software_stacks (stack_sha256, onnxruntime_version, kernel, orch_version) "
                       "VALUES (?, ?, ?, ?)", (mapping.stack_sha256(stack), "1.32.0", "6.1", "bulk"))
        stack_id = cursor.lastrowid
        series_rows = _bulk_series(cursor, devices, series_per_device)
        start = datetime(2024, 1, 1)
        result_id = (cursor.execute("SELECT max(id) FROM results").fetchone()[0] or 0) + 1
        columns = ("id", "sweep_id", "device_id", "variant_sha256", "series_id", "stack_id", "status", "reasons",
                   "providers", "threads", "graph_optimization", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "iterations",
                   "throughput_ips", "peak_rss_mb", "accuracy_metric", "accuracy", "accuracy_n", "power_measured",
                   "energy_per_inference_mj", "mean_w", "telemetry", "spec", "created_at", "repeat_index",
                   "repeat_count")
        insert = f"INSERT INTO results ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        for night in range(nights):
            when = (start + timedelta(days=night)).isoformat(sep=" ")
            cursor.execute("INSERT INTO sweeps (recipe_name, recipe_path, recipe_sha256, kind, status, devices, "
                           "jobs_total, orch_version, started_at) VALUES ('bulk', 'bulk.yaml', '', 'nightly', "
                           "'finished', '[]', ?, 'bulk', ?)", (len(series_rows) * repeats, when))
            sweep_id = cursor.lastrowid
            rows, blobs = [], []
            for (series_id, device_id, sha, base_ms), repeat in itertools.product(series_rows, range(repeats)):
                p50 = base_ms * (1 + noise * rng.gauss(0, 1))
                rows.append((result_id, sweep_id, device_id, sha, series_id, stack_id, "ok", "[]",
                             "CPUExecutionProvider", 1, "all", p50, p50 * 1.15, p50 * 1.3, p50 * 1.02, 300,
                             1000 / p50, 60.0, "top1", 0.9, 10000, 1, p50 * 2 * (1 + noise * rng.gauss(0, 1)), 2.0,
                             "{}", "{}", when, repeat + 1, repeats))
                blob = blob_pool[result_id % len(blob_pool)]
                blobs.append((result_id, samples_per_result, SAMPLES_ENCODING, blob))
                result_id += 1
            cursor.executemany(insert, rows)
            cursor.executemany("INSERT INTO latency_samples (result_id, count, encoding, data) VALUES (?, ?, ?, ?)",
                               blobs)
        cursor.execute("COMMIT")
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        raw.close()
    return devices * series_per_device * nights * repeats


def _bulk_series(cursor: Any, devices: int, series_per_device: int) -> list[tuple[int, int, str, float]]:
    """Devices, variants and the series of a bulk history: (series id, device id, sha, p50)."""
    created = datetime(2024, 1, 1).isoformat(sep=" ")
    for index in range(series_per_device):
        cursor.execute("INSERT INTO variants (sha256, recipe_name, name, axes, lineage, file_size_bytes, created_at, "
                       "prune_ratio, quantize) VALUES (?, 'bulk', ?, '{}', '[]', 100000, ?, ?, 'none')",
                       (_sha(f"bulk-{index}"), f"variant-{index}", created, index / series_per_device))
    config = mapping.series_config(job_spec("0" * 64))
    digest = mapping.config_sha256(config)
    series = []
    for device in range(devices):
        cursor.execute("INSERT INTO devices (name, kind, board, info, first_seen, last_seen) "
                       "VALUES (?, 'ssh', 'bulk', '{}', ?, ?)", (f"dev-{device:02d}", created, created))
        device_id = cursor.lastrowid
        for index in range(series_per_device):
            sha = _sha(f"bulk-{index}")
            cursor.execute("INSERT INTO series (key, device_id, variant_sha256, providers, intra_op_threads, "
                           "inter_op_threads, graph_optimization, run_config, config_sha256, created_at) "
                           "VALUES (?, ?, ?, 'CPUExecutionProvider', 1, 1, 'all', '{}', ?, ?)",
                           (mapping.series_key(f"dev-{device:02d}", sha, digest), device_id, sha, digest,
                            created))
            series.append((cursor.lastrowid, device_id, sha, 1.0 + index / 50))
    return series
