"""One panel's rows (a pandas DataFrame) drawn as a plotly figure, or laid out as an HTML table.

Every text value is HTML-escaped before plotly sees it (plotly renders labels and hover text as a subset of
HTML). Each trace carries a `meta` role: `rows` for the traces that draw the query's rows (one point per row, so
a test can count them), `front` and `band` for what is drawn on top of them.

A big panel is downsampled per series (one series: one value of its colour and facet columns), evenly spaced
points kept, a front's points always; a big table shows its first rows. More series than a legend can tell
apart are drawn in one colour per facet (one trace, a line broken between series), hover naming each: a
figure of thousands of traces takes plotly seconds to build and the browser seconds to draw. The page says so.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from orchestrator.dashboards.spec import Encoding, Panel

FACET_WRAP = 3
HEIGHT_PX = 420
FACET_ROW_PX = 320
MAX_POINTS = 20_000  # points drawn by one chart panel; more rows are thinned per series
MAX_TABLE_ROWS = 2_000  # rows of a table panel on its page
PNG_TABLE_ROWS = 30  # rows of a table panel in its PNG
MAX_COLOURS = 30  # series a legend can tell apart; more are drawn in one colour per facet


class PanelProblem(Exception):
    """A panel that cannot be drawn (a column its encodings name is missing); the page says why in its place."""


def escaped(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every text value HTML-escaped (numbers, NULLs and booleans as they are)."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(lambda value: html.escape(value) if isinstance(value, str) else value)
    frame.columns = [html.escape(str(column)) for column in frame.columns]
    return frame


def check_columns(panel: Panel, frame: pd.DataFrame) -> None:
    """Every column the encodings name is one the query returned."""
    encode = panel.encode
    named = [encode.x, encode.y, encode.colour, encode.facet, encode.front, encode.highlight,
             *encode.hover, *encode.columns, *(encode.band or ())]
    missing = [name for name in named if name is not None and name not in frame.columns]
    if missing:
        raise PanelProblem(f"the query returned no column {', '.join(map(repr, missing))} "
                           f"(it returned {', '.join(map(str, frame.columns))})")


def figure(panel: Panel, frame: pd.DataFrame) -> go.Figure:
    """The plotly figure of a scatter, line or bar panel (frame: the query's rows, not escaped yet)."""
    check_columns(panel, frame)
    merged = one_colour(panel, frame)
    encode = _escaped_names(panel)
    frame = escaped(frame)
    if encode.colour is not None:  # a numeric colour would be a colour scale; a panel's colours name its traces
        frame[encode.colour] = frame[encode.colour].astype(str)
    if merged and encode.colour is not None:
        if panel.chart == "line":
            frame = _with_gaps(frame, encode)
        encode = encode.model_copy(update={"colour": None, "hover": [encode.colour, *encode.hover]})
    common: dict[str, Any] = {"x": encode.x, "y": encode.y, "color": encode.colour, "facet_col": encode.facet,
                              "facet_col_wrap": FACET_WRAP if encode.facet else 0, "hover_data": encode.hover}
    if panel.chart == "scatter":
        fig = px.scatter(frame, **common, log_x=encode.log_x, log_y=encode.log_y,
                         custom_data=[encode.front] if encode.front else None)
    elif panel.chart == "line":
        fig = px.line(frame, **common, log_x=encode.log_x, log_y=encode.log_y, markers=True,
                      custom_data=list(encode.band) if encode.band else None)
    else:
        fig = px.bar(frame, **common, log_y=encode.log_y, barmode="stack" if encode.stack else "group")
    fig.for_each_trace(lambda trace: trace.update(meta="rows"))
    if encode.front:
        _add_fronts(fig)
    if encode.band:
        _add_bands(fig)
    facets = frame[encode.facet].nunique() if encode.facet else 1
    fig.update_layout(height=HEIGHT_PX + FACET_ROW_PX * ((facets - 1) // FACET_WRAP), margin={"t": 40, "r": 20},
                      legend={"title": {"text": encode.colour or ""}})
    return fig


def one_colour(panel: Panel, frame: pd.DataFrame) -> str | None:
    """Why a panel's series are drawn in one colour (too many for a legend; not with a front, drawn per colour),
    or None: they are not."""
    colour = panel.encode.colour
    if colour is None or panel.encode.front or colour not in frame.columns:
        return None
    count = frame[colour].nunique(dropna=False)
    if count <= MAX_COLOURS:
        return None
    return (f"Its {count:,} {colour} values are drawn in one colour (more than {MAX_COLOURS} to tell apart): "
            "hover names each.")


def _with_gaps(frame: pd.DataFrame, encode: Encoding) -> pd.DataFrame:
    """The rows with a gap (x, y and band empty) after each series, so one trace draws every series' line apart."""
    keys = [column for column in (encode.colour, encode.facet) if column is not None]
    group = frame.groupby(keys, sort=False, dropna=False).ngroup()
    gaps = frame.loc[~group.duplicated(keep="last").to_numpy()].copy()
    for column in (encode.x, encode.y, *(encode.band or ())):
        gaps[column] = np.nan
    rows = pd.concat([frame.assign(_series=group, _gap=0), gaps.assign(_series=group[gaps.index], _gap=1)])
    return rows.sort_values(["_series", "_gap"], kind="stable").drop(columns=["_series", "_gap"]).reset_index(
        drop=True)


def _escaped_names(panel: Panel) -> Encoding:
    """The panel's encodings naming the columns as escaped() names them."""
    encode = panel.encode
    def name(column: str | None) -> str | None:
        return None if column is None else html.escape(column)
    return encode.model_copy(update={
        "x": name(encode.x), "y": name(encode.y), "colour": name(encode.colour), "facet": name(encode.facet),
        "front": name(encode.front), "hover": [html.escape(column) for column in encode.hover],
        "band": tuple(html.escape(column) for column in encode.band) if encode.band else None})


def _add_fronts(fig: go.Figure) -> None:
    """A line through each trace's points that its front column marks, in x order."""
    for trace in list(fig.data):
        points = sorted((x, y) for x, y, flags in zip(trace.x, trace.y, trace.customdata, strict=True)
                        if _true(flags[0]) and x is not None and y is not None)
        if points:
            fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines",
                                     line={"color": trace.marker.color, "dash": "dot"}, meta="front",
                                     name=f"{trace.name} front", legendgroup=trace.legendgroup, showlegend=False,
                                     hoverinfo="skip", xaxis=trace.xaxis, yaxis=trace.yaxis))


