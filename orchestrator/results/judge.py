"""The regression rule: settings (pydantic, every threshold configurable) and the robust comparison of a new
value with its baseline.

    baseline_size        how many valid results before the newest form the baseline (14)
    min_baseline         fewer baseline points than this: "insufficient data" (5)
    z_threshold          robust z at or beyond which a change counts (4)
    mad_scale            MAD to standard deviation for normal data (1.4826)
    min_spread_fraction  the spread is at least this fraction of the median (0.01), so a very steady series
                         does not flag a negligible change
    metrics              per metric: which direction is worse, the minimum change (a fraction of the
                         median, or percentage points for a 0..1 metric such as accuracy), whether z must
                         also reach z_threshold
    board_fraction       at least this fraction of a board's series shifting together: one board alert (0.5)
    board_min_series     ... on boards with at least this many series with enough data (4)
    board_rerun_series   how many of a board's shifted series to re-run to confirm a board alert (2)
    cooldown_s           pause before re-running on a board, so a hot board cools first (60)
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.errors import SettingsError, UserError
from orchestrator.yamlfile import read_yaml

# Columns of `results` that regress can judge.
METRIC_COLUMNS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_ips", "peak_rss_mb", "session_create_ms",
                  "energy_per_inference_mj", "energy_per_inference_net_mj", "mean_w", "accuracy")


class MetricRule(BaseModel):
    """How one metric is judged.

    worse: `higher` (latency, energy) or `lower` (accuracy, throughput) values are worse
    min_change: smallest change that counts: a fraction of the baseline median (unit `fraction`, inclusive),
                or percentage points of a 0..1 metric (unit `points`, strictly more than)
    use_z: whether the robust z must also reach z_threshold (off for accuracy on a fixed evaluation set,
           where any drop beyond min_change is real)
    """

    model_config = ConfigDict(extra="forbid")
    worse: Literal["higher", "lower"]
    min_change: float = Field(ge=0)
    unit: Literal["fraction", "points"] = "fraction"
    use_z: bool = True


DEFAULT_METRICS: dict[str, dict[str, Any]] = {
    "p50_ms": {"worse": "higher", "min_change": 0.05},
    "p90_ms": {"worse": "higher", "min_change": 0.10},
    "p99_ms": {"worse": "higher", "min_change": 0.10},
    "energy_per_inference_mj": {"worse": "higher", "min_change": 0.08},
    "accuracy": {"worse": "lower", "min_change": 0.2, "unit": "points", "use_z": False},
}


class RegressConfig(BaseModel):
    """Settings of `orch regress` (fields in the module docstring). A `metrics` entry is merged over the default
    rule of that metric; a metric set to null is not judged."""

    model_config = ConfigDict(extra="forbid")
    baseline_size: int = Field(14, ge=1)
    min_baseline: int = Field(5, ge=1)
    z_threshold: float = Field(4.0, gt=0)
    mad_scale: float = Field(1.4826, gt=0)
    min_spread_fraction: float = Field(0.01, ge=0)
    metrics: dict[str, MetricRule] = Field(default_factory=lambda: {
        name: MetricRule(**rule) for name, rule in DEFAULT_METRICS.items()})
    board_fraction: float = Field(0.5, gt=0, le=1)
    board_min_series: int = Field(4, ge=1)
    board_rerun_series: int = Field(2, ge=1)
    cooldown_s: float = Field(60.0, ge=0)

    @field_validator("metrics", mode="before")
    @classmethod
    def _merge_metric_defaults(cls, metrics: Any) -> Any:
        if not isinstance(metrics, dict):
            return metrics
        unknown = sorted(set(metrics) - set(METRIC_COLUMNS))
        if unknown:
            raise ValueError(f"unknown metric {', '.join(unknown)} (known: {', '.join(METRIC_COLUMNS)})")
        merged: dict[str, Any] = {name: dict(rule) for name, rule in DEFAULT_METRICS.items()}
        for name, rule in metrics.items():
            if rule is None:
                merged.pop(name, None)
            elif isinstance(rule, dict):
                merged[name] = {**merged.get(name, {}), **rule}
            else:
                merged[name] = rule
        return merged

    @model_validator(mode="after")
    def _baseline_fits(self) -> RegressConfig:
        if self.min_baseline > self.baseline_size:
            raise ValueError(f"min_baseline {self.min_baseline} is more than baseline_size {self.baseline_size}")
        return self


@dataclass(frozen=True)
class Baseline:
    """Centre (median) and spread (scaled MAD, floored) of a metric's recent values."""

    centre: float
    spread: float
    n: int


def baseline_of(values: list[float], config: RegressConfig) -> Baseline:
    centre = statistics.median(values)
    mad = statistics.median(abs(v - centre) for v in values)
    spread = max(config.mad_scale * mad, config.min_spread_fraction * abs(centre))
    return Baseline(centre, spread, len(values))


@dataclass(frozen=True)
class Judgement:
    """A value against a baseline. z and change are signed so that positive is worse.

    change is a fraction of the centre (unit fraction) or percentage points (unit points);
    change_pct is the plain signed change in percent of the centre, or in points; beyond: the change, either
    way, reaches the rule's minimum; worse/better: beyond, that way, and (if the rule uses it) z beyond threshold.
    """

    z: float
    change: float
    change_pct: float
    beyond: bool
    worse: bool
    better: bool


def _robust_z(delta: float, spread: float) -> float:
    if spread > 0:
        return delta / spread
    return math.copysign(math.inf, delta) if delta else 0.0  # a baseline of identical zeros


def judge(value: float, base: Baseline, rule: MetricRule, config: RegressConfig) -> Judgement:
    """Whether `value` is a regression (worse) or an improvement (better) against the baseline under `rule`."""
    sign = 1.0 if rule.worse == "higher" else -1.0
    delta = value - base.centre
    z = sign * _robust_z(delta, base.spread)
    if rule.unit == "points":
        change, change_pct = sign * delta * 100, delta * 100
        beyond = abs(change) > rule.min_change
    else:
        scale = abs(base.centre) or 1.0
        change, change_pct = sign * delta / scale, 100 * delta / scale
        beyond = abs(change) >= rule.min_change and change != 0
    worse_z = not rule.use_z or z >= config.z_threshold
    better_z = not rule.use_z or -z >= config.z_threshold
    return Judgement(z, change, change_pct, beyond, worse=beyond and change > 0 and worse_z,
                     better=beyond and change < 0 and better_z)


def load_regress_config(path: Path | None = None, **flags: Any) -> RegressConfig:
    """Regress settings from a YAML file (if any; its errors name file, line and key) with flags on top
    (a flag left None keeps the file's value or the default)."""
    data: dict[str, Any] = {}
    if path is not None:
        document = read_yaml(path, SettingsError, "regress settings")
        if document.data is not None and not isinstance(document.data, dict):
            raise SettingsError(document.path, "regress settings must be a YAML mapping", line=1, column=1)
        data = dict(document.data or {})
        try:
            RegressConfig.model_validate(data)
        except ValidationError as exc:
            raise document.validation_error(exc) from None
    data.update({name: value for name, value in flags.items() if value is not None})
    return regress_config(data, "flags:")


def regress_config(data: dict[str, Any], source: str) -> RegressConfig:
    """A RegressConfig from plain data (a YAML file's content, with flags merged in); errors name source and key."""
    try:
        return RegressConfig.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        raise UserError(f"{source} {key}: {problem['msg']}") from None
