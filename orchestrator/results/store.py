"""Recording sweeps, devices, variants, results and change markers. Each write is its own short transaction,
so every finished job is committed at once and survives whatever happens next.

Writers take SQLite's write lock at BEGIN and wait for it (busy timeout); a write that still finds the
database locked is retried a few times, so two orch processes writing at once both succeed.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from orchestrator import __version__
from orchestrator.errors import UserError
from orchestrator.results import mapping
from orchestrator.results.db import translate_errors, writer
from orchestrator.results.samples import SAMPLES_ENCODING, decode_samples, encode_samples
from orchestrator.results.schema import (
    AccuracyMetric,
    Alert,
    ChangeMarker,
    Detection,
    Device,
    LatencySamples,
    PipelineStage,
    PruningStep,
    Result,
    Series,
    SoftwareStack,
    Sweep,
    Variant,
    utcnow,
)

__all__ = ["SAMPLES_ENCODING", "ResultsStore", "decode_samples", "encode_samples"]

T = TypeVar("T")
WRITE_ATTEMPTS = 5


class ResultsStore:
    """Writes to the results database."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._writer = writer(engine)

    @translate_errors
    def _write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one write transaction, retried while the database is locked by another writer."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with Session(self._writer) as session, session.begin():
                    return work(session)
            except OperationalError as exc:
                if attempt == WRITE_ATTEMPTS - 1 or "locked" not in str(exc.orig) and "busy" not in str(exc.orig):
                    raise
                time.sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")

    def start_sweep(self, recipe_name: str, recipe_path: str, recipe_sha256: str, devices: list[str],
                    jobs_total: int, kind: str = "manual") -> int:
        def work(session: Session) -> int:
            sweep = Sweep(recipe_name=recipe_name, recipe_path=recipe_path, recipe_sha256=recipe_sha256,
                          kind=kind, status="running", devices=devices, jobs_total=jobs_total,
                          orch_version=__version__)
            session.add(sweep)
            session.flush()
            return sweep.id
        return self._write(work)

    def finish_sweep(self, sweep_id: int, status: str, jobs_total: int | None = None) -> None:
        """The sweep's end: its status, and its jobs total when it is known only now (a streaming sweep)."""
        def work(session: Session) -> None:
            sweep = session.get_one(Sweep, sweep_id)
            sweep.status, sweep.finished_at = status, utcnow()
            if jobs_total is not None:
                sweep.jobs_total = jobs_total
        self._write(work)

    def upsert_device(self, name: str, kind: str, info: dict[str, Any]) -> int:
        def work(session: Session) -> int:
            device = session.scalar(select(Device).where(Device.name == name))
            if device is None:
                device = Device(name=name, kind=kind)
                session.add(device)
            device.board, device.info, device.last_seen = info.get("board"), info, utcnow()
            session.flush()
            return device.id
        return self._write(work)

    def ensure_device(self, name: str, kind: str) -> int:
        """The device's row id; a device never seen before gets a row (with no board info yet)."""
        def work(session: Session) -> int:
            known = session.scalar(select(Device.id).where(Device.name == name))
            if known is not None:
                return int(known)
            device = Device(name=name, kind=kind, info={}, last_seen=utcnow())
            session.add(device)
            session.flush()
            return device.id
        return self._write(work)

    def upsert_variant(self, recipe_name: str, variant: Any) -> None:
        """Record a BuiltVariant (first recipe to produce a given artifact names it)."""
        meta = variant.meta
        agreement = meta.get("agreement") or {}

        def work(session: Session) -> None:
            if session.get(Variant, variant.sha256) is not None:
                return
            session.add(Variant(
                sha256=variant.sha256, recipe_name=recipe_name, name=variant.name, axes=variant.axes,
                lineage=variant.lineage, params=meta.get("params"), macs=meta.get("macs"),
                sparsity=meta.get("sparsity"), file_size_bytes=variant.file_size_bytes,
                host_accuracy=meta.get("host_accuracy"), build_s=variant.build_s, build_status="ok",
                onnx_nodes=meta.get("onnx_nodes"), nodes_before_simplify=meta.get("nodes_before_simplify"),
                nodes_after_simplify=meta.get("nodes_after_simplify"),
                output_error=agreement.get("relative_error"), top1_agreement=agreement.get("top1_agreement"),
                ir_version=meta.get("ir_version"), opsets=meta.get("opsets"), host_metric=meta.get("host_metric"),
                detector=meta.get("detector"),
                **mapping.variant_axis_columns(variant.axes)))
            session.flush()  # the variant row first: its pruning steps refer to it
            session.add_all(PruningStep(variant_sha256=variant.sha256, **row)
                            for row in mapping.pruning_step_rows(variant.lineage, meta.get("host_metric")))
        self._write(work)

    def record_failed_variant(self, recipe_name: str, failure: Any) -> None:
        """Record a FailedVariant under its lineage key: the step that failed and why (the newest attempt's)."""
        def work(session: Session) -> None:
            row = session.get(Variant, failure.key)
            if row is None:
                row = Variant(sha256=failure.key, recipe_name=recipe_name, name=failure.name, axes=failure.axes,
                              lineage=failure.steps, file_size_bytes=0,
                              **mapping.variant_axis_columns(failure.axes))
                session.add(row)
            row.build_status, row.failed_step, row.build_error = "failed", failure.step, failure.reason
        self._write(work)

    def record_result(self, sweep_id: int, device_id: int, variant_sha256: str, spec: dict[str, Any],
                      result: dict[str, Any]) -> int:
        """Store one job's result (with its series, software stack and raw latency samples) in one transaction."""
        columns = mapping.result_columns(spec, result)
        samples = result.get("latency_samples_ms")

        def work(session: Session) -> int:
            row = Result(sweep_id=sweep_id, device_id=device_id, variant_sha256=variant_sha256,
                         series_id=_series_id(session, device_id, variant_sha256, spec),
                         stack_id=_stack_id(session, columns["telemetry"]), **columns)
            session.add(row)
            session.flush()
            accuracy = result.get("accuracy")
            session.add_all(AccuracyMetric(result_id=row.id, **metric)
                            for metric in mapping.accuracy_metric_rows(accuracy))
            session.add_all(PipelineStage(result_id=row.id, **stage)
                            for stage in mapping.pipeline_stage_rows(result.get("pipeline")))
            found = mapping.detection_rows(accuracy)
            if found:
                session.execute(insert(Detection), [{"result_id": row.id, **detection} for detection in found])
            if samples:
                session.add(LatencySamples(result_id=row.id, count=len(samples), encoding=SAMPLES_ENCODING,
                                           data=encode_samples(samples)))
                if session.get_bind().dialect.name == "postgresql":
                    session.flush()
                    session.execute(text("UPDATE latency_samples SET samples_ms = :values WHERE result_id = :id"),
                                    {"values": [float(v) for v in samples], "id": row.id})
            return row.id
        return self._write(work)

    def add_marker(self, series_id: int, reason: str, first_result_id: int | None = None) -> int:
        """Accept a new baseline for a series from `first_result_id` on (default: its newest result).

        Open alerts of the series are closed: the marker says their change is understood.
        """
        def work(session: Session) -> int:
            first = first_result_id
            if first is None:
                first = session.scalar(select(Result.id).where(Result.series_id == series_id)
                                       .order_by(Result.id.desc()).limit(1))
            marker = ChangeMarker(series_id=series_id, first_result_id=first, reason=reason,
                                  created_by=_user())
            session.add(marker)
            session.flush()
            session.execute(update(Alert).where(Alert.series_id == series_id, Alert.closed_at.is_(None))
                            .values(closed_at=utcnow(), resolution=f"accepted by change marker {marker.id}: {reason}"))
            return marker.id
        return self._write(work)


    def mark(self, series: list[tuple[int, str]], reason: str, device: str | None = None) -> list[tuple[str, int]]:
        """A change marker for each (id, key) series, and the board alert of `device` closed; (key, marker id)."""
        if not reason.strip():
            raise UserError("--reason is empty: say why the new numbers are the new normal")
        marked = [(key, self.add_marker(series_id, reason)) for series_id, key in series]
        if device is not None:
            self._write(lambda session: session.execute(
                update(Alert).where(Alert.kind == "board", Alert.closed_at.is_(None),
                                    Alert.device_id.in_(select(Device.id).where(Device.name == device)))
                .values(closed_at=utcnow(), resolution=f"accepted by change markers: {reason}")))
        return marked


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _get_or_create(session: Session, model: type[T], lookup: dict[str, Any], create: dict[str, Any]) -> T:
    """The row matching `lookup`, inserted if missing; a concurrent insert of the same row (PostgreSQL) is reused."""
    query = select(model).filter_by(**lookup)
    found = session.scalar(query)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            row = model(**lookup, **create)
            session.add(row)
        return row
    except IntegrityError:
        return session.scalars(query).one()


def _series_id(session: Session, device_id: int, variant_sha256: str, spec: dict[str, Any]) -> int:
    device_name = session.get_one(Device, device_id).name
    _, _, digest = mapping.series_identity(device_name, variant_sha256, spec)
    config = mapping.series_config(spec)
    series = _get_or_create(session, Series, {"device_id": device_id, "variant_sha256": variant_sha256,
                                              "config_sha256": digest}, {
        "key": mapping.series_key(device_name, variant_sha256, digest), "providers": ",".join(config["providers"]),
        "intra_op_threads": config["intra_op_threads"], "inter_op_threads": config["inter_op_threads"],
        "graph_optimization": config["graph_optimization"], "run_config": config})
    return series.id


def _stack_id(session: Session, telemetry: dict[str, Any]) -> int:
    fields = mapping.stack_fields(telemetry, __version__)
    stack = _get_or_create(session, SoftwareStack, {"stack_sha256": mapping.stack_sha256(fields)}, fields)
    return stack.id
