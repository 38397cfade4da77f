"""Terminal presentation for the CLI (rich): progress bars, and a table or lines for each thing a command shows.

Every function here takes library objects and returns something to print; nothing here decides anything.
Whatever comes from data (a variant name, a SQL value, a board's answer, a file path) is shown as text, never
read as rich markup: lines are `Text` built from (text, style) parts, table cells are `Text`, and progress
notes are escaped. A value holding `[/red]` or `:x:` prints as written.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from agent.detection.metrics import Scores
from orchestrator.builder.pipeline import BuiltVariant, FailedVariant
from orchestrator.dashboards import PngOutcome, RenderedDashboard
from orchestrator.errors import UserError
from orchestrator.fleet.check import BoardCheck
from orchestrator.fleet.inventory import Inventory
from orchestrator.lab.jobs import Job
from orchestrator.lab.sweep import SweepObserver, SweepReport
from orchestrator.recipes import QuantizeSpec, VariantPlan
from orchestrator.results.findings import CLEARED, CONFIRMED, IMPROVEMENT, SUSPECT, RegressReport
from orchestrator.results.readonly import QueryResult

STATUS_STYLE = {"ok": "green", "invalid": "yellow", "error": "red"}


def line(*parts: str | tuple[str, str]) -> Text:
    """A line of text from plain parts and (text, style) parts; nothing in it is read as markup."""
    return Text.assemble(*parts)


def cell(value: Any, style: str = "") -> Text:
    """A table cell showing `value` as written."""
    return Text("" if value is None else str(value), style=style)


class SweepProgress(SweepObserver):
    """A SweepObserver drawing a bar for building, one per device, and one for all jobs; in a streaming sweep the
    build bar and the measuring bars run at the same time, the totals of the latter as far as known."""

    def __init__(self, console: Console):
        self.progress = Progress(TextColumn("[bold]{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[current]}"), console=console)
        self.build_task: Any = None
        self.bench_task: Any = None
        self.board_tasks: dict[str, Any] = {}
        self.built_fresh = 0

    def __enter__(self) -> SweepProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def build_started(self, total: int) -> None:
        self.build_task = self.progress.add_task("build", total=total, current="")

    def variant_built(self, variant: BuiltVariant) -> None:
        self.built_fresh += variant.steps_run > 0
        note = "built" if variant.steps_run else "cached"
        self.progress.update(self.build_task, advance=1, current=f"{escape(variant.name)} ({note})")

    def variant_failed(self, variant: FailedVariant) -> None:
        # Why it failed is told once, in the summary after the run (ui.build_failures).
        self.progress.update(self.build_task, advance=1, current=f"{escape(variant.name)} ([red]failed[/red])")

    def build_finished(self) -> None:
        if self.build_task is not None:
            self.progress.update(self.build_task, current="[dim]done")
            self.progress.stop_task(self.build_task)  # its clock shows how long the build took

    def bench_started(self, total: int) -> None:
        if self.bench_task is None:
            self.bench_task = self.progress.add_task("all jobs", total=total, current="")
        else:
            self.progress.update(self.bench_task, total=total)

    def board_planned(self, device: str, total: int) -> None:
        if device in self.board_tasks:
            self.progress.update(self.board_tasks[device], total=total)
        else:
            self.board_tasks[device] = self.progress.add_task(device, total=total, current="[dim]waiting")

    def board_changed(self, device: str, state: str, note: str) -> None:
        if device not in self.board_tasks or state == "busy":
            return  # a running job shows its variant instead
        style = {"failed": "yellow", "down": "red", "released": "dim"}.get(state, "dim")
        self.progress.update(self.board_tasks[device],
                             current=f"[{style}]{state}" + (f": {escape(note)}" if note else ""))
        if state in ("released", "down"):
            self.progress.stop_task(self.board_tasks[device])
        if state in ("failed", "down"):
            self.progress.console.print(line((f"{device}: {state}: {note}", style)), highlight=False)

    def job_started(self, job: Job) -> None:
        label = job.label.removeprefix(f"{job.device.name}: ")
        self.progress.update(self.board_tasks.get(job.device.name, self.bench_task), current=escape(label))
        self.progress.update(self.bench_task, current=escape(job.label))

    def job_finished(self, job: Job, result: dict[str, Any]) -> None:
        status = result["status"]
        if status != "ok":
            why = result.get("error") or "; ".join(result.get("reasons") or [])
            self.progress.console.print(line((f"{job.label}: {status}: {why}", STATUS_STYLE.get(status, "red"))),
                                        highlight=False)
        if job.device.name in self.board_tasks:
            self.progress.update(self.board_tasks[job.device.name], advance=1)
        self.progress.update(self.bench_task, advance=1)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


@dataclass(frozen=True)
class ResultColumn:
    """A column `orch results` can show: `key` names it in the rows and in CSV, JSON and Markdown, `header` in the
    table (with its unit); `groups` are the --columns groups that include it; `view` is where it exists: `series`
    (repeats aggregated), `job` (one row per repeat) or both."""

    key: str
    header: str
    groups: tuple[str, ...]
    digits: int = 3
    scale: float = 1.0
    view: str = "both"


# Columns naming the row, always shown (the table leaves out those with the same value on every row).
RESULT_IDENTITY = (
    ResultColumn("sweep", "sweep", ()), ResultColumn("device", "device", ()), ResultColumn("variant", "variant", ()),
    ResultColumn("threads", "thr", ()), ResultColumn("pipeline", "pipeline", ()), ResultColumn("status", "status", ()),
    ResultColumn("repeats", "n", (), view="series"), ResultColumn("jobs", "jobs", (), view="series"),
    ResultColumn("repeat", "repeat", (), view="job"),
)
# The figures, by group. In the series view a figure is the mean over the valid repeats, except max W, peak MB and
# model MB (maxima); sd is the sample standard deviation over the repeats.
RESULT_FIGURES = (
    ResultColumn("mean_ms", "mean ms", ("default", "latency")),
    ResultColumn("mean_ms_sd", "sd ms", ("latency",), view="series"),
    ResultColumn("p50_ms", "p50 ms", ("default", "latency")),
    ResultColumn("p50_ms_sd", "p50 sd", ("latency",), view="series"),
    ResultColumn("p90_ms", "p90 ms", ("default", "latency")),
    ResultColumn("p90_ms_sd", "p90 sd", ("latency",), view="series"),
    ResultColumn("p99_ms", "p99 ms", ("latency",), view="job"),
    ResultColumn("throughput_ips", "inf/s", ("latency",), digits=0),
    ResultColumn("energy_per_inference_mj", "mJ/inf", ("default", "energy")),
    ResultColumn("energy_per_inference_net_mj", "net mJ/inf", ("energy",)),
    ResultColumn("mean_w", "mean W", ("power",), digits=2),
    ResultColumn("max_w", "max W", ("default", "power"), digits=2),
    ResultColumn("peak_rss_mb", "peak MB", ("default", "memory"), digits=1),
    ResultColumn("model_rss_mb", "model MB", ("memory",), digits=1),
    ResultColumn("accuracy", "acc %", ("default", "accuracy"), digits=2, scale=100.0),
    ResultColumn("size_kb", "KB", ("default",), digits=0),
    ResultColumn("macs_m", "MMAC", ("default",), digits=1),
)
COLUMN_GROUPS = ("default", "latency", "energy", "power", "memory", "accuracy")


def result_columns(groups: str, rows: list[dict[str, Any]], grouped: bool) -> list[ResultColumn]:
    """The columns `--columns GROUP,...` asks for in the series (grouped) or job view, identity first; a figure
    no row has a value of is left out (a database without power meters shows no power columns)."""
    asked = [group.strip() for group in groups.split(",")]
    unknown = [group for group in asked if group not in COLUMN_GROUPS]
    if unknown or not asked:
        raise UserError(f"--columns {groups}: unknown column group {', '.join(unknown)} "
                        f"(a comma-separated list of {', '.join(COLUMN_GROUPS)})")
    view = "series" if grouped else "job"
    figures = [c for c in RESULT_FIGURES if set(c.groups) & set(asked)
               and any(row.get(c.key) is not None for row in rows)]
    return [c for c in (*RESULT_IDENTITY, *figures) if c.view in ("both", view)]


def result_values(rows: list[dict[str, Any]], columns: list[ResultColumn]) -> QueryResult:
    """The rows as CSV, JSON and Markdown carry them: one value per column key, figures unrounded (accuracy as
    a fraction, as stored)."""
    return QueryResult([c.key for c in columns], [tuple(_value(row, c.key) for c in columns) for row in rows])


def _value(row: dict[str, Any], key: str) -> Any:
    if key == "repeat":
        return f"{row['repeat_index']}/{row['repeat_count']}" if row.get("repeat_index") else None
    if key == "status" and "jobs" in row:  # a series row: ok when every repeat was
        return "ok" if row["repeats"] == row["jobs"] else f"{row['repeats']}/{row['jobs']} ok"
    return row.get(key)


def _cell(row: dict[str, Any], column: ResultColumn) -> Text:
    value = _value(row, column.key)
    if column.key == "status":
        return cell(value, STATUS_STYLE.get(value, "yellow" if row.get("repeats") else "red"))
    if column.key == "repeat":
        return cell(f"#{value}" if value else "-")
    if column.groups and isinstance(value, int | float):
        return cell(f"{value * column.scale:.{column.digits}f}")
    return cell("-" if value is None else value)


def results_table(rows: list[dict[str, Any]], columns: list[ResultColumn], title: str) -> Table:
    """Results as a rich table: one row per series and sweep (its repeats aggregated) or one per job.

    Identity columns that are the same on every row (sweep, device, threads, the job count when every repeat
    was valid) are left out. A pipeline job's row (benchmark.pipeline) names its mode; its latency is per frame,
    source to encoded, and inf/s its FPS.
    """
    grouped = any(c.key == "repeats" for c in columns)
    caption = ("latency in ms: nearest-rank percentiles of the timed sess.run calls; memory in MB (10^6 bytes)"
               + ("; n: valid repeats, each figure their mean (max W, peak MB, model MB: their maximum), "
                  "sd: sample standard deviation; --repeats shows each" if grouped else ""))
    table = Table(title=cell(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  caption=caption, caption_justify="left")
    varying = {"sweep": len({row["sweep"] for row in rows}) > 1, "device": len({row["device"] for row in rows}) > 1,
               "threads": len({row["threads"] for row in rows}) > 1,
               "pipeline": any(row.get("pipeline") for row in rows),
               "jobs": any(row["jobs"] != row["repeats"] for row in rows) if grouped else False}
    shown = [c for c in columns if varying.get(c.key, True)]
    longest_variant = max((len(row["variant"]) for row in rows), default=7)
    for column in shown:
        table.add_column(column.header, justify="left" if not column.groups else "right", no_wrap=True,
                         min_width=longest_variant if column.key == "variant" else None)
    for row in rows:
        table.add_row(*(_cell(row, column) for column in shown))
    return table


def table_width(console: Console, table: Table) -> int:
    """The width to print a table at: the terminal's, or COLUMNS' when set; printed to a pipe or a file without
    COLUMNS, the table's own width, so no column is cut at rich's default of 80."""
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console.width
    unbounded = console.options.update(max_width=sys.maxsize)
    return max(console.width, Measurement.get(console, unbounded, table).maximum)


def _step_text(name: str, params: dict[str, Any]) -> str:
    """A short human form of one build step, e.g. prune(l1 0.5) or quantize(int8_static)."""
    if name == "train":
        source = params["model"].get("weights")
        epochs = params["train"]["epochs"]
        return f"train({epochs} ep" + (", from weights)" if source else ")")
    if name == "prune":
        return f"prune({params['method']} {params['ratio']:g}" + (" global)" if params["scope"] == "global" else ")")
    if name == "iterative_prune":
        return f"prune({params['method']} {params['ratio']:g} in {params['steps']} steps)"
    if name == "finetune":
        return f"finetune({params['epochs']} ep" + (", kd)" if params.get("distill") else ")")
    if name == "export":
        return f"export({params['image_size']}px)"
    if name == "quantize":
        return f"quantize({QuantizeSpec(**{**params, 'samples': None}).label})"
    if name == "sparsify":
        return f"sparsify({params['ratio']:g})"
    if name == "resize_input":
        return f"resize({params['image_size']}px)"
    if name == "limit_opset":
        return f"opset(<={params['max_opset']})"
    return name


def plans_table(plans: list[VariantPlan], title: str) -> Table:
    """The expanded grid: one row per variant with the steps that build it."""
    table = Table(title=cell(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("variant", no_wrap=True)
    table.add_column("steps")
    for plan in plans:
        table.add_row(cell(plan.name), cell(" > ".join(_step_text(step.name, step.params) for step in plan.steps)))
    return table


def _count(value: float | None) -> str:
    """3_210_000 -> 3.2M, 15_554 -> 15.6k."""
    if value is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{suffix}"
    return f"{value:.0f}"


def variants_table(variants: list[BuiltVariant], title: str) -> Table:
    """Built variants: id, name, size figures, host-side accuracy; sparsity only when some variant has any."""
    table = Table(title=cell(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    show_sparsity = any((v.meta.get("sparsity") or 0) > 0 for v in variants)
    longest = max((len(v.name) for v in variants), default=7)
    columns: list[tuple[str, str, Any]] = [
        ("id", "left", lambda v: v.sha256[:10]),
        ("variant", "left", lambda v: cell(v.name)),
        ("params", "right", lambda v: _count(v.meta.get("params"))),
        ("MACs", "right", lambda v: _count(v.meta.get("macs"))),
        ("KB", "right", lambda v: f"{v.file_size_bytes / 1024:.0f}"),
        ("sparsity", "right", lambda v: _fmt(v.meta.get("sparsity"), 2)),
        ("acc %", "right", lambda v: "-" if v.meta.get("host_accuracy") is None
         else f"{100 * v.meta['host_accuracy']:.2f}"),
        ("build s", "right", lambda v: f"{v.build_s:.1f}"),
        ("", "left", lambda v: "[dim]cached" if v.steps_run == 0 else "[green]built"),
    ]
    columns = [c for c in columns if c[0] != "sparsity" or show_sparsity]
    for name, justify, _ in columns:
        table.add_column(name, justify=justify, no_wrap=True,  # type: ignore[arg-type]
                         min_width=longest if name == "variant" else None)
    for variant in variants:
        table.add_row(*(cell(variant) for _, _, cell in columns))
    table.caption = "acc %: top-1 on the test split, on this host (onnxruntime CPU); build s: every step of the lineage"
    table.caption_justify = "left"
    return table


def sweep_summary(report: SweepReport, built_fresh: int, where: str) -> str:
    """What a sweep did, in one line."""
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.statuses.items()))
    skipped = f"; {report.jobs_skipped} already measured (--force runs them again)" if report.jobs_skipped else ""
    target = f" for onnxruntime {report.target.version}" if report.target else ""
    return (f"sweep {report.sweep_id}: {report.jobs_done} jobs ({counts or 'none run'}){skipped}; "
            f"{built_fresh} variants built{target}; results in {where}")


def build_failures(failures: list[FailedVariant]) -> list[Text]:
    """One line per variant that did not build: which step failed and why."""
    return [line((f"{failure.name}: build failed at {failure.step}:", "red"), f" {failure.reason}")
            for failure in failures]


def job_reasons(report: SweepReport, shown: int = 8) -> list[Text]:
    """Why jobs were not ok, most frequent first: one line per reason (jobs whose reasons differ only in their
    numbers counted together, the first one quoted as written)."""
    ranked = sorted(report.reasons.items(), key=lambda item: (-item[1][0], item[0]))
    lines = [line((f"{count} {status}:", "red" if status == "error" else "yellow"), f" {first}")
             for (status, _), (count, first) in ranked[:shown]]
    if len(ranked) > shown:
        lines.append(Text(f"... and {len(ranked) - shown} other reasons: orch query \"SELECT status, reasons, error "
                          f"FROM results WHERE sweep_id = {report.sweep_id} AND status <> 'ok'\""))
    return lines


def query_table(result: QueryResult, max_rows: int) -> Table:
    """A query's rows as a table, at most `max_rows` of them (the caption says when there are more)."""
    from orchestrator.results.export import cell_text

    shown = result.rows[:max_rows]
    more = len(result.rows) > max_rows
    caption = f"first {max_rows} rows; use --format csv for all" if more else f"{len(shown)} rows"
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, caption=caption, caption_justify="left")
    for column in result.columns:
        table.add_column(cell(column), overflow="fold")
    for row in shown:
        table.add_row(*(cell(cell_text(value)) for value in row))
    return table


