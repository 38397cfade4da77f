"""`orch dashboard`: the shipped dashboards drawn from a real sweep plus synthetic nightly history, opened in
headless Chromium; every panel draws as many points as its query returned rows, and a panel that fails or has
nothing to show says so while the rest of the page works."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from orchestrator.dashboards import SHIPPED, dashboard_paths, load_dashboard, render_dashboards, report_names
from orchestrator.dashboards.charts import MAX_POINTS, MAX_TABLE_ROWS
from orchestrator.results.db import open_database
from orchestrator.results.judge import RegressConfig
from orchestrator.results.readonly import open_readonly, run_query
from orchestrator.results.regress import regress
from orchestrator.results.store import ResultsStore
from orchestrator.results.synthetic import Step, SyntheticLab
from tests.support import ORCH, TINY_RECIPE, one_line_error, orch, run_env
from tests.support.browser import browser, save_screenshot  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

# Per panel: its chart kind, state, the rows its query returned, and the points each trace drew by its role.
PANELS_JS = """
return Array.from(document.querySelectorAll('section.panel')).map(function (section) {
  var plot = section.querySelector('.js-plotly-plot');
  return {chart: section.dataset.chart, state: section.dataset.state, rows: Number(section.dataset.rows),
          shown: Number(section.dataset.shown), title: section.querySelector('h2').textContent,
          notice: (section.querySelector('.notice') || {}).textContent || null,
          png: section.querySelector('a.png') ? section.querySelector('a.png').getAttribute('href') : null,
          message: (section.querySelector('.message') || {}).textContent || null,
          table_rows: section.querySelectorAll('table.rows tbody tr').length,
          best_rows: section.querySelectorAll('table.rows tbody tr.best').length,
          traces: plot ? plot.data.map(function (t, i) {
            // typed arrays travel as base64 (bdata); plotly.js decodes them into _fullData
            var y = plot._fullData[i].y;  // a line broken between series has gaps (null or NaN): not points
            return {meta: t.meta, points: Array.from(y).filter(function (v) {
              return v !== null && v !== undefined && !(typeof v === 'number' && isNaN(v)); }).length}; }) : null};
});
"""


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory, built_tiny) -> Path:
    """A quickstart-like sweep of the tiny recipe on `local`, synthetic nightly history (a latency step regress
    raised an alert for, a change marker), pruning steps and one pipeline job's stages."""
    root = tmp_path_factory.mktemp("dashboards")
    recipe = root / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    env = dict(run_env(root), ORCH_ARTIFACTS=str(built_tiny[2].root))
    done = orch("sweep", str(recipe), "--devices", "local", env=env)
    assert done.returncode == 0, done.stderr
    engine = open_database(str(root / "results.db"))
    synthetic = SyntheticLab(boards=2, variants_per_board=3, samples_per_result=20,
                             steps=(Step(1, 8, latency_factor=1.5),))
    for _ in range(10):
        synthetic.record_night(ResultsStore(engine))
    assert regress(engine, RegressConfig(cooldown_s=0)).findings
    engine.dispose()
    with sqlite3.connect(root / "results.db") as db:
        variant, result = db.execute("SELECT variant_sha256, id FROM results ORDER BY id LIMIT 1").fetchone()
        db.executemany("INSERT INTO pruning_steps (variant_sha256, step, ratio, macs, params, accuracy_metric, "
                       "accuracy) VALUES (?, ?, ?, ?, ?, 'top1', ?)",
                       [(variant, step, step * 0.2, 1000 - step * 100, 500, 0.9 - step * 0.02) for step in range(4)])
        db.execute("UPDATE results SET pipeline_mode = 'sequential' WHERE id = ?", (result,))
        db.execute("INSERT INTO change_markers (series_id, first_result_id, reason, created_at) SELECT series_id, "
                   "MAX(id), 'new image', CURRENT_TIMESTAMP FROM results WHERE series_id = (SELECT MIN(series_id) "
                   "FROM results WHERE sweep_id > 1)")
        db.executemany("INSERT INTO pipeline_stages (result_id, stage, position, p50_ms, p90_ms, mean_ms, share) "
                       "VALUES (?, ?, ?, 1, 2, 1.5, 0.25)",
                       [(result, stage, position) for position, stage in enumerate(("read", "infer", "encode"))])
    return root / "results.db"


def panels_in(driver, page: Path) -> list[dict]:  # noqa: ANN001 (a selenium WebDriver)
    """Open a page and read every panel's state and drawn traces once its charts are drawn."""
    driver.get(page.as_uri())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if driver.execute_script("return document.querySelectorAll('.chart:not(.js-plotly-plot)').length") == 0:
            break
        time.sleep(0.1)
    return driver.execute_script(PANELS_JS)


