"""SQLAlchemy 2 models of the results database. Changes go through migrations/ (alembic).

Every measured field carries its unit in its name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Sweep(Base):
    """One `orch sweep` invocation: a recipe run on some devices."""

    __tablename__ = "sweeps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipe_name: Mapped[str] = mapped_column(String(200), index=True)
    recipe_path: Mapped[str] = mapped_column(Text)
    recipe_sha256: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20), default="manual")
    status: Mapped[str] = mapped_column(String(20), default="running")
    devices: Mapped[list[Any]] = mapped_column(JSON)
    jobs_total: Mapped[int] = mapped_column(Integer, default=0)
    orch_version: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Device(Base):
    """A board (or the local workstation) results were measured on."""

    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    board: Mapped[str | None] = mapped_column(Text, nullable=True)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Variant(Base):
    """A built model variant, identified by the sha256 of its ONNX bytes."""

    __tablename__ = "variants"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    recipe_name: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(300))
    axes: Mapped[dict[str, Any]] = mapped_column(JSON)
    lineage: Mapped[list[Any]] = mapped_column(JSON)
    params: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    macs: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sparsity: Mapped[float | None] = mapped_column(Float, nullable=True)
    file_size_bytes: Mapped[int] = mapped_column(BigInteger)
    host_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    build_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Result(Base):
    """One benchmark job's outcome: a variant timed on a device with one run configuration."""

    __tablename__ = "results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    variant_sha256: Mapped[str] = mapped_column(ForeignKey("variants.sha256"), index=True)
    status: Mapped[str] = mapped_column(String(20))            # ok | invalid | error
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    providers: Mapped[str] = mapped_column(String(300))
    threads: Mapped[int] = mapped_column(Integer)
    graph_optimization: Mapped[str] = mapped_column(String(20))
    session_create_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    first_run_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    p50_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    p90_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    p99_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    mean_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    std_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    min_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    iterations: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    throughput_ips: Mapped[float | None] = mapped_column(Float, nullable=True)
    rss_before_session_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    peak_rss_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy_metric: Mapped[str | None] = mapped_column(String(40), nullable=True)
    accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy_n: Mapped[int | None] = mapped_column(Integer, nullable=True)
    telemetry: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    sweep: Mapped[Sweep] = relationship()
    device: Mapped[Device] = relationship()
    variant: Mapped[Variant] = relationship()


class LatencySamples(Base):
    """Every timed run's latency of one result: little-endian float32 milliseconds, zlib-compressed."""

    __tablename__ = "latency_samples"
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    encoding: Mapped[str] = mapped_column(String(40), default="zlib-float32le-ms")
    data: Mapped[bytes] = mapped_column(LargeBinary)
