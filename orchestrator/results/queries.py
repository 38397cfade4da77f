"""Reading results back: the rows `orch results` shows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from orchestrator.errors import UserError
from orchestrator.results.schema import Device, Result, Sweep, Variant

RESULT_COLUMNS = ("sweep", "device", "variant", "threads", "status", "p50_ms", "p90_ms", "p99_ms",
                  "throughput_ips", "peak_rss_mb", "accuracy", "size_kb", "macs_m")


def resolve_sweep(engine: Engine, sweep: str | None) -> int | None:
    """A sweep id from `last`, a number, or None (all sweeps)."""
    if sweep is None or sweep == "all":
        return None
    with Session(engine) as session:
        if sweep == "last":
            last = session.scalar(select(func.max(Sweep.id)))
            if last is None:
                raise UserError("no sweep has been recorded yet in this database; run `orch sweep RECIPE` first")
            return int(last)
        if not sweep.isdigit() or session.get(Sweep, int(sweep)) is None:
            raise UserError(f"--sweep {sweep}: no such sweep (use `last`, `all` or a sweep id)")
        return int(sweep)


def result_rows(engine: Engine, sweep: str | None = "last", device: str | None = None,
                recipe: str | None = None) -> list[dict[str, Any]]:
    """Results as flat dicts (RESULT_COLUMNS), ordered by sweep, device, variant name, threads."""
    sweep_id = resolve_sweep(engine, sweep)
    query = (select(Result, Device.name, Variant).join(Device).join(Variant).join(Sweep)
             .order_by(Result.sweep_id, Device.name, Variant.name, Result.threads, Result.id))
    if sweep_id is not None:
        query = query.where(Result.sweep_id == sweep_id)
    if device:
        query = query.where(Device.name == device)
    if recipe:
        query = query.where(Sweep.recipe_name == recipe)
    with Session(engine) as session:
        return [{
            "sweep": result.sweep_id, "device": device_name, "variant": variant.name,
            "threads": result.threads, "status": result.status, "p50_ms": result.p50_ms,
            "p90_ms": result.p90_ms, "p99_ms": result.p99_ms, "throughput_ips": result.throughput_ips,
            "peak_rss_mb": result.peak_rss_mb, "accuracy": result.accuracy,
            "size_kb": variant.file_size_bytes / 1024, "macs_m": (variant.macs or 0) / 1e6,
            "error": result.error, "reasons": result.reasons,
        } for result, device_name, variant in session.execute(query)]
