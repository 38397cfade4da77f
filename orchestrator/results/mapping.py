"""Pure mappings from the agent's JSON (job spec, result) and a variant's grid axes to database columns.

Old results lack most keys; every missing key maps to NULL. The series key and the stack hash defined here
are a stable contract: rows written years apart must land in the same series.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SERIES_CONFIG_FIELDS = ("providers", "intra_op_threads", "inter_op_threads", "graph_optimization", "inputs",
                        "evaluation")
# What makes a pipeline job a different measurement (agent/spec.py PipelineSpec; `detection` holds its confidence
# threshold): the frames saved or the detections kept are not.
PIPELINE_CONFIG_FIELDS = ("mode", "source", "frames", "queue_size", "jpeg_quality", "detection")
STACK_FIELDS = ("onnxruntime_version", "os_image", "kernel", "jetpack", "python_version", "numpy_version",
                "agent_version", "orch_version", "providers_available")
THROTTLING_NOW_FLAGS = ("under_voltage_now", "arm_frequency_capped_now", "throttled_now", "soft_temp_limit_now")


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def series_config(spec: dict[str, Any]) -> dict[str, Any]:
    """The run configuration that, with device and variant, defines a series.

    Providers, thread counts, graph optimization, input shapes, the evaluation set and what the timed loop
    feeds the model (measure.inputs): what changes the numbers by design. Measurement gates, seeds and
    power/thermal settings are not part of it.
    """
    config = {name: spec.get(name) for name in SERIES_CONFIG_FIELDS}
    config["providers"] = list(config["providers"] or [])
    config["intra_op_threads"] = int(config["intra_op_threads"] or 0)
    config["inter_op_threads"] = int(config["inter_op_threads"] or 0)
    config["graph_optimization"] = config["graph_optimization"] or ""
    pipeline = spec.get("pipeline")
    if pipeline:  # only pipeline jobs carry the key, so every older series keeps its digest
        config["pipeline"] = {name: pipeline.get(name) for name in PIPELINE_CONFIG_FIELDS}
    if (spec.get("measure") or {}).get("inputs") == "evaluation_set":
        # Timed over the real test images: never compared with the synthetic input. Only these jobs carry the
        # key, so every series timed on synthetic input (all of them before measure.inputs) keeps its digest.
        config["measure_inputs"] = "evaluation_set"
    return config


def config_sha256(config: dict[str, Any]) -> str:
    return _sha256_json(config)


def series_identity(device_name: str, variant_sha256: str, spec: dict[str, Any]) -> tuple[str, str, str]:
    """What makes two jobs the same job, and their results one series: (device, variant, config sha256).

    The one definition of "the same job": a sweep's resume counts ok results by it, and results are filed
    into series by it.
    """
    return device_name, variant_sha256, config_sha256(series_config(spec))


def series_key(device_name: str, variant_sha256: str, config_digest: str) -> str:
    """The stable, copy-pastable name of a series: `device:variant12:config8`."""
    return f"{device_name}:{variant_sha256[:12]}:{config_digest[:8]}"


def stack_fields(telemetry: dict[str, Any], orch_version: str | None) -> dict[str, Any]:
    """The software stack of a result, from the agent's telemetry (NULL for whatever is not reported)."""
    available = telemetry.get("providers_available")
    return {
        "onnxruntime_version": telemetry.get("onnxruntime"),
        "os_image": telemetry.get("os_image") or telemetry.get("os"),
        "kernel": telemetry.get("kernel"),
        "jetpack": telemetry.get("jetpack") or telemetry.get("l4t"),
        "python_version": telemetry.get("python"),
        "numpy_version": telemetry.get("numpy"),
        "agent_version": telemetry.get("agent_version"),
        "orch_version": orch_version,
        "providers_available": ",".join(available) if isinstance(available, list) else available,
    }


def stack_sha256(fields: dict[str, Any]) -> str:
    return _sha256_json({name: fields.get(name) for name in STACK_FIELDS})


def variant_axis_columns(axes: dict[str, Any]) -> dict[str, Any]:
    """A variant's grid axes (recipes/grid.py) as the variants table's parameter columns."""
    return {
        "prune_method": axes.get("prune_method"), "prune_ratio": axes.get("prune_ratio"),
        "prune_scope": axes.get("prune_scope"), "prune_steps": axes.get("prune_steps"),
        "finetune_epochs": axes.get("finetune_epochs"), "sparsity_target": axes.get("sparsity_target"),
        "fold_bn": axes.get("fold_bn"), "distilled": bool(axes["distill"]) if "distill" in axes else None,
        "input_size": axes.get("input_size"), "quantize": axes.get("quantize"), "simplify": axes.get("simplify"),
        "target_runtime": axes.get("target_runtime"), "graph_nms": axes.get("graph_nms"),
        "baseline": axes.get("baseline"),
    }


# The per-class numbers of a detection accuracy pass that are kept (agent/detection/metrics.py Scores.per_class).
PER_CLASS_METRICS = ("coco_ap", "coco_ap50", "voc_ap50", "voc07_ap50")


