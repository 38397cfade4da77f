"""SQLAlchemy 2 models of the results database. Changes go through migrations/ (alembic).

Every measured field carries its unit in its name. Tables:

    sweeps            one `orch sweep` / `orch nightly` / re-run batch (kind: manual, nightly, rerun)
    devices           boards results were measured on
    variants          built model variants (sha256 of the ONNX bytes), with their grid parameters as columns
    series            what a comparison compares: device x variant x providers x run configuration
    software_stacks   onnxruntime, OS image, kernel, JetPack, agent/orch versions (per result, not in the series key)
    results           one job's outcome: status, latency summary, energy, power, memory, accuracy, conditions
                      (memory in MB, 10^6 bytes)
    latency_samples   every timed run of a result: one zlib-compressed float32 blob
    accuracy_metrics  every number of a result's accuracy pass (COCO's twelve, VOC AP; per class too)
    pruning_steps     the figures after every round of an iterative pruning (step 0: the parent model)
    detections        a result's every detection, when its recipe keeps them (COCO's results format)
    change_markers    an accepted new baseline of a series (`orch mark`)
    alerts            regressions found by `orch regress` (open until a marker accepts them or they recover)
    figures_of_merit  each figure of merit the `fom` view reports: name (its column), formula, units, description

Views (created by the migrations): latest_results, study_results, series_sweeps, pareto, fom, regressions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The views the migrations create (people's names for common questions).
VIEW_NAMES = ("latest_results", "study_results", "series_sweeps", "pareto", "fom", "regressions")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Sweep(Base):
    """One batch of measurements: an `orch sweep` (manual), an `orch nightly` run, or the re-runs of `orch regress`."""

    __tablename__ = "sweeps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipe_name: Mapped[str] = mapped_column(String(200), index=True)
    recipe_path: Mapped[str] = mapped_column(Text)
    recipe_sha256: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20), default="manual")     # manual | nightly | rerun
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | finished | interrupted | failed
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
    """A built model variant, identified by the sha256 of its ONNX bytes; its grid parameters are columns."""

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
    # The grid axes (recipes/grid.py) as columns, so SQL can filter and group on them.
    prune_method: Mapped[str | None] = mapped_column(String(40), nullable=True)
    prune_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    prune_scope: Mapped[str | None] = mapped_column(String(20), nullable=True)
    prune_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    finetune_epochs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sparsity_target: Mapped[float | None] = mapped_column(Float, nullable=True)
    fold_bn: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    distilled: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    input_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quantize: Mapped[str | None] = mapped_column(String(60), nullable=True)
    # Added by migration 0003. A failed build is a row too: its sha256 is then the lineage key of its last step.
    build_status: Mapped[str | None] = mapped_column(String(20), nullable=True)      # ok | failed
    failed_step: Mapped[str | None] = mapped_column(String(60), nullable=True)
    build_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    simplify: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    onnx_nodes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    nodes_before_simplify: Mapped[int | None] = mapped_column(Integer, nullable=True)
    nodes_after_simplify: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # How closely a quantized or fp16 variant reproduces the model it came from, on calibration images.
    output_error: Mapped[float | None] = mapped_column(Float, nullable=True)     # mean relative L2 error
    top1_agreement: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Added by migration 0004: the onnxruntime release a build targeted, and what a runtime must load of it.
    target_runtime: Mapped[str | None] = mapped_column(String(40), nullable=True)
    ir_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    opsets: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Added by migration 0005: what host_accuracy is (top1, voc07_ap50, voc_ap50, coco_ap); the graph_nms axis.
    host_metric: Mapped[str | None] = mapped_column(String(40), nullable=True)
    graph_nms: Mapped[bool | None] = mapped_column(Boolean, nullable=True)     # the `graph_nms` axis
    # Added by migration 0006: a detector's input, pre-processing, decoder, class map and label names.
    detector: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Added by migration 0007: a study's baseline variant (`source`: the network as its weights file has it;
    # `retrained`: before compression), NULL for the grid's variants.
    baseline: Mapped[str | None] = mapped_column(String(20), nullable=True)


class Series(Base):
    """What a comparison compares: one variant on one device with one run configuration.

    key is stable and short (`device:variant12:config8`); the software stack is deliberately not part of it,
    so a new onnxruntime or kernel shows up as a change within the series.
    """

    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("device_id", "variant_sha256", "config_sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    variant_sha256: Mapped[str] = mapped_column(ForeignKey("variants.sha256"), index=True)
    providers: Mapped[str] = mapped_column(String(300))
    intra_op_threads: Mapped[int] = mapped_column(Integer)
    inter_op_threads: Mapped[int] = mapped_column(Integer)
    graph_optimization: Mapped[str] = mapped_column(String(20))
    run_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    device: Mapped[Device] = relationship()
    variant: Mapped[Variant] = relationship()


class SoftwareStack(Base):
    """The software a result was measured with; identical stacks share a row (stack_sha256)."""

    __tablename__ = "software_stacks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stack_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    onnxruntime_version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    os_image: Mapped[str | None] = mapped_column(Text, nullable=True)
    kernel: Mapped[str | None] = mapped_column(String(200), nullable=True)
    jetpack: Mapped[str | None] = mapped_column(String(40), nullable=True)
    python_version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    numpy_version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    agent_version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    orch_version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    providers_available: Mapped[str | None] = mapped_column(Text, nullable=True)


class Result(Base):
    """One benchmark job's outcome: a variant timed on a device with one run configuration."""

    __tablename__ = "results"
    __table_args__ = (Index("ix_results_series_status_id", "series_id", "status", "id"),
                      Index("ix_results_series_status_sweep", "series_id", "status", "sweep_id"))
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
    # Added by migration 0002 (nullable: rows of older databases are backfilled where the data allows).
    series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id"), nullable=True)
    stack_id: Mapped[int | None] = mapped_column(ForeignKey("software_stacks.id"), nullable=True)
    repeat_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    repeat_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    timed_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    warmup_iterations: Mapped[int | None] = mapped_column(Integer, nullable=True)
    warmup_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    power_method: Mapped[str | None] = mapped_column(Text, nullable=True)  # Text since migration 0007
    power_meter: Mapped[str | None] = mapped_column(String(100), nullable=True)
    power_measured: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    power_samples: Mapped[int | None] = mapped_column(Integer, nullable=True)
    power_rate_hz: Mapped[float | None] = mapped_column(Float, nullable=True)
    power_window_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    idle_w: Mapped[float | None] = mapped_column(Float, nullable=True)
    mean_w: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_w: Mapped[float | None] = mapped_column(Float, nullable=True)
    energy_j: Mapped[float | None] = mapped_column(Float, nullable=True)
    energy_per_inference_mj: Mapped[float | None] = mapped_column(Float, nullable=True)
    energy_per_inference_net_mj: Mapped[float | None] = mapped_column(Float, nullable=True)
    power_reasons: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    temp_before_max_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    temp_after_max_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    throttled: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    power_mode: Mapped[str | None] = mapped_column(String(60), nullable=True)
    conditions: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Added by migration 0005: a detector's mean decode + NMS time per image during the accuracy pass.
    postprocess_ms_per_image: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Added by migration 0006: a pipeline job's figures (NULL mode: a plain latency job). Its p50_ms ... are the
    # per-frame latency, source read to encoded frame; throughput_ips is fps.
    pipeline_mode: Mapped[str | None] = mapped_column(String(20), nullable=True)
    fps: Mapped[float | None] = mapped_column(Float, nullable=True)
    frames: Mapped[int | None] = mapped_column(Integer, nullable=True)
    frames_dropped: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cpu_percent: Mapped[float | None] = mapped_column(Float, nullable=True)    # 100: one core busy
    frames_dir: Mapped[str | None] = mapped_column(Text, nullable=True)       # the annotated frames sent back
    # Added by migration 0007: the model's share of memory (peak RSS minus RSS before the session was created, MB)
    # and what the timed loop fed the model (synthetic | evaluation_set; NULL: older agents, synthetic).
    model_rss_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    measure_inputs: Mapped[str | None] = mapped_column(String(20), nullable=True)

    sweep: Mapped[Sweep] = relationship()
    device: Mapped[Device] = relationship()
    variant: Mapped[Variant] = relationship()


