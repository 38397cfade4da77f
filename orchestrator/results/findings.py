"""What `orch regress` reports: per-series findings, board-level findings, and the report that holds them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Finding.status values, in the order a report lists them.
CONFIRMED, SUSPECT, CLEARED, IMPROVEMENT = "confirmed", "suspect", "cleared", "improvement"


@dataclass
class SeriesRef:
    """A series as a re-run hook and a report see it.

    spec is the job spec of the series' newest result: a re-run runs exactly that job on the same device.
    """

    series_id: int
    key: str
    device: str
    device_id: int
    variant: str
    variant_sha256: str
    recipe: str
    providers: str
    threads: int
    spec: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finding:
    """One metric of one series that moved beyond its rule, and what became of it.

    status: confirmed (the re-run also violated, or an open confirmed alert still violates), suspect (no re-run
    was possible), cleared (the re-run did not violate), improvement (moved the better way).
    change is signed so that positive is worse (a fraction, or points for unit `points`); change_pct is the
    plain change in percent (or points). stack_changes: {field: [last good, first bad]}.
    """

    series: SeriesRef
    metric: str
    unit: str
    status: str
    baseline_value: float
    spread: float
    baseline_n: int
    new_value: float
    z: float
    change: float
    change_pct: float
    result_id: int
    last_good_result_id: int | None
    first_bad_result_id: int | None = None
    rerun_value: float | None = None
    rerun_result_id: int | None = None
    stack_changes: dict[str, list[Any]] = field(default_factory=dict)
    sql: str = ""
    alert_id: int | None = None
    note: str = ""


@dataclass
class BoardFinding:
    """At least board_fraction of a board's series shifted the worse way together: one alert for the board."""

    device: str
    device_id: int
    status: str
    series_checked: int
    shifted: list[Finding]
    alert_id: int | None = None
    note: str = ""


@dataclass
class RegressReport:
    """Everything one `orch regress` run found, and the confirmed alerts still open on the devices it checked."""

    series_checked: int = 0
    insufficient: list[tuple[SeriesRef, int]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    boards: list[BoardFinding] = field(default_factory=list)
    recovered_alerts: list[int] = field(default_factory=list)
    open_confirmed: list[dict[str, Any]] = field(default_factory=list)

    def with_status(self, status: str) -> list[Finding]:
        """Findings of one status, the biggest change first."""
        return sorted((f for f in self.findings if f.status == status), key=lambda f: -abs(f.change))

    @property
    def confirmed(self) -> list[Finding]:
        return self.with_status(CONFIRMED)

    @property
    def has_confirmed(self) -> bool:
        """Whether a confirmed regression exists: found now, or still open (not accepted by `orch mark`) on a
        device checked. `orch regress` then exits 1."""
        return bool(self.confirmed or self.open_confirmed) or any(b.status == CONFIRMED for b in self.boards)

    def confirmed_series_keys(self) -> set[str]:
        keys = {f.series.key for f in self.confirmed}
        keys |= {f.series.key for board in self.boards if board.status == CONFIRMED for f in board.shifted}
        return keys

    def to_dict(self) -> dict[str, Any]:
        def finding(f: Finding) -> dict[str, Any]:
            body = asdict(f)
            body["series"] = {k: v for k, v in body["series"].items() if k != "spec"}
            return body

        return {
            "series_checked": self.series_checked,
            "insufficient_data": [{"series": ref.key, "device": ref.device, "variant": ref.variant,
                                   "baseline_n": n} for ref, n in self.insufficient],
            "confirmed": [finding(f) for f in self.confirmed],
            "suspects": [finding(f) for f in self.with_status(SUSPECT)],
            "cleared_by_rerun": [finding(f) for f in self.with_status(CLEARED)],
            "improvements": [finding(f) for f in self.with_status(IMPROVEMENT)],
            "boards": [{"device": b.device, "status": b.status, "series_checked": b.series_checked,
                        "alert_id": b.alert_id, "note": b.note, "shifted": [finding(f) for f in b.shifted]}
                       for b in self.boards],
            "recovered_alerts": self.recovered_alerts,
            "open_confirmed_alerts": self.open_confirmed,
        }
