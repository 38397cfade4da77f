"""Regression detection over every series: the newest valid result against a robust baseline.

For each series, the newest valid (`ok`, not a re-run) result is compared with the baseline_size valid
results before it, counting only results from the latest change marker on. A metric moved the worse way
beyond its rule (judge.py) flags the series; a flagged series is re-run on the same board after a cool-down
(the `rerun` hook) and confirmed only if the re-run also violates; without a re-run it stays a suspect.
When at least board_fraction of a board's series shift together, the board gets one alert instead.

Alerts are idempotent: a result already judged is not re-run again, a confirmed open alert that still
violates stays confirmed without a new re-run, and an open alert closes when its series recovers.
Reading happens first, re-runs are recorded as they come, and alerts are written in one short transaction
at the end, so a long re-run never holds the database's write lock.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, text
from sqlalchemy.orm import Session

from orchestrator.results import mapping
from orchestrator.results.db import translate_errors, writer
from orchestrator.results.findings import (
    CLEARED,
    CONFIRMED,
    IMPROVEMENT,
    SUSPECT,
    BoardFinding,
    Finding,
    RegressReport,
    SeriesRef,
)
from orchestrator.results.judge import Baseline, RegressConfig, baseline_of, judge
from orchestrator.results.schema import (
    Alert,
    ChangeMarker,
    Device,
    Result,
    Series,
    SoftwareStack,
    Sweep,
    Variant,
    utcnow,
)
from orchestrator.results.store import ResultsStore

Rerun = Callable[[SeriesRef], dict[str, Any] | None]
"""Re-run a series' newest job on its board and return the agent's result dict, or None if it cannot.
A hook that records the result itself returns {"result_id": id}; otherwise regress records it (sweep kind rerun)."""

POWER_METRICS = {"energy_per_inference_mj", "energy_per_inference_net_mj", "mean_w"}


@dataclass
class _Flag:
    """A metric of a series that moved the worse way, before re-run and alert bookkeeping decide its status."""

    metric: str
    base: Baseline
    value: float
    judgement: Any
    newest_id: int
    last_good_id: int


@dataclass
class _Scan:
    series: SeriesRef
    flags: list[_Flag] = field(default_factory=list)


@translate_errors
def regress(engine: Engine, config: RegressConfig | None = None, rerun: Rerun | None = None,
            devices: Iterable[str] | None = None, sweep_id: int | None = None,
            sleep: Callable[[float], None] = time.sleep) -> RegressReport:
    """Check every series (or those of some devices, or those measured in one sweep) and record alerts."""
    return _Regress(engine, config or RegressConfig(), rerun, sleep).run(devices, sweep_id)


class _Regress:
    def __init__(self, engine: Engine, config: RegressConfig, rerun: Rerun | None,
                 sleep: Callable[[float], None]):
        self.engine, self.config, self.rerun_hook, self.sleep = engine, config, rerun, sleep
        self.store = ResultsStore(engine)
        self.report = RegressReport()
        self.rerun_sweep: int | None = None
        self.cooled: set[int] = set()
        self.series_alerts: dict[tuple[int | None, str], Alert] = {}
        self.board_alerts: dict[int, Alert] = {}
        self.cleared: set[tuple[Any, ...]] = set()
        self.alert_inserts: list[tuple[dict[str, Any], Finding | BoardFinding]] = []
        self.alert_updates: dict[int, dict[str, Any]] = {}

    # -- reading -------------------------------------------------------------------------------------------
    def run(self, devices: Iterable[str] | None, sweep_id: int | None) -> RegressReport:
        # Reading holds one snapshot; it ends before any re-run, which may take minutes on a board.
        with self.engine.connect() as connection:
            series = _series(connection, list(devices) if devices else None, sweep_id)
            markers = dict(connection.execute(select(ChangeMarker.series_id, ChangeMarker.first_result_id)
                                              .order_by(ChangeMarker.id)).all())
            with Session(connection) as session:
                for alert in session.scalars(select(Alert).where(Alert.closed_at.is_(None))):
                    if alert.kind == "board":
                        self.board_alerts[alert.device_id] = alert
                    else:
                        self.series_alerts[(alert.series_id, alert.metric)] = alert
            self.cleared = {tuple(row) for row in connection.execute(
                select(Alert.series_id, Alert.metric, Alert.last_result_id).where(Alert.status == CLEARED))}
            scans: list[_Scan] = []
            checked_by_device: dict[int, int] = defaultdict(int)
            for ref in series:
                scan = self._scan(connection, ref, markers.get(ref.series_id))
                if scan is not None:
                    checked_by_device[ref.device_id] += 1
                    if scan.flags:
                        scans.append(scan)
        self._decide(scans, checked_by_device)
        with self.engine.connect() as connection:
            self._add_context(connection)
        self._write_alerts()
        if self.rerun_sweep is not None:
            self.store.finish_sweep(self.rerun_sweep, "finished")
        self.report.open_confirmed = _open_confirmed(self.engine, {ref.device for ref in series})
        return self.report

    def _scan(self, connection: Connection, ref: SeriesRef, first_result_id: int | None) -> _Scan | None:
        """Judge the newest result of a series; None if it has no valid result or too short a baseline."""
        metrics = list(self.config.metrics)
        query = (select(Result.id, Result.power_measured, *(getattr(Result, m) for m in metrics))
                 .join(Sweep, Sweep.id == Result.sweep_id)
                 .where(Result.series_id == ref.series_id, Result.status == "ok", Sweep.kind != "rerun")
                 .order_by(Result.id.desc()).limit(self.config.baseline_size + 1))
        if first_result_id is not None:
            query = query.where(Result.id >= first_result_id)
        rows = connection.execute(query).all()
        if not rows:
            return None
        if len(rows) - 1 < self.config.min_baseline:
            self.report.insufficient.append((ref, len(rows) - 1))
            return None
        self.report.series_checked += 1
        newest, base_rows = rows[0], rows[1:]
        scan = _Scan(ref)
        for index, metric in enumerate(metrics, start=2):
            value = _measured(newest, index, metric)
            values = [v for row in base_rows if (v := _measured(row, index, metric)) is not None]
            if value is None or len(values) < self.config.min_baseline:
                continue
            base = baseline_of(values, self.config)
            judgement = judge(value, base, self.config.metrics[metric], self.config)
            flag = _Flag(metric, base, value, judgement, newest[0], base_rows[0][0])
            if judgement.worse:
                scan.flags.append(flag)
                continue
            self._maybe_recovered(ref, metric, value)
            if judgement.better:
                self.report.findings.append(self._finding(ref, flag, IMPROVEMENT))
        return scan

    def _maybe_recovered(self, ref: SeriesRef, metric: str, value: float) -> None:
        """Close an open alert whose series is back within the minimum change of the baseline it was raised on."""
        alert = self.series_alerts.get((ref.series_id, metric))
        if alert is None or alert.baseline_value is None:
            return
        old = Baseline(alert.baseline_value, alert.baseline_spread or 0.0, alert.baseline_n or 0)
        judgement = judge(value, old, self.config.metrics[metric], self.config)
        if not (judgement.beyond and judgement.change > 0):
            self.alert_updates.setdefault(alert.id, {}).update(
                closed_at=utcnow(), resolution=f"recovered: {metric} {value:.6g} against baseline {old.centre:.6g}")
            self.report.recovered_alerts.append(alert.id)

    # -- deciding ------------------------------------------------------------------------------------------
    def _decide(self, scans: list[_Scan], checked_by_device: dict[int, int]) -> None:
        by_device: dict[int, list[_Scan]] = defaultdict(list)
        for scan in scans:
            by_device[scan.series.device_id].append(scan)
        for device_id, device_scans in by_device.items():
            checked = checked_by_device[device_id]
            if checked >= self.config.board_min_series and len(device_scans) >= self.config.board_fraction * checked:
                self._decide_board(device_id, device_scans, checked)
            else:
                for scan in device_scans:
                    self._decide_series(scan)

    def _decide_series(self, scan: _Scan) -> None:
        ref = scan.series
        carried = {f.metric for f in scan.flags
                   if (alert := self.series_alerts.get((ref.series_id, f.metric))) and alert.status == CONFIRMED}
        known_clear = {f.metric for f in scan.flags if (ref.series_id, f.metric, f.newest_id) in self.cleared}
        pending = [f for f in scan.flags if f.metric not in carried | known_clear]
        rerun = self._rerun(ref) if pending else None
        for flag in scan.flags:
            finding = self._finding(ref, flag, CONFIRMED)
            if flag.metric in carried:
                finding.note = "still violating under an open confirmed alert"
            elif flag.metric in known_clear:
                finding.status, finding.note = CLEARED, "this result was already cleared by a re-run"
            else:
                self._apply_rerun(finding, flag, rerun)
            self._record_alert(finding, flag)
            self.report.findings.append(finding)

    def _decide_board(self, device_id: int, scans: list[_Scan], checked: int) -> None:
        board = BoardFinding(scans[0].series.device, device_id, SUSPECT, checked, [])
        alert = self.board_alerts.get(device_id)
        carried = alert is not None and alert.status == CONFIRMED
        verdicts = []
        for number, scan in enumerate(scans):
            rerun = None if carried or number >= self.config.board_rerun_series else self._rerun(scan.series)
            for flag in scan.flags:
                finding = self._finding(scan.series, flag, SUSPECT)
                if rerun is not None:
                    self._apply_rerun(finding, flag, rerun)
                    verdicts.append(finding.status == CONFIRMED)
                board.shifted.append(finding)
        if carried:
            board.status, board.note = CONFIRMED, "still shifted under an open confirmed board alert"
        elif verdicts:
            board.status = CONFIRMED if all(verdicts) else CLEARED
        board.note = board.note or f"{len(scans)} of {checked} series shifted together; {len(verdicts)} re-run"
        for finding in board.shifted:
            if finding.rerun_result_id is None:
                finding.status = board.status
        fields = {"kind": "board", "status": board.status, "device_id": device_id, "series_id": None,
                  "metric": "board", "last_result_id": board.shifted[0].result_id,
                  "details": {"series_checked": checked, "note": board.note,
                              "shifted": [[f.series.key, f.metric, round(f.change_pct, 3)] for f in board.shifted]}}
        self._upsert_alert(alert, fields, board.status == CLEARED, board)
        self.report.boards.append(board)

    def _rerun(self, ref: SeriesRef) -> dict[str, Any] | None:
        """Re-run a series' newest job (after a cool-down on its board); its columns and result id, or None."""
        if self.rerun_hook is None:
            return None
        if ref.device_id not in self.cooled:
            self.sleep(self.config.cooldown_s)
            self.cooled.add(ref.device_id)
        ref.spec = self._newest_spec(ref)
        result = self.rerun_hook(ref)
        if result is None:
            return None
        if "result_id" in result and "status" not in result:  # recorded by the hook itself
            with self.engine.connect() as connection:
                columns = dict(connection.execute(select(Result.__table__).where(
                    Result.id == result["result_id"])).mappings().one())
            result_id = int(result["result_id"])
        else:
            columns = mapping.result_columns(ref.spec, result)
            result_id = result.get("result_id") or self.store.record_result(
                self._rerun_sweep(ref), ref.device_id, ref.variant_sha256, ref.spec, result)
        return {**columns, "result_id": result_id} if columns.get("status") == "ok" else None

    def _apply_rerun(self, finding: Finding, flag: _Flag, rerun: dict[str, Any] | None) -> None:
        if rerun is None:
            finding.status = SUSPECT
            finding.note = "no re-run was possible" if self.rerun_hook is None else "the re-run gave no valid result"
            return
        value = rerun.get(flag.metric)
        if flag.metric in POWER_METRICS and not rerun.get("power_measured"):
            value = None
        finding.rerun_result_id, finding.rerun_value = rerun["result_id"], value
        if value is None:
            finding.status, finding.note = SUSPECT, f"the re-run did not report {flag.metric}"
        elif judge(value, flag.base, self.config.metrics[flag.metric], self.config).worse:
            finding.status = CONFIRMED
        else:
            finding.status = CLEARED

    # -- alerts --------------------------------------------------------------------------------------------
    def _record_alert(self, finding: Finding, flag: _Flag) -> None:
        alert = self.series_alerts.get((finding.series.series_id, flag.metric))
        fields = {"kind": "series", "status": finding.status, "device_id": finding.series.device_id,
                  "series_id": finding.series.series_id, "metric": flag.metric, "baseline_value": flag.base.centre,
                  "baseline_spread": flag.base.spread, "baseline_n": flag.base.n, "new_value": flag.value,
                  "rerun_value": finding.rerun_value, "z": finding.z, "change_pct": finding.change_pct,
                  "last_result_id": flag.newest_id, "last_good_result_id": flag.last_good_id,
                  "rerun_result_id": finding.rerun_result_id, "details": {"note": finding.note}}
        self._upsert_alert(alert, fields, finding.status == CLEARED, finding)

    def _upsert_alert(self, alert: Alert | None, fields: dict[str, Any], closed: bool,
                      target: Finding | BoardFinding) -> None:
        """Queue a new alert, or an update of the open one; the baseline an alert was raised on never changes."""
        now = utcnow()
        if closed:
            fields.update(closed_at=now, resolution="cleared by re-run")
        if alert is None:
            fields.update(first_result_id=fields["last_result_id"], created_at=now, updated_at=now)
            self.alert_inserts.append((fields, target))
            return
        target.alert_id = alert.id
        if isinstance(target, Finding):  # first bad and last good are the alert's, not tonight's neighbours
            target.first_bad_result_id = alert.first_result_id
            target.last_good_result_id = alert.last_good_result_id or target.last_good_result_id
            if alert.status == CONFIRMED and target.rerun_result_id is None:  # the re-run that confirmed it
                target.rerun_value, target.rerun_result_id = alert.rerun_value, alert.rerun_result_id
        keep: tuple[str, ...] = ("kind", "device_id", "series_id", "metric", "baseline_value", "baseline_spread",
                                 "baseline_n", "last_good_result_id")
        if alert.status == CONFIRMED:  # what confirmed it stays; the alert only learns that it is still there
            keep += ("status", "rerun_value", "rerun_result_id", "closed_at", "resolution")
        update = {name: value for name, value in fields.items() if name not in keep}
        self.alert_updates.setdefault(alert.id, {}).update(update, updated_at=now)

    def _write_alerts(self) -> None:
        if not self.alert_inserts and not self.alert_updates:
            return
        with Session(writer(self.engine)) as session, session.begin():
            for alert_id, fields in self.alert_updates.items():
                alert = session.get_one(Alert, alert_id)
                for name, value in fields.items():
                    setattr(alert, name, value)
            for fields, target in self.alert_inserts:
                alert = Alert(**fields)
                session.add(alert)
                session.flush()
                target.alert_id = alert.id

    def _rerun_sweep(self, ref: SeriesRef) -> int:
        if self.rerun_sweep is None:
            self.rerun_sweep = self.store.start_sweep(ref.recipe, "(orch regress re-run)", "", [], 0, kind="rerun")
        return self.rerun_sweep

    def _newest_spec(self, ref: SeriesRef) -> dict[str, Any]:
        with self.engine.connect() as connection:
            spec = connection.execute(select(Result.spec).where(Result.series_id == ref.series_id)
                                      .order_by(Result.id.desc()).limit(1)).scalar()
        return dict(spec or {})

    # -- context for people --------------------------------------------------------------------------------
    def _finding(self, ref: SeriesRef, flag: _Flag, status: str) -> Finding:
        rule = self.config.metrics[flag.metric]
        return Finding(ref, flag.metric, rule.unit, status, flag.base.centre, flag.base.spread, flag.base.n,
                       flag.value, flag.judgement.z, flag.judgement.change, flag.judgement.change_pct,
                       flag.newest_id, flag.last_good_id, first_bad_result_id=flag.newest_id)

    def _add_context(self, connection: Connection) -> None:
        """Stack differences (last good vs first bad) and the SQL that shows each finding's history."""
        findings = [*self.report.findings, *(f for board in self.report.boards for f in board.shifted)]
        ids = {i for f in findings for i in (f.last_good_result_id, f.first_bad_result_id) if i is not None}
        stacks: dict[int, dict[str, Any]] = {}
        if ids:
            query = (select(Result.id, *(getattr(SoftwareStack, c) for c in mapping.STACK_FIELDS))
                     .join(SoftwareStack, SoftwareStack.id == Result.stack_id).where(Result.id.in_(ids)))
            stacks = {row[0]: dict(zip(mapping.STACK_FIELDS, row[1:], strict=True))
                      for row in connection.execute(query)}
        for finding in findings:
            good = stacks.get(finding.last_good_result_id or -1, {})
            bad = stacks.get(finding.first_bad_result_id or -1, {})
            finding.stack_changes = {name: [good.get(name), bad.get(name)] for name in mapping.STACK_FIELDS
                                     if good and bad and good.get(name) != bad.get(name)}
            finding.sql = history_sql(finding.series.series_id, finding.metric, self.config.baseline_size + 1)