def accuracy_metric_rows(accuracy: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The accuracy_metrics rows of a result's accuracy pass: every number over all classes, then per class."""
    if not accuracy:
        return []
    rows = [{"metric": name, "class_name": None, "value": value}
            for name, value in (accuracy.get("metrics") or {}).items()]
    for entry in accuracy.get("per_class") or []:
        rows += [{"metric": name, "class_name": str(entry.get("class")), "value": entry.get(name)}
                 for name in PER_CLASS_METRICS if name in entry]
    return rows


def detection_rows(accuracy: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The detections rows of a result whose recipe keeps them: [image_id, category_id, x, y, w, h, score]."""
    return [{"image_id": int(row[0]), "category_id": int(row[1]), "x": row[2], "y": row[3], "w": row[4],
             "h": row[5], "score": row[6]} for row in (accuracy or {}).get("detections") or []]


def pipeline_stage_rows(pipeline: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The pipeline_stages rows of a pipeline job's result, in stage order."""
    return [{"stage": str(entry.get("stage")), "position": position, "p50_ms": entry.get("p50_ms"),
             "p90_ms": entry.get("p90_ms"), "mean_ms": entry.get("mean_ms"), "share": entry.get("share")}
            for position, entry in enumerate((pipeline or {}).get("stages") or [])]


def pruning_step_rows(lineage: list[dict[str, Any]], metric: str | None) -> list[dict[str, Any]]:
    """The pruning_steps rows of a variant: every round its lineage's iterative pruning recorded."""
    return [{"step": item.get("step"), "ratio": item.get("ratio"), "macs": item.get("macs"),
             "params": item.get("params"), "accuracy_metric": item.get("metric", metric),
             "accuracy": item.get("accuracy")}
            for record in lineage for item in (record.get("meta") or {}).get("iterations") or []]


def _max_temperature_c(conditions: dict[str, Any] | None, legacy: Any) -> float | None:
    temperatures = (conditions or {}).get("temperatures_c") or legacy or {}
    values = [float(v) for v in temperatures.values() if isinstance(v, int | float)] \
        if isinstance(temperatures, dict) else []
    return max(values) if values else None


def _throttled(*conditions: dict[str, Any] | None) -> bool | None:
    """True if any `*_now` throttling flag was set before or after the run; None if no board reports them."""
    flags: list[dict[str, Any]] = [c["throttling"] for c in conditions
                                   if c and isinstance(c.get("throttling"), dict)]
    if not flags:
        return None
    return any(bool(f.get(name)) for f in flags for name in THROTTLING_NOW_FLAGS)


def result_columns(spec: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """The results table's columns (except ids) for one agent result and the spec it ran."""
    timing = result.get("timing") or {}
    memory = result.get("memory") or {}
    accuracy = result.get("accuracy") or {}
    power = result.get("power") or {}
    repeat = result.get("repeat") or {}
    telemetry = result.get("telemetry") or {}
    before, after = result.get("conditions_before"), result.get("conditions_after")
    conditions = {"before": before, "after": after} if before is not None or after is not None else None
    measured = power.get("measured")
    pipeline = result.get("pipeline") or {}
    return {
        "status": result.get("status", "error"), "reasons": result.get("reasons") or [],
        "error": result.get("error"), "providers": ",".join(spec.get("providers", [])),
        "threads": spec.get("intra_op_threads", 0), "graph_optimization": spec.get("graph_optimization", ""),
        **{name: timing.get(name) for name in (
            "session_create_ms", "first_run_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms",
            "max_ms", "iterations", "duration_s", "throughput_ips", "timed_s", "warmup_iterations", "warmup_s")},
        "rss_before_session_mb": memory.get("rss_before_session_mb"), "peak_rss_mb": memory.get("peak_rss_mb"),
        "model_rss_mb": memory.get("model_mb"), "measure_inputs": timing.get("inputs"),
        "accuracy_metric": accuracy.get("metric"), "accuracy": accuracy.get("value"),
        "accuracy_n": accuracy.get("n"), "postprocess_ms_per_image": accuracy.get("postprocess_ms_per_image"),
        "repeat_index": repeat.get("index"), "repeat_count": repeat.get("of"),
        "power_method": power.get("method"), "power_meter": power.get("meter"),
        "power_measured": bool(measured) if measured is not None else None,
        "power_samples": power.get("samples"), "power_rate_hz": power.get("rate_hz"),
        "power_window_s": power.get("window_s"), "idle_w": power.get("idle_w"), "mean_w": power.get("mean_w"),
        "max_w": power.get("max_w"), "energy_j": power.get("energy_j"),
        "energy_per_inference_mj": power.get("energy_per_inference_mj"),
        "energy_per_inference_net_mj": power.get("energy_per_inference_net_mj"),
        "power_reasons": power.get("reasons") if power else None,
        "temp_before_max_c": _max_temperature_c(before, telemetry.get("temperatures_before_c")),
        "temp_after_max_c": _max_temperature_c(after, telemetry.get("temperatures_after_c")),
        "throttled": _throttled(before, after),
        "power_mode": (after or {}).get("power_mode") or (before or {}).get("power_mode"),
        "conditions": conditions,
        "pipeline_mode": (spec.get("pipeline") or {}).get("mode"), "fps": pipeline.get("fps"),
        "frames": pipeline.get("frames"),
        "frames_dropped": pipeline.get("frames_dropped"), "cpu_percent": pipeline.get("cpu_percent"),
        "frames_dir": pipeline.get("frames_dir"),
        "telemetry": telemetry, "spec": spec,
    }