def regress_findings(report: RegressReport) -> list[Any]:
    """What regress found: a table of findings (if any), each board's verdict, each open confirmed alert, and a
    one-line count."""
    shown: list[Any] = []
    findings = [*report.confirmed, *report.with_status(SUSPECT), *report.with_status(CLEARED)]
    findings += [f for board in report.boards for f in board.shifted]
    if findings:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="regressions", title_justify="left")
        for name in ("status", "series", "device", "variant", "metric", "baseline", "new", "re-run", "change", "z"):
            table.add_column(name, no_wrap=name in ("series", "status"))
        style = {CONFIRMED: "red", SUSPECT: "yellow", CLEARED: "green"}
        for f in findings:
            unit = "pts" if f.unit == "points" else "%"
            table.add_row(cell(f.status, style.get(f.status, "red")), cell(f.series.key), cell(f.series.device),
                          cell(f.series.variant), f.metric, f"{f.baseline_value:.4g}", f"{f.new_value:.4g}",
                          "-" if f.rerun_value is None else f"{f.rerun_value:.4g}", f"{f.change_pct:+.1f}{unit}",
                          f"{f.z:.1f}")
        shown.append(table)
    shown += [line(f"board {board.device}: {board.status}: {board.note}") for board in report.boards]
    shown += [line((f"open confirmed alert {alert['alert_id']}", "red"),
                   f": {alert['series_key'] or alert['device']} {alert['metric']} (accept with `orch mark`)")
              for alert in report.open_confirmed]
    shown.append(f"{report.series_checked} series checked: {len(report.confirmed)} confirmed, "
                 f"{len(report.with_status(SUSPECT))} suspect, {len(report.with_status(CLEARED))} cleared by re-run, "
                 f"{len(report.with_status(IMPROVEMENT))} improvements, {len(report.insufficient)} insufficient data")
    return shown


