"""Dashboards: pages of charts and tables drawn from SQL over the results views (`orch dashboard`).

A dashboard is a YAML file (spec.py); each panel's query runs through the same read-only, time-limited path as
`orch query` (results/readonly.py), pandas holds its rows, plotly draws them (charts.py), and page.py writes a
static, self-contained HTML page per dashboard plus an index, and png.py one PNG per panel. A panel whose query
fails, returns no rows or names a column the query does not return shows why in its place; the rest of the page
is drawn. A big panel is downsampled per series, and says so (charts.downsample). Table panels that name a
`report:` are also `orch report`'s tables (report_table).

    written = render_dashboards(open_readonly("results.db"), [SHIPPED / "study.yaml"], Path("dashboards/out"))
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from orchestrator.dashboards.charts import PanelProblem, downsample, figure, one_colour, table_figure, table_html
from orchestrator.dashboards.page import PanelView, dashboard_page, index_page, script_json
from orchestrator.dashboards.png import PngOutcome, PngWriter
from orchestrator.dashboards.spec import Dashboard, Panel, load_dashboard
from orchestrator.errors import DatabaseError, UserError
from orchestrator.results.readonly import QueryResult, ReadOnly, run_query

__all__ = ["SHIPPED", "Dashboard", "Panel", "PngOutcome", "RenderedDashboard", "dashboard_paths", "load_dashboard",
           "render_dashboards", "report_names", "report_table"]

SHIPPED = Path(__file__).resolve().parents[2] / "dashboards"  # the top-level dashboards/ folder
RECIPE_COLUMN = "recipe"
NO_ROWS = "No rows: this panel's query returned nothing{scope} (nothing measured yet for it)."


@dataclass
class RenderedDashboard:
    """One page written: its dashboard's name, the file, and how many panels were drawn, empty or failed."""

    name: str
    path: Path
    drawn: int
    empty: int
    failed: int
    downsampled: int = 0


def dashboard_paths(names: list[str], folder: Path = SHIPPED) -> list[Path]:
    """The dashboard files for the names given (a name in `folder`, or a .yaml file); none given: all of them."""
    known = sorted(folder.glob("*.yaml"))
    if not names:
        return known
    paths = []
    for name in names:
        path = Path(name) if name.endswith((".yaml", ".yml")) else folder / f"{name}.yaml"
        if not path.is_file():
            raise UserError(f"unknown dashboard {name!r}; known: {', '.join(p.stem for p in known) or 'none'}")
        paths.append(path)
    return paths


def panel_rows(readonly: ReadOnly, panel: Panel, recipe: str | None = None) -> pd.DataFrame:
    """A panel's query run read-only, its rows in a DataFrame (only the recipe's, when the query returns a
    `recipe` column and one is given); bad SQL is a DatabaseError."""
    result = run_query(readonly, panel.sql)
    frame = pd.DataFrame(result.rows, columns=result.columns)
    if recipe is not None and RECIPE_COLUMN in frame.columns:
        frame = frame[frame[RECIPE_COLUMN] == recipe].reset_index(drop=True)
    return frame


def panel_view(readonly: ReadOnly, panel: Panel, recipe: str | None = None) -> PanelView:
    """A panel's query run and drawn (with the figure its PNG is drawn from), or the reason it is not (a SQL error,
    no rows, a missing column)."""
    view = PanelView(panel.title, panel.description, panel.chart)
    try:
        frame = panel_rows(readonly, panel, recipe)
    except DatabaseError as exc:
        view.message, view.problem = f"This panel's query failed: {exc}", True
        return view
    view.rows = len(frame)
    if frame.empty:
        view.message = NO_ROWS.format(scope=f" for recipe {recipe}" if recipe else "")
        return view
    shown, view.notice = downsample(panel, frame)
    view.shown = len(shown)
    try:
        if panel.chart == "table":
            view.table, view.image = table_html(panel, shown), table_figure(panel, frame)
        else:
            view.image = figure(panel, shown)
            view.figure_json = script_json(view.image)
            merged = one_colour(panel, shown)
            view.notice = " ".join(filter(None, (view.notice, merged))) or None
    except PanelProblem as exc:
        view.message, view.problem = f"This panel cannot be drawn: {exc}", True
    return view