def _measured(row: Any, index: int, metric: str) -> float | None:
    """A metric's value in a result row; power figures count only when measured, not estimated."""
    if metric in POWER_METRICS and not row[1]:
        return None
    return row[index]


def history_sql(series_id: int, metric: str, limit: int) -> str:
    """SQL showing the recent valid history of one metric of a series, with its software stack."""
    return (f"SELECT r.id, r.created_at, r.{metric}, st.onnxruntime_version, st.kernel, st.os_image "
            f"FROM results r JOIN sweeps sw ON sw.id = r.sweep_id "
            f"LEFT JOIN software_stacks st ON st.id = r.stack_id "
            f"WHERE r.series_id = {series_id} AND r.status = 'ok' AND sw.kind <> 'rerun' "
            f"ORDER BY r.id DESC LIMIT {limit}")


def _open_confirmed(engine: Engine, devices: set[str]) -> list[dict[str, Any]]:
    """Open confirmed alerts (the `regressions` view) on the given devices."""
    if not devices:
        return []
    query = (text("SELECT * FROM regressions WHERE status = 'confirmed' AND device IN :devices ORDER BY alert_id")
             .bindparams(bindparam("devices", expanding=True)))
    with engine.connect() as connection:
        return [{k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
                for row in connection.execute(query, {"devices": sorted(devices)}).mappings()]


def _series(connection: Connection, devices: list[str] | None, sweep_id: int | None) -> list[SeriesRef]:
    query = (select(Series.id, Series.key, Device.name, Device.id, Variant.name, Variant.sha256,
                    Variant.recipe_name, Series.providers, Series.intra_op_threads)
             .join(Device, Device.id == Series.device_id).join(Variant, Variant.sha256 == Series.variant_sha256)
             .order_by(Device.name, Series.id))
    if devices:
        query = query.where(Device.name.in_(devices))
    if sweep_id is not None:
        query = query.where(Series.id.in_(select(Result.series_id).where(Result.sweep_id == sweep_id)))
    return [SeriesRef(*row) for row in connection.execute(query)]
