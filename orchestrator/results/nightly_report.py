"""The nightly report: what one nightly sweep measured and what regress found in it, as Markdown and JSON.

The report lists, in this order: coverage (jobs expected vs results received per board), accuracy changes,
board-level alerts, confirmed regressions (biggest change first, with baseline, new value, re-run value, z,
the software stack differences between last good and first bad, and the SQL that shows the history),
suspects, findings cleared by a re-run, improvements, and series without enough history yet.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from orchestrator.errors import UserError
from orchestrator.results.db import translate_errors
from orchestrator.results.findings import CLEARED, IMPROVEMENT, SUSPECT, BoardFinding, Finding, RegressReport
from orchestrator.results.schema import Device, Result, Sweep


@dataclass
class Coverage:
    """Jobs one board was expected to run tonight, results received, and how many of those are valid."""

    device: str
    expected: int
    received: int
    valid: int


@dataclass
class NightlyReport:
    """One night: the sweep, its coverage per board, and what regress found in it."""

    sweep_id: int
    recipe: str
    started_at: datetime
    sweep_status: str
    coverage: list[Coverage]
    regress: RegressReport
    files: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"sweep_id": self.sweep_id, "recipe": self.recipe, "started_at": self.started_at.isoformat(),
                "sweep_status": self.sweep_status, "coverage": [asdict(c) for c in self.coverage],
                **self.regress.to_dict()}


@translate_errors
def nightly_report(engine: Engine, sweep_id: int, found: RegressReport) -> NightlyReport:
    """The report of a recorded sweep and the regress run over it."""
    with Session(engine) as session:
        sweep = session.get_one(Sweep, sweep_id)
        counts = {name: (received, valid) for name, received, valid in session.execute(
            select(Device.name, func.count(Result.id), func.count(Result.id).filter(Result.status == "ok"))
            .join(Device, Device.id == Result.device_id).where(Result.sweep_id == sweep_id).group_by(Device.name))}
        names = list(dict.fromkeys([*sweep.devices, *counts]))
        expected = sweep.jobs_total // max(1, len(sweep.devices))
        coverage = [Coverage(name, expected, *counts.get(name, (0, 0))) for name in names]
        return NightlyReport(sweep_id, sweep.recipe_name, sweep.started_at, sweep.status, coverage, found)


def write_reports(report: NightlyReport, folder: Path) -> list[Path]:
    """Write nightly-<date>-sweep<id>.md and .json into folder; their paths."""
    stem = f"nightly-{report.started_at:%Y-%m-%d}-sweep{report.sweep_id}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        markdown, data = folder / f"{stem}.md", folder / f"{stem}.json"
        markdown.write_text(render_markdown(report), encoding="utf-8")
        data.write_text(json.dumps(report.to_dict(), indent=1, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{folder}: cannot write the nightly report: {exc.strerror}") from None
    report.files = [markdown, data]
    return report.files


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if unit == "points" else f"{value:.4g}"


def _change(finding: Finding) -> str:
    return f"{finding.change_pct:+.2f} pts" if finding.unit == "points" else f"{finding.change_pct:+.1f}%"


def _table(findings: list[Finding], with_sql: bool = False) -> list[str]:
    if not findings:
        return ["None.", ""]
    lines = ["| series | device | variant | metric | baseline | new | re-run | change | z | stack changes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for f in findings:
        stack = "; ".join(f"{name}: {old} -> {new}" for name, (old, new) in f.stack_changes.items()) or "none"
        lines.append(f"| `{f.series.key}` | {f.series.device} | {f.series.variant} | {f.metric} | "
                     f"{_value(f.baseline_value, f.unit)} | {_value(f.new_value, f.unit)} | "
                     f"{_value(f.rerun_value, f.unit)} | {_change(f)} | {f.z:.1f} | {stack} |")
    lines.append("")
    if with_sql:
        lines.append("To reproduce (`orch query \"...\"`):")
        lines.append("")
        lines.extend(f"- `{f.series.key}` {f.metric}: `{f.sql}`" for f in findings)
        lines.append("")
    return lines


def _boards(boards: list[BoardFinding]) -> list[str]:
    if not boards:
        return ["None.", ""]
    lines = []
    for board in boards:
        lines.append(f"- **{board.device}**: {board.status}; {board.note}")
        lines.extend(f"  - `{f.series.key}` {f.metric} {_change(f)} (z {f.z:.1f})" for f in board.shifted)
    return [*lines, ""]


def _open_alert(alert: dict[str, Any]) -> str:
    unit = " pts" if alert["metric"] == "accuracy" else "%"
    change = "" if alert["change_pct"] is None else f" {alert['change_pct']:+.1f}{unit}"
    return (f"- alert {alert['alert_id']}: `{alert['series_key'] or alert['device']}` {alert['metric']}{change} "
            f"since result {alert['first_result_id']} (accept with `orch mark`)")


def render_markdown(report: NightlyReport) -> str:
    found = report.regress
    accuracy = [f for f in found.findings if f.metric == "accuracy"]
    lines = [f"# Nightly report: sweep {report.sweep_id} ({report.recipe}), {report.started_at:%Y-%m-%d %H:%M} UTC",
             "", f"Sweep {report.sweep_status}; {found.series_checked} series checked; "
             f"{len(found.confirmed)} confirmed regressions, {len(found.with_status(SUSPECT))} suspects, "
             f"{len(found.with_status(IMPROVEMENT))} improvements.", "",
             "## Coverage", "", "| board | expected | received | valid |", "| --- | --- | --- | --- |"]
    lines += [f"| {c.device} | {c.expected} | {c.received} | {c.valid} |" for c in report.coverage]
    lines += ["", "## Accuracy changes", "", *_table(sorted(accuracy, key=lambda f: -f.change), with_sql=True),
              "## Board-level alerts", "", *_boards(found.boards),
              "## Confirmed regressions", "", *_table(found.confirmed, with_sql=True),
              "## Suspects (no re-run possible)", "", *_table(found.with_status(SUSPECT), with_sql=True),
              "## Cleared by a re-run", "", *_table(found.with_status(CLEARED)),
              "## Improvements", "", *_table(found.with_status(IMPROVEMENT)),
              "## Open confirmed alerts", ""]
    lines += [_open_alert(alert) for alert in found.open_confirmed] or ["None."]
    lines += ["", "## Insufficient data", ""]
    lines += [f"- `{ref.key}` ({ref.device}, {ref.variant}): {n} baseline results" for ref, n in found.insufficient] \
        or ["None."]
    return "\n".join(lines) + "\n"
