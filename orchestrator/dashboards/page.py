"""Static, self-contained HTML: a dashboard page (plotly.js inlined once, every figure as JSON data drawn by one
script, so one figure that fails to draw leaves the others standing) and the index page of a folder of them."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import plotly.io
from plotly.offline import get_plotlyjs

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1240px; padding: 1rem 1.5rem; color: #222; }
header p, .description { color: #555; }
section.panel { border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem 1rem 1rem; margin: 1rem 0; }
section.panel h2 { font-size: 1.1rem; margin: 0.5rem 0; }
.message { padding: 1.5rem; background: #f6f6f6; border-radius: 4px; color: #444; }
.message.problem { background: #fdecea; color: #8a1c13; }
.notice { padding: 0.4rem 0.8rem; background: #fff8e1; border-radius: 4px; color: #5d4400; font-size: 0.9rem; }
section.panel a.png { float: right; font-size: 0.85rem; }
div.table { overflow-x: auto; }
table.rows { border-collapse: collapse; font-size: 0.85rem; white-space: nowrap; }
table.rows th, table.rows td { border-bottom: 1px solid #e3e3e3; padding: 0.25rem 0.6rem; text-align: right; }
table.rows th { background: #f2f2f2; }
table.rows tr.best { background: #e6f4ea; font-weight: 600; }
footer { color: #777; font-size: 0.85rem; margin-top: 2rem; }
"""

# Draws every figure the page holds; one that fails becomes a message in its own panel.
DRAW = """
document.querySelectorAll('script.figure').forEach(function (data) {
  var target = document.getElementById(data.dataset.target);
  try {
    var figure = JSON.parse(data.textContent);
    Plotly.newPlot(target, figure.data, figure.layout, {responsive: true, displaylogo: false});
  } catch (error) {
    target.className = 'message problem';
    target.textContent = 'This chart could not be drawn: ' + error;
  }
});
"""


@dataclass
class PanelView:
    """A panel ready for the page: its title, description, rows (the query's, after filtering) and how many of
    them are shown (notice: why not all), and one of figure_json (a chart), table (HTML, a table panel) or message
    (why nothing is drawn; problem: an error); image: the plotly figure of its PNG, png: that file (relative)."""

    title: str
    description: str
    chart: str
    rows: int = 0
    shown: int = 0
    notice: str | None = None
    figure_json: str | None = None
    table: str | None = None
    message: str | None = None
    problem: bool = False
    image: Any = None  # a plotly Figure
    png: str | None = None


def script_json(figure: object) -> str:
    """A figure as JSON that is safe inside a <script> element (no `<`, `>` or `&` left to end it)."""
    text = plotly.io.to_json(figure, validate=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _panel_html(index: int, panel: PanelView) -> str:
    parts = [f"<a class=\"png\" href=\"{html.escape(panel.png)}\">PNG</a>"] if panel.png else []
    parts.append(f"<h2>{html.escape(panel.title)}</h2>")
    if panel.description:
        parts.append(f"<p class=\"description\">{html.escape(panel.description)}</p>")
    if panel.notice:
        parts.append(f"<p class=\"notice\">{html.escape(panel.notice)}</p>")
    if panel.message is not None:
        kind = "message problem" if panel.problem else "message"
        parts.append(f"<div class=\"{kind}\">{html.escape(panel.message)}</div>")
    elif panel.table is not None:
        parts.append(f"<div class=\"table\">{panel.table}</div>")
    elif panel.figure_json is not None:
        parts.append(f"<div id=\"panel-{index}\" class=\"chart\"></div>")
        parts.append(f"<script type=\"application/json\" class=\"figure\" data-target=\"panel-{index}\">"
                     f"{panel.figure_json}</script>")
    return (f"<section class=\"panel\" data-chart=\"{panel.chart}\" data-rows=\"{panel.rows}\" "
            f"data-shown=\"{panel.shown}\" "
            f"data-state=\"{_state(panel)}\">{''.join(parts)}</section>")


def _state(panel: PanelView) -> str:
    return "problem" if panel.problem else "empty" if panel.message is not None else "drawn"


def dashboard_page(title: str, description: str, panels: list[PanelView], footer: str) -> str:
    """A dashboard's whole page; plotly.js is inlined only when a panel draws a chart."""
    charts = any(panel.figure_json is not None for panel in panels)
    plotly_js = f"<script>{get_plotlyjs()}</script>" if charts else ""
    body = "".join(_panel_html(index, panel) for index, panel in enumerate(panels))
    draw = f"<script>{DRAW}</script>" if charts else ""
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style>{plotly_js}</head><body><header><p><a href=\"index.html\">all dashboards</a>"
            f"</p><h1>{html.escape(title)}</h1><p>{html.escape(description)}</p></header>{body}{draw}"
            f"<footer>{html.escape(footer)}</footer></body></html>\n")


def index_page(entries: list[tuple[str, str, str]], footer: str) -> str:
    """The index of a folder of dashboards: (file name, title, one line about it) each."""
    items = "".join(f"<li><a href=\"{html.escape(name)}\">{html.escape(title)}</a> {html.escape(about)}</li>"
                    for name, title, about in entries)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>orch dashboards</title>"
            f"<style>{STYLE}</style></head><body><header><h1>orch dashboards</h1></header><ul>{items}</ul>"
            f"<footer>{html.escape(footer)}</footer></body></html>\n")