def _add_bands(fig: go.Figure) -> None:
    """Behind each line, the band between its two band columns (drawn as an upper edge, then the lower filled)."""
    for trace in list(fig.data):
        low = [edges[0] for edges in trace.customdata]
        high = [edges[1] for edges in trace.customdata]
        shared = {"x": list(trace.x), "mode": "lines", "line": {"width": 0}, "meta": "band", "showlegend": False,
                  "legendgroup": trace.legendgroup, "hoverinfo": "skip", "xaxis": trace.xaxis, "yaxis": trace.yaxis}
        fig.add_trace(go.Scatter(y=high, name=f"{trace.name} band", **shared))
        fig.add_trace(go.Scatter(y=low, name=f"{trace.name} band", fill="tonexty",
                                 fillcolor=_translucent(trace.line.color), **shared))


def _true(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and pd.isna(value)) and bool(value)


def _translucent(colour: str | None) -> str:
    if colour and colour.startswith("#") and len(colour) == 7:
        red, green, blue = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
        return f"rgba({red},{green},{blue},0.15)"
    return "rgba(128,128,128,0.15)"


def table_html(panel: Panel, frame: pd.DataFrame) -> str:
    """A table panel as HTML: every value escaped, numbers rounded for reading, highlighted rows marked."""
    check_columns(panel, frame)
    encode = panel.encode
    columns = encode.columns or list(frame.columns)
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in columns)
    rows = []
    for record in frame.to_dict("records"):
        marked = encode.highlight is not None and _true(record[encode.highlight])
        cells = "".join(f"<td>{html.escape(_shown(record[column]))}</td>" for column in columns)
        rows.append(f"<tr class=\"best\">{cells}</tr>" if marked else f"<tr>{cells}</tr>")
    return f"<table class=\"rows\"><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _shown(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def downsample(panel: Panel, frame: pd.DataFrame, max_points: int = MAX_POINTS) -> tuple[pd.DataFrame, str | None]:
    """The rows a panel draws, and what the page says when that is not all of them: a chart keeps at most
    `max_points` rows, the same number of evenly spaced ones from each series (and every point of a front); a
    table its first MAX_TABLE_ROWS rows."""
    if panel.chart == "table":
        if len(frame) <= MAX_TABLE_ROWS:
            return frame, None
        return frame.head(MAX_TABLE_ROWS), (f"Showing the first {MAX_TABLE_ROWS:,} of {len(frame):,} rows: "
                                            "`orch query` or `orch report` gives them all.")
    if len(frame) <= max_points:
        return frame, None
    keys = [column for column in (panel.encode.colour, panel.encode.facet) if column in frame.columns]
    series = list(frame.groupby(keys, sort=False, dropna=False).indices.values()) if keys else [np.arange(len(frame))]
    each = max(2, max_points // len(series))
    front = frame[panel.encode.front].map(_true).to_numpy() if panel.encode.front in frame.columns else None
    kept = []
    for rows in series:
        chosen = rows[np.unique(np.linspace(0, len(rows) - 1, min(each, len(rows))).round().astype(int))]
        kept.append(np.union1d(chosen, rows[front[rows]]) if front is not None else chosen)
    shown = frame.iloc[np.sort(np.concatenate(kept))].reset_index(drop=True)
    return shown, (f"Downsampled: {len(shown):,} of {len(frame):,} rows drawn, at most {each:,} evenly spaced "
                   f"points from each of its {len(series):,} series; `orch query` gives every row.")


def table_figure(panel: Panel, frame: pd.DataFrame) -> go.Figure:
    """A table panel as a plotly table (for its PNG): its first PNG_TABLE_ROWS rows, highlighted rows shaded."""
    check_columns(panel, frame)
    columns = panel.encode.columns or list(frame.columns)
    shown = frame.head(PNG_TABLE_ROWS)
    marked = [panel.encode.highlight is not None and _true(value)
              for value in (shown[panel.encode.highlight] if panel.encode.highlight else [None] * len(shown))]
    fill = ["#e6f4ea" if best else "white" for best in marked]
    fig = go.Figure(go.Table(
        header={"values": [html.escape(str(column)) for column in columns], "fill_color": "#f2f2f2"},
        cells={"values": [[html.escape(_shown(value)) for value in shown[column]] for column in columns],
               "fill_color": [fill] * len(columns)}))
    more = f" (first {PNG_TABLE_ROWS} of {len(frame)} rows)" if len(frame) > PNG_TABLE_ROWS else ""
    fig.update_layout(title={"text": html.escape(panel.title + more)}, margin={"t": 40, "l": 10, "r": 10, "b": 10},
                      height=120 + 22 * len(shown))
    return fig
