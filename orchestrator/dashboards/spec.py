"""A dashboard file (`dashboards/<name>.yaml`): its panels, each a SQL query over the results views, a chart kind
and the encodings that map the query's columns onto the chart. Every problem is a DashboardError that reads
`file:line:col key: message` (orchestrator/yamlfile.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.errors import DashboardError
from orchestrator.yamlfile import read_yaml

ChartKind = Literal["scatter", "line", "bar", "table"]
NEEDS_X_AND_Y = ("scatter", "line", "bar")


class Encoding(BaseModel):
    """Which column of the query goes where; every name is a column the query returns.

    x, y: the axes (scatter, line, bar); colour: one trace per value; facet: one small chart per value;
    log_x, log_y: logarithmic axes; hover: more columns shown on hover; front (scatter): a column that is true
    for the points of a front (a line is drawn through them, e.g. `pareto.on_latency_front`); band (line):
    two columns, the low and high edges of a band drawn behind each line; stack (bar): stack the colours rather
    than group them; columns (table): the columns shown, in order (default: all); highlight (table): a column
    whose non-empty, non-zero value highlights its row (and is shown as its reason).
    """

    model_config = ConfigDict(extra="forbid")

    x: str | None = None
    y: str | None = None
    colour: str | None = None
    facet: str | None = None
    log_x: bool = False
    log_y: bool = False
    hover: list[str] = Field(default_factory=list)
    front: str | None = None
    band: tuple[str, str] | None = None
    stack: bool = False
    columns: list[str] = Field(default_factory=list)
    highlight: str | None = None


class Panel(BaseModel):
    """One chart or table: title, description (optional, shown under the title), sql (one read-only statement
    over orch's tables and views, docs/results.md), chart (scatter, line, bar or table), encode (Encoding), and
    report (a table panel's name for `orch report --table NAME`)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    description: str = ""
    sql: str = Field(min_length=1)
    chart: ChartKind
    encode: Encoding = Field(default_factory=Encoding)
    report: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]*$")

    @model_validator(mode="after")
    def _encodings_fit_the_chart(self) -> Panel:
        encode = self.encode
        if self.chart in NEEDS_X_AND_Y and (encode.x is None or encode.y is None):
            missing = "x" if encode.x is None else "y"
            raise ValueError(f"[encode] a {self.chart} chart needs `{missing}:` (a column of the query)")
        misplaced = {"front": "scatter", "band": "line", "stack": "bar", "highlight": "table", "columns": "table"}
        for field, kind in misplaced.items():
            if getattr(encode, field) and self.chart != kind:
                raise ValueError(f"[encode] `{field}:` belongs to a {kind} chart, not a {self.chart} chart")
        if self.report is not None and self.chart != "table":
            raise ValueError("`report:` names a table for `orch report`: it belongs to a table panel")
        return self


class Dashboard(BaseModel):
    """A page of panels: title, description (optional), panels (at least one)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    description: str = ""
    panels: list[Panel] = Field(min_length=1)


def load_dashboard(path: str | Path) -> Dashboard:
    """Read and validate a dashboard file; every problem is a DashboardError naming file, line and key."""
    document = read_yaml(path, DashboardError, "dashboard")
    if not isinstance(document.data, dict):
        raise DashboardError(document.path, "a dashboard must be a YAML mapping (title:, panels:)", line=1, column=1)
    try:
        return Dashboard.model_validate(document.data)
    except ValidationError as exc:
        raise document.validation_error(exc) from None