def render_dashboards(readonly: ReadOnly, paths: list[Path], out: Path, recipe: str | None = None,
                      png: bool = True) -> tuple[list[RenderedDashboard], PngOutcome]:
    """Every dashboard file validated first (a bad one stops before anything is written), then each written to
    out/<name>.html with, when `png`, one PNG per drawn panel in out/png/<name>/, and out/index.html listing them."""
    dashboards = [(path.stem, load_dashboard(path)) for path in paths]
    out.mkdir(parents=True, exist_ok=True)
    stamp = f"written by orch dashboard at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC" + \
        (f" for recipe {recipe}" if recipe else "")
    pngs = PngWriter() if png else None  # drawing while the later panels' queries run
    try:
        pages = [(name, dashboard, _views(readonly, name, dashboard, recipe, out, pngs))
                 for name, dashboard in dashboards]
    finally:
        outcome = pngs.close() if pngs is not None else PngOutcome(0)
    for view in (view for _, _, views in pages for view in views):
        view.png = view.png if view.png and (out / view.png).is_file() else None
    written = []
    for name, dashboard, views in pages:
        path = out / f"{name}.html"
        path.write_text(dashboard_page(dashboard.title, dashboard.description, views, stamp), encoding="utf-8")
        written.append(RenderedDashboard(
            name, path, drawn=sum(v.message is None for v in views), failed=sum(v.problem for v in views),
            empty=sum(v.message is not None and not v.problem for v in views),
            downsampled=sum(v.notice is not None for v in views)))
    entries = [(f"{done.name}.html", dashboard.title, _about(done))
               for done, (_, dashboard, _) in zip(written, pages, strict=True)]
    (out / "index.html").write_text(index_page(entries, stamp), encoding="utf-8")
    return written, outcome


def _views(readonly: ReadOnly, name: str, dashboard: Dashboard, recipe: str | None, out: Path,
           pngs: PngWriter | None) -> list[PanelView]:
    """A dashboard's panels, each drawn chart or table handed to `pngs` (when given) for out/png/<name>/."""
    views = []
    for number, panel in enumerate(dashboard.panels, 1):
        views.append(view := panel_view(readonly, panel, recipe))
        if pngs is not None and view.image is not None:
            view.png = f"png/{name}/{number:02d}-{slug(view.title)}.png"
            pngs.add(view.image, out / view.png)
    return views


def _about(done: RenderedDashboard) -> str:
    about = f"{done.drawn} drawn, {done.empty} empty, {done.failed} failed"
    return about + (f", {done.downsampled} downsampled" if done.downsampled else "")


def slug(title: str) -> str:
    """A panel title as a file name: lower case, words joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "panel"


def report_names(folder: Path = SHIPPED) -> dict[str, Panel]:
    """The tables `orch report --table NAME` knows: every table panel of the folder's dashboards with a `report:`."""
    return {panel.report: panel for path in sorted(folder.glob("*.yaml"))
            for panel in load_dashboard(path).panels if panel.report is not None}


def report_table(readonly: ReadOnly, name: str, recipe: str, folder: Path = SHIPPED) -> QueryResult:
    """One report table's rows for one recipe: the columns its panel shows, every row (nothing downsampled)."""
    known = report_names(folder)
    if name not in known:
        raise UserError(f"--table {name}: unknown table (one of {', '.join(sorted(known))})")
    panel = known[name]
    frame = panel_rows(readonly, panel, recipe)
    if panel.encode.columns:
        frame = frame[panel.encode.columns]
    rows = [tuple(None if pd.isna(value) else value for value in row) for row in frame.itertuples(index=False)]
    return QueryResult([str(column) for column in frame.columns], rows)