class LatencySamples(Base):
    """Every timed run's latency of one result: little-endian float32 milliseconds, zlib-compressed.

    On PostgreSQL the same values are also kept as a real[] column `samples_ms` (see migration 0002),
    which the SQL function samples_quantile(samples_ms, q) reads there.
    """

    __tablename__ = "latency_samples"
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    encoding: Mapped[str] = mapped_column(String(40), default="zlib-float32le-ms")
    data: Mapped[bytes] = mapped_column(LargeBinary)


class AccuracyMetric(Base):
    """One number of a result's accuracy pass (agent/detection/metrics.py names); class_name NULL: over all
    classes. results.accuracy is the headline one (results.accuracy_metric names it)."""

    __tablename__ = "accuracy_metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(40))
    class_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


class PipelineStage(Base):
    """One stage of a pipeline job (read, preprocess, infer, postprocess, draw, encode): its per-frame times and
    its share of the sum of the stages' means."""

    __tablename__ = "pipeline_stages"
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(20), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    p50_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    p90_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    mean_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    share: Mapped[float | None] = mapped_column(Float, nullable=True)


class PruningStep(Base):
    """The figures after one round of a variant's iterative pruning (step 0: the model before the first round)."""

    __tablename__ = "pruning_steps"
    variant_sha256: Mapped[str] = mapped_column(ForeignKey("variants.sha256"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    macs: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    params: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    accuracy_metric: Mapped[str | None] = mapped_column(String(40), nullable=True)
    accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)


class Detection(Base):
    """One detection of a result's accuracy pass, as a row of COCO's results format: box [x, y, w, h] in the
    original image's pixels, the data set's image and category ids."""

    __tablename__ = "detections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(BigInteger)
    category_id: Mapped[int] = mapped_column(BigInteger)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    w: Mapped[float] = mapped_column(Float)
    h: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)