def errors_logged(driver) -> list[str]:  # noqa: ANN001
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_shipped_dashboards_draw_every_row_of_every_panel(study_db: Path, tmp_path: Path, browser):  # noqa: F811
    out = tmp_path / "out"
    done = orch("dashboard", "--out", str(out), "--db", str(study_db), env=run_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert str(out / "index.html") in done.stdout.replace("\n", "")
    readonly = open_readonly(str(study_db))
    pngs = 0
    for path in dashboard_paths([]):
        page = out / f"{path.stem}.html"
        html = page.read_text()
        assert html.count("* plotly.js v") == 1 and "<script src" not in html  # inlined once, no network
        panels = panels_in(browser, page)
        save_screenshot(browser, tmp_path / "screenshots" / f"{path.stem}.png")
        assert errors_logged(browser) == []
        for spec, panel in zip(load_dashboard(path).panels, panels, strict=True):
            expected = len(run_query(readonly, spec.sql).rows)
            assert panel["rows"] == expected == panel["shown"] and panel["notice"] is None, panel["title"]
            if expected == 0:
                assert panel["state"] == "empty" and "No rows" in panel["message"] and panel["png"] is None, panel
                continue
            png = out / panel["png"]  # one PNG per drawn panel, linked from it, for slides
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, panel
            pngs += 1
            if panel["chart"] == "table":
                assert panel["table_rows"] == expected, panel
            else:
                drawn = [trace["points"] for trace in panel["traces"] if trace["meta"] == "rows"]
                assert sum(drawn) == expected and min(drawn) > 0, panel
    assert f"{pngs} PNGs in {out / 'png'}" in done.stdout.replace("\n", "")
    study = {panel["title"]: panel for panel in panels_in(browser, out / "study.html")}
    assert study["Latency vs accuracy, with the Pareto front"]["state"] == "drawn"
    assert any(t["meta"] == "front" for t in study["Latency vs accuracy, with the Pareto front"]["traces"])
    assert study["Accuracy per iterative pruning step"]["rows"] == 4
    assert study["Detection: pipeline stage breakdown"]["rows"] == 3
    board = panels_in(browser, out / "leaderboard.html")[0]
    assert board["table_rows"] > 0 and board["best_rows"] >= 3  # at least one winner per device and recipe
    nightly = panels_in(browser, out / "nightly.html")
    assert any(trace["meta"] == "band" for trace in nightly[0]["traces"])
    assert nightly[1]["rows"] >= 2  # the alert regress raised and the change marker, on the nights' axis


KINDS = {"scatter": "{x: x, y: y}", "line": "{x: x, y: y}", "bar": "{x: x, y: y}", "table": "{}"}
GOOD = "SELECT 1 AS x, 2 AS y, '<b>bold</b>' AS name UNION ALL SELECT 2, 3, 'a & b'"


def broken_dashboard(folder: Path) -> Path:
    """A dashboard with, per chart kind, a panel with no rows, one with a SQL error and one that names a missing
    column; and one good panel of each kind, whose text would be markup if it were not escaped."""
    panels = []
    nothing = "SELECT 1 AS x, 2 AS y WHERE 0"
    for kind, encode in KINDS.items():
        missing = "{x: x, y: nope}" if kind != "table" else "{columns: [nope]}"
        panels += [f"  - {{title: {kind} empty, chart: {kind}, encode: {encode}, sql: '{nothing}'}}",
                   f"  - {{title: {kind} bad sql, chart: {kind}, encode: {encode}, sql: 'SELECT nope FROM nowhere'}}",
                   f"  - {{title: {kind} missing, chart: {kind}, encode: {missing}, sql: 'SELECT 1 AS x, 2 AS y'}}",
                   f"  - {{title: {kind} good, chart: {kind}, encode: {encode}, sql: \"{GOOD}\"}}"]
    path = folder / "broken.yaml"
    path.write_text("title: Broken <on purpose>\npanels:\n" + "\n".join(panels) + "\n")
    return path


def test_empty_failing_and_missing_column_panels_say_so_per_chart_kind(tmp_path: Path, browser):  # noqa: F811
    open_database(str(tmp_path / "empty.db")).dispose()  # an orch database with nothing measured
    written, pngs = render_dashboards(open_readonly(str(tmp_path / "empty.db")),
                                      [broken_dashboard(tmp_path), SHIPPED / "study.yaml"], tmp_path / "out", png=False)
    study_panels = len(load_dashboard(SHIPPED / "study.yaml").panels)
    assert [(done.drawn, done.empty, done.failed) for done in written] == [(4, 4, 8), (0, study_panels, 0)]
    assert pngs.written == 0 and not (tmp_path / "out" / "png").exists()
    page = (tmp_path / "out" / "broken.html").read_text()
    assert "<b>bold</b>" not in page and "Broken &lt;on purpose&gt;" in page
    panels = {panel["title"]: panel for panel in panels_in(browser, tmp_path / "out" / "broken.html")}
    save_screenshot(browser, tmp_path / "screenshots" / "broken.png")
    assert errors_logged(browser) == []
    for kind in KINDS:
        assert panels[f"{kind} empty"]["state"] == "empty" and "No rows" in panels[f"{kind} empty"]["message"]
        assert panels[f"{kind} bad sql"]["state"] == "problem"
        assert "query failed" in panels[f"{kind} bad sql"]["message"] and "nowhere" in panels[f"{kind} bad sql"][
            "message"]
        assert "no column 'nope'" in panels[f"{kind} missing"]["message"]
        good = panels[f"{kind} good"]
        assert good["state"] == "drawn"
        assert good["table_rows"] == 2 if kind == "table" else [t["points"] for t in good["traces"]] == [2]
    for panel in panels_in(browser, tmp_path / "out" / "study.html"):
        assert panel["state"] == "empty", panel


@pytest.mark.parametrize(("text", "where", "message"), [
    ("title: T\npanels:\n  - {title: P, chart: pie, sql: SELECT 1}\n", ":3:23", "panels[0].chart: Input should be"),
    ("title: T\npanels:\n  - title: P\n    chart: scatter\n    sql: SELECT 1\n    encode: {x: a, colour: b}\n",
     ":6", "needs `y:`"),
    ("title: T\npanels:\n  - title: P\n    chart: bar\n    sql: SELECT 1\n    encode: {x: a, y: b, hue: c}\n",
     ":6", "unknown key"),
])
def test_a_bad_dashboard_file_is_a_located_error_and_exit_2(tmp_path: Path, text: str, where: str, message: str):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    open_database(str(tmp_path / "results.db")).dispose()
    done = orch("dashboard", str(bad), "--out", str(tmp_path / "out"), env=run_env(tmp_path))
    one_line_error(done, f"{bad}{where}", message)
    assert not (tmp_path / "out").exists()  # every file is checked before anything is written


def test_an_unknown_dashboard_name_lists_the_shipped_ones(tmp_path: Path):
    open_database(str(tmp_path / "results.db")).dispose()
    done = orch("dashboard", "studdy", env=run_env(tmp_path))
    one_line_error(done, "unknown dashboard 'studdy'", "leaderboard, nightly, study")


def many_rows_dashboard(folder: Path) -> Path:
    """A line chart over 3 series of MAX_POINTS rows each, a scatter whose front is a few points of many, and a
    table of more rows than a page shows."""
    count = f"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {MAX_POINTS - 1})"
    twice = f"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {2 * MAX_POINTS - 1})"
    table = f"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {MAX_TABLE_ROWS + 499})"
    path = folder / "big.yaml"
    path.write_text(f"""title: Big
panels:
  - title: three long series
    sql: "{count} SELECT i AS x, i * 0.5 + s AS y, 's' || s AS series FROM n, (SELECT 1 AS s UNION ALL SELECT 2
          UNION ALL SELECT 3) ORDER BY s, i"
    chart: line
    encode: {{x: x, y: y, colour: series}}
  - title: a front among many
    sql: "{twice} SELECT i AS x, i % 97 AS y, i % 5000 = 7 AS front FROM n"
    chart: scatter
    encode: {{x: x, y: y, front: front}}
  - title: a long table
    sql: "{table} SELECT i FROM n"
    chart: table
  - title: forty series
    sql: "{count} SELECT i % 500 AS x, i AS y, 'series ' || (i / 500) AS series FROM n ORDER BY series, x"
    chart: line
    encode: {{x: x, y: y, colour: series}}
""")
    return path


def test_big_panels_are_downsampled_per_series_and_say_so(tmp_path: Path, browser):  # noqa: F811
    open_database(str(tmp_path / "results.db")).dispose()
    written, _ = render_dashboards(open_readonly(str(tmp_path / "results.db")), [many_rows_dashboard(tmp_path)],
                                   tmp_path / "out", png=False)
    assert written[0].downsampled == 4
    line, scatter, table, forty = panels_in(browser, tmp_path / "out" / "big.html")
    assert errors_logged(browser) == []
    assert line["rows"] == 3 * MAX_POINTS and "Downsampled" in line["notice"] and f"{3 * MAX_POINTS:,}" in line[
        "notice"]
    drawn = [trace["points"] for trace in line["traces"] if trace["meta"] == "rows"]
    assert len(drawn) == 3 and len(set(drawn)) == 1 and sum(drawn) == line["shown"] <= MAX_POINTS  # per series
    front = [trace["points"] for trace in scatter["traces"] if trace["meta"] == "front"]
    assert front == [2 * MAX_POINTS // 5000] and scatter["shown"] <= MAX_POINTS + front[0]  # the front kept whole
    assert table["table_rows"] == table["shown"] == MAX_TABLE_ROWS and table["rows"] == MAX_TABLE_ROWS + 500
    assert f"first {MAX_TABLE_ROWS:,} of {MAX_TABLE_ROWS + 500:,} rows" in table["notice"]
    # More series than a legend tells apart: one trace, broken between series, every row a point.
    assert forty["rows"] == forty["shown"] == MAX_POINTS and "40 series values are drawn in one colour" in forty[
        "notice"]
    assert [(trace["meta"], trace["points"]) for trace in forty["traces"]] == [("rows", MAX_POINTS)]


def test_orch_report_prints_a_dashboard_table_for_one_recipe_in_every_format(study_db: Path, tmp_path: Path):
    env = dict(run_env(tmp_path), ORCH_DB=str(study_db))
    assert set(report_names()) == {"leaderboard", "ptq-comparison", "pruning-steps"}
    readonly = open_readonly(str(study_db))
    entries = len(run_query(readonly, "SELECT 1 FROM fom f JOIN study_results s ON s.series_id = f.series_id "
                                      "WHERE f.recipe = 'tiny'").rows)
    assert entries > 0
    latex = orch("report", "tiny", "--format", "latex", env=env)
    assert latex.returncode == 0, latex.stderr
    body = latex.stdout.splitlines()
    assert body[0].startswith("\\begin{tabular}{llll") and body[-1] == "\\end{tabular}"
    assert body[2].startswith("device & recipe & variant & framework & accuracy\\_pct")
    assert len(body) == entries + 6 and all(" & tiny & " in row for row in body[4:-2])  # only this recipe's
    markdown = orch("report", str(study_db.parent / "tiny.yaml"), "-t", "ptq-comparison", "-f",
                    "markdown", env=env)
    assert markdown.returncode == 0, markdown.stderr
    ptq = len(run_query(readonly, "SELECT 1 FROM study_results WHERE recipe = 'tiny' AND pipeline_mode IS NULL").rows)
    assert len(markdown.stdout.splitlines()) == ptq + 2 and "| input_size | engine | quantize |" in markdown.stdout
    steps = orch("report", "tiny", "--table", "pruning-steps", "--format", "csv", env=env)
    assert steps.returncode == 0 and steps.stdout.splitlines()[0].startswith("recipe,variant,step,ratio")
    assert len(steps.stdout.splitlines()) == 1 + 4
    one_line_error(orch("report", "tiny", "--table", "podium", env=env), "--table podium", "leaderboard, ")
    one_line_error(orch("report", "tiniest", env=env), "no results for recipe 'tiniest'",
                   "recipes there: synthetic, tiny")


def test_serve_answers_on_loopback_only_until_interrupted(study_db: Path, tmp_path: Path):
    serving = subprocess.Popen([ORCH, "dashboard", "leaderboard", "--no-png", "--serve", "--port", "0", "--out",
                                str(tmp_path / "out"), "--db", str(study_db)], stdout=subprocess.PIPE, text=True,
                               env=run_env(tmp_path))
    try:
        url = ""
        while "serving" not in url:
            url = serving.stdout.readline()
            assert url, "orch dashboard --serve ended before serving"
        url = url.split()[1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/index.html")
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "leaderboard.html" in page
        assert "Course table" in urllib.request.urlopen(url.replace("index", "leaderboard"), timeout=10).read().decode()
        port = int(url.split(":")[2].split("/")[0])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=5)
    finally:
        serving.send_signal(signal.SIGINT)
        assert serving.wait(timeout=20) == 0


def test_without_a_browser_the_pages_are_written_and_one_line_says_why_there_are_no_pngs(tmp_path: Path):
    open_database(str(tmp_path / "results.db")).dispose()
    env = dict(run_env(tmp_path), BROWSER_PATH=str(tmp_path / "no-chromium-here"))
    done = orch("dashboard", str(broken_dashboard(tmp_path)), "--out", str(tmp_path / "out"), env=env)
    assert done.returncode == 0, done.stderr
    said = done.stdout.replace("\n", "")
    assert "PNGs not written: " in said and "apt-get install chromium" in said
    page = (tmp_path / "out" / "broken.html").read_text()
    assert 'data-state="drawn"' in page and 'class="png"' not in page  # drawn, and no link to a missing PNG
    assert not list((tmp_path / "out").rglob("*.png"))
