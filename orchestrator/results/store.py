"""Recording sweeps, devices, variants and results. Each write is its own short transaction,
so every finished job is committed at once and survives whatever happens next."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from orchestrator import __version__
from orchestrator.results.schema import Device, LatencySamples, Result, Sweep, Variant, utcnow

SAMPLES_ENCODING = "zlib-float32le-ms"


def encode_samples(samples_ms: list[float]) -> bytes:
    return zlib.compress(np.asarray(samples_ms, dtype="<f4").tobytes())


def decode_samples(data: bytes) -> np.ndarray:
    return np.frombuffer(zlib.decompress(data), dtype="<f4")


class ResultsStore:
    """Writes to the results database."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def start_sweep(self, recipe_name: str, recipe_path: str, recipe_sha256: str, devices: list[str],
                    jobs_total: int, kind: str = "manual") -> int:
        with Session(self.engine) as session, session.begin():
            sweep = Sweep(recipe_name=recipe_name, recipe_path=recipe_path, recipe_sha256=recipe_sha256,
                          kind=kind, status="running", devices=devices, jobs_total=jobs_total,
                          orch_version=__version__)
            session.add(sweep)
            session.flush()
            return sweep.id

    def finish_sweep(self, sweep_id: int, status: str) -> None:
        with Session(self.engine) as session, session.begin():
            sweep = session.get_one(Sweep, sweep_id)
            sweep.status, sweep.finished_at = status, utcnow()

    def upsert_device(self, name: str, kind: str, info: dict[str, Any]) -> int:
        with Session(self.engine) as session, session.begin():
            device = session.scalar(select(Device).where(Device.name == name))
            if device is None:
                device = Device(name=name, kind=kind)
                session.add(device)
            device.board, device.info, device.last_seen = info.get("board"), info, utcnow()
            session.flush()
            return device.id

    def upsert_variant(self, recipe_name: str, variant: Any) -> None:
        """Record a BuiltVariant (first recipe to produce a given artifact names it)."""
        meta = variant.meta
        with Session(self.engine) as session, session.begin():
            if session.get(Variant, variant.sha256) is not None:
                return
            session.add(Variant(
                sha256=variant.sha256, recipe_name=recipe_name, name=variant.name, axes=variant.axes,
                lineage=variant.lineage, params=meta.get("params"), macs=meta.get("macs"),
                sparsity=meta.get("sparsity"), file_size_bytes=variant.file_size_bytes,
                host_accuracy=meta.get("host_accuracy"), build_s=variant.build_s))

    def record_result(self, sweep_id: int, device_id: int, variant_sha256: str, spec: dict[str, Any],
                      result: dict[str, Any]) -> int:
        """Store one job's result (and its raw latency samples) in one transaction."""
        timing = result.get("timing") or {}
        memory = result.get("memory") or {}
        accuracy = result.get("accuracy") or {}
        with Session(self.engine) as session, session.begin():
            row = Result(
                sweep_id=sweep_id, device_id=device_id, variant_sha256=variant_sha256,
                status=result.get("status", "error"), reasons=result.get("reasons") or [],
                error=result.get("error"), providers=",".join(spec.get("providers", [])),
                threads=spec.get("intra_op_threads", 0), graph_optimization=spec.get("graph_optimization", ""),
                session_create_ms=timing.get("session_create_ms"), first_run_ms=timing.get("first_run_ms"),
                p50_ms=timing.get("p50_ms"), p90_ms=timing.get("p90_ms"), p99_ms=timing.get("p99_ms"),
                mean_ms=timing.get("mean_ms"), std_ms=timing.get("std_ms"), min_ms=timing.get("min_ms"),
                max_ms=timing.get("max_ms"), iterations=timing.get("iterations"),
                duration_s=timing.get("duration_s"), throughput_ips=timing.get("throughput_ips"),
                rss_before_session_mb=memory.get("rss_before_session_mb"), peak_rss_mb=memory.get("peak_rss_mb"),
                accuracy_metric=accuracy.get("metric"), accuracy=accuracy.get("value"),
                accuracy_n=accuracy.get("n"), telemetry=result.get("telemetry") or {}, spec=spec)
            session.add(row)
            session.flush()
            samples = result.get("latency_samples_ms")
            if samples:
                session.add(LatencySamples(result_id=row.id, count=len(samples), encoding=SAMPLES_ENCODING,
                                           data=encode_samples(samples)))
            return row.id