def devices_table(inventory: Inventory) -> Table:
    """Every device --devices can name: `local` and the inventory's boards."""
    table = Table(title=cell(f"devices ({inventory.path})"), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("name", "target", "tags", "python", "providers", "power"):
        table.add_column(column, no_wrap=column in ("name", "target"))
    table.add_row("local", "this machine", "", "", "", "")
    for board in inventory.boards.values():
        table.add_row(*map(cell, (board.name, board.target, ",".join(board.tags), board.python,
                                  ",".join(board.providers or []), (board.power or {}).get("type", ""))))
    return table


def checks_table(checks: list[BoardCheck]) -> list[Any]:
    """One row per checked board with its software, then each problem and the command that fixes it."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("device", "", "python", "numpy", "onnxruntime", "loads", "providers", "board", "free MB", "meter"):
        table.add_column(column)
    for result in checks:
        info = result.info
        loads = f"IR {info['max_ir_version']}, opset {info['max_opsets'].get('', '?')}" if "max_opsets" in info else "-"
        table.add_row(cell(result.device), cell("ok", "green") if result.ok else cell("fix", "red"),
                      *map(cell, (info.get("python", "-"), info.get("numpy", "-"), info.get("onnxruntime", "-"), loads,
                                  ",".join(info.get("providers_available") or []) or "-", info.get("board") or "-",
                                  f"{info['disk_free_mb']:.0f}" if "disk_free_mb" in info else "-",
                                  (info.get("power_meter_detected") or {}).get("type", "-"))))
    return [table] + [line((f"{result.device}:", "red"), f" {problem.what}\n  fix: {problem.fix}")
                      for result in checks for problem in result.problems]


# The twelve COCO numbers as pycocotools prints them (COCOeval.summarize), in its order.
COCO_LINES = (
    ("coco_ap", "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"),
    ("coco_ap50", "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]"),
    ("coco_ap75", "Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]"),
    ("coco_ap_small", "Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]"),
    ("coco_ap_medium", "Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]"),
    ("coco_ap_large", "Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]"),
    ("coco_ar1", "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]"),
    ("coco_ar10", "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]"),
    ("coco_ar100", "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"),
    ("coco_ar_small", "Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]"),
    ("coco_ar_medium", "Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]"),
    ("coco_ar_large", "Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]"),
    ("voc_ap50", "Pascal VOC AP      (all-point, VOC2010+ devkit) @[ IoU=0.50 ]"),
    ("voc07_ap50", "Pascal VOC AP      (11-point, VOC2007 devkit)    @[ IoU=0.50 ]"),
)


def score_tables(scores: Scores, headline: str) -> list[Any]:
    """`orch score`'s output: COCO's summary lines and VOC AP (-1.000 where undefined, as pycocotools prints),
    then AP per class."""
    lines = [line(f" {label} = {-1 if scores.metrics.get(name) is None else scores.metrics[name]:0.3f}"
                  + ("   <- headline" if name == headline else "")) for name, label in COCO_LINES]
    table = Table(title="AP per class", title_justify="left")
    for heading in ("class", "objects", "COCO AP", "AP50", "VOC AP", "VOC07 AP"):
        table.add_column(heading, justify="left" if heading == "class" else "right")
    for entry in scores.per_class:
        table.add_row(cell(entry["class"]), cell(entry["n_truth"]),
                      *(cell(_fmt(entry.get(name))) for name in ("coco_ap", "coco_ap50", "voc_ap50", "voc07_ap50")))
    return [*lines, table]


def dashboard_lines(written: list[RenderedDashboard], pngs: PngOutcome, index: Path) -> list[Text]:
    """One line per dashboard page written (panels drawn, empty, failed, downsampled), the PNGs written or why
    not, then the index page's path."""
    lines = []
    for done in written:
        failed = (f", {done.failed} failed", "red") if done.failed else ""
        thinned = (f", {done.downsampled} downsampled", "yellow") if done.downsampled else ""
        lines.append(line(f"{done.name}: {done.path} ({done.drawn} drawn, {done.empty} empty", failed,
                          thinned, ")"))
    if pngs.skipped:
        lines.append(line(("PNGs not written: ", "yellow"), pngs.skipped))
    elif pngs.written:
        lines.append(line(f"{pngs.written} PNGs in {index.parent / 'png'}"))
    lines.append(line(("index: ", "bold"), str(index)))
    return lines


def served_line(url: str) -> Text:
    """Where `orch dashboard --serve` serves the pages."""
    return line(("serving ", "bold"), url, " on this machine only (Ctrl-C stops)")