class FigureOfMerit(Base):
    """A figure of merit the `fom` view reports: `name` is its column there, `formula` the SQL expression over
    study_results' columns that computes it, `units` what it is measured in. Filled by the migrations."""

    __tablename__ = "figures_of_merit"
    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    formula: Mapped[str] = mapped_column(Text)
    units: Mapped[str] = mapped_column(String(60))
    description: Mapped[str] = mapped_column(Text)


class ChangeMarker(Base):
    """An accepted new baseline: regress compares a series only with results from first_result_id on."""

    __tablename__ = "change_markers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    first_result_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Alert(Base):
    """A regression found by `orch regress`, for one series and metric, or for a whole board.

    status: confirmed (a re-run also violated), suspect (no re-run was possible), cleared (the re-run did not
    violate; closed at once). An alert stays open until a change marker accepts it or the series recovers.
    """

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))               # series | board
    status: Mapped[str] = mapped_column(String(20))             # confirmed | suspect | cleared
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id"), nullable=True, index=True)
    metric: Mapped[str] = mapped_column(String(60))
    baseline_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    baseline_spread: Mapped[float | None] = mapped_column(Float, nullable=True)
    baseline_n: Mapped[int | None] = mapped_column(Integer, nullable=True)
    new_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    rerun_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    z: Mapped[float | None] = mapped_column(Float, nullable=True)
    change_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    first_result_id: Mapped[int | None] = mapped_column(ForeignKey("results.id"), nullable=True)
    last_result_id: Mapped[int | None] = mapped_column(ForeignKey("results.id"), nullable=True)
    last_good_result_id: Mapped[int | None] = mapped_column(ForeignKey("results.id"), nullable=True)
    rerun_result_id: Mapped[int | None] = mapped_column(ForeignKey("results.id"), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    resolution: Mapped[str | None] = mapped_column(Text, nullable=True)
