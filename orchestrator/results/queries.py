"""Reading results back: the rows `orch results` shows, one per job (`result_rows`) or one per series and sweep
with its repeats aggregated (`series_rows`, from the series_sweeps view)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from orchestrator.errors import UserError
from orchestrator.results.db import translate_errors
from orchestrator.results.schema import Device, Result, Series, Sweep, Variant

RESULT_COLUMNS = ("sweep", "device", "variant", "threads", "pipeline", "status", "repeat_index", "repeat_count",
                  "mean_ms", "p50_ms", "p90_ms", "p99_ms", "throughput_ips", "energy_per_inference_mj",
                  "energy_per_inference_net_mj", "mean_w", "max_w", "peak_rss_mb", "model_rss_mb", "accuracy",
                  "size_kb", "macs_m")
# series_sweeps' figures that series_rows passes on (the view's names: see migration 0007).
SERIES_FIGURES = ("repeats", "jobs", "invalid_jobs", "error_jobs", "mean_ms", "mean_ms_sd", "p50_ms", "p50_ms_sd",
                  "p90_ms", "p90_ms_sd", "throughput_ips", "energy_per_inference_mj", "energy_per_inference_net_mj",
                  "mean_w", "max_w", "peak_rss_mb", "model_rss_mb", "accuracy")


@translate_errors
def resolve_sweep(engine: Engine, sweep: str | None) -> int | None:
    """A sweep id from `last`, a number, or None (all sweeps)."""
    if sweep is None or sweep == "all":
        return None
    with Session(engine) as session:
        if sweep == "last":
            # The newest sweep that measured something: re-running a finished sweep measures nothing
            # new (it resumes), and its predecessor's results are the ones the user wants to see.
            last = session.scalar(select(func.max(Result.sweep_id))) or session.scalar(select(func.max(Sweep.id)))
            if last is None:
                raise UserError("no sweep has been recorded yet in this database; run `orch sweep RECIPE` first")
            return int(last)
        if not sweep.isdigit() or session.get(Sweep, int(sweep)) is None:
            raise UserError(f"--sweep {sweep}: no such sweep (use `last`, `all` or a sweep id)")
        return int(sweep)


@translate_errors
def result_rows(engine: Engine, sweep: str | None = "last", device: str | None = None,
                recipe: str | None = None) -> list[dict[str, Any]]:
    """Results as flat dicts (RESULT_COLUMNS), ordered by sweep, device, variant name, threads."""
    sweep_id = resolve_sweep(engine, sweep)
    query = (select(Result, Device.name, Variant).join(Device).join(Variant).join(Sweep)
             .order_by(Result.sweep_id, Device.name, Variant.name, Result.threads, Result.pipeline_mode.is_not(None),
                       Result.pipeline_mode, Result.id))
    if sweep_id is not None:
        query = query.where(Result.sweep_id == sweep_id)
    if device:
        query = query.where(Device.name == device)
    if recipe:
        query = query.where(Sweep.recipe_name == recipe)
    with Session(engine) as session:
        return [{
            "sweep": result.sweep_id, "device": device_name, "variant": variant.name,
            "threads": result.threads, "pipeline": result.pipeline_mode, "status": result.status,
            "repeat_index": result.repeat_index, "repeat_count": result.repeat_count,
            **{name: getattr(result, name) for name in (
                "mean_ms", "p50_ms", "p90_ms", "p99_ms", "throughput_ips", "energy_per_inference_mj",
                "energy_per_inference_net_mj", "mean_w", "max_w", "peak_rss_mb", "model_rss_mb", "accuracy")},
            "size_kb": variant.file_size_bytes / 1024, "macs_m": (variant.macs or 0) / 1e6,
            "error": result.error, "reasons": result.reasons,
        } for result, device_name, variant in session.execute(query)]


@translate_errors
def series_rows(engine: Engine, sweep: str | None = "last", device: str | None = None,
                recipe: str | None = None) -> list[dict[str, Any]]:
    """One row per series and sweep: the figures over its valid repeats (SERIES_FIGURES: means, sample stdev of the
    latency figures, maxima of power and memory) and how many jobs had each status; ordered as result_rows."""
    sweep_id = resolve_sweep(engine, sweep)
    where, params = [], {}
    for condition, name, value in (("sweep_id = :sweep", "sweep", sweep_id), ("device = :device", "device", device),
                                   ("sweep_id IN (SELECT id FROM sweeps WHERE recipe_name = :recipe)", "recipe",
                                    recipe)):
        if value is not None:
            where.append(condition)
            params[name] = value
    sql = ("SELECT * FROM series_sweeps" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY sweep_id, device, variant, threads, pipeline_mode IS NOT NULL, pipeline_mode, series_id")
    with engine.connect() as connection:
        return [{"sweep": row.sweep_id, "device": row.device, "variant": row.variant, "threads": row.threads,
                 "pipeline": row.pipeline_mode, **{name: getattr(row, name) for name in SERIES_FIGURES},
                 "size_kb": row.file_size_bytes / 1024, "macs_m": (row.macs or 0) / 1e6}
                for row in connection.execute(text(sql), params)]


@translate_errors
def resolve_series(engine: Engine, refs: list[str], device: str | None = None) -> list[tuple[int, str]]:
    """(id, key) of the series named by key or id, plus every series of `device`; unknown names are a UserError."""
    found: dict[int, str] = {}
    with Session(engine) as session:
        if device is not None:
            rows = session.execute(select(Series.id, Series.key).join(Device).where(Device.name == device)).all()
            if not rows:
                raise UserError(f"--device {device}: no series recorded on this device")
            found.update({series_id: key for series_id, key in rows})
        for ref in refs:
            condition = Series.id == int(ref) if ref.isdigit() else Series.key == ref
            row = session.execute(select(Series.id, Series.key).where(condition)).first()
            if row is None:
                raise UserError(f"{ref}: no such series (give a key such as local:0123456789ab:89abcdef, or an id; "
                                "`orch query \"SELECT series_key, variant FROM latest_results\"` lists them)")
            found[row[0]] = row[1]
    if not found:
        raise UserError("name at least one series, or --device")
    return sorted(found.items())


@translate_errors
def ok_results_by_series(engine: Engine, recipe_name: str) -> dict[tuple[str, str, str], int]:
    """How many ok results each series (mapping.series_identity: device, variant, config) has from sweeps of
    one recipe."""
    query = (select(Device.name, Series.variant_sha256, Series.config_sha256, func.count(Result.id))
             .join(Series, Series.id == Result.series_id).join(Device, Device.id == Series.device_id)
             .join(Sweep, Sweep.id == Result.sweep_id)
             .where(Sweep.recipe_name == recipe_name, Result.status == "ok")
             .group_by(Device.name, Series.variant_sha256, Series.config_sha256))
    with Session(engine) as session:
        return {(name, variant, config): int(count) for name, variant, config, count in session.execute(query)}
