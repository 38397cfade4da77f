"""The real `orch` script, run as a user runs it: exit codes, one-line errors, a sweep, Ctrl-C."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import ORCH, TINY_RECIPE, one_line_error, orch, run_env


def test_missing_recipe_file(tmp_path: Path):
    done = orch("sweep", str(tmp_path / "nope.yaml"), env=run_env(tmp_path))
    one_line_error(done, "nope.yaml", "no such recipe file")


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: {arch: digits_cnn\ndataset: {name: digits}\n")
    done = orch("sweep", str(bad), env=run_env(tmp_path))
    one_line_error(done, f"{bad}:3", "YAML syntax error")


def test_unknown_device_lists_the_known_ones(tmp_path: Path, tiny_recipe_path: Path):
    done = orch("sweep", str(tiny_recipe_path), "--devices", "local,jetsn", env=run_env(tmp_path))
    one_line_error(done, "unknown device 'jetsn'", "known devices: local")
    assert not (tmp_path / "results.db").exists()  # nothing started, nothing written


def test_results_before_any_sweep(tmp_path: Path):
    done = orch("results", env=run_env(tmp_path))
    one_line_error(done, "no sweep has been recorded")


@pytest.mark.slow
def test_sweep_records_one_ok_result_per_variant(tmp_path: Path, tiny_recipe_path: Path, built_tiny):
    env = run_env(tmp_path)
    env["ORCH_ARTIFACTS"] = str(built_tiny[2].root)  # already built this session: the sweep reuses it
    done = orch("sweep", str(tiny_recipe_path), env=env)
    assert done.returncode == 0, done.stderr
    assert "8 ok" in done.stdout
    with sqlite3.connect(tmp_path / "results.db") as db:
        assert db.execute("SELECT count(*) FROM results WHERE status = 'ok'").fetchone() == (8,)
        assert db.execute("SELECT count(*) FROM results WHERE p90_ms > 0 AND peak_rss_mb > 0 "
                          "AND accuracy BETWEEN 0.05 AND 1 AND accuracy_n = 360").fetchone() == (8,)
        assert db.execute("SELECT count(*) FROM latency_samples").fetchone() == (8,)
        assert db.execute("SELECT status FROM sweeps").fetchall() == [("finished",)]
    shown = orch("results", "--sweep", "last", env=env)
    assert shown.returncode == 0
    assert shown.stdout.count(" ok ") == 8 and "l1-0.50/ft1/int8_static" in shown.stdout
    # --db beats ORCH_DB
    elsewhere = dict(env, ORCH_DB=str(tmp_path / "empty.db"))
    assert orch("results", env=elsewhere).returncode == 2
    flagged = orch("results", "--db", str(tmp_path / "results.db"), env=elsewhere)
    assert flagged.returncode == 0 and flagged.stdout.count(" ok ") == 8


@pytest.mark.slow
def test_ctrl_c_keeps_every_result_already_measured(tmp_path: Path, built_tiny):
    recipe = tmp_path / "slowish.yaml"
    recipe.write_text(TINY_RECIPE.replace("measure: {min_iters: 80, min_s: 0.2, max_s: 10}",
                                          "measure: {min_iters: 80, min_s: 1.0, max_s: 10}"))
    env = run_env(tmp_path)
    env["ORCH_ARTIFACTS"] = str(built_tiny[2].root)
    db_path = tmp_path / "results.db"
    # A background job of a non-interactive shell (as CI may be) starts with SIGINT ignored, and
    # Python keeps it so; a terminal's foreground process has the default: restore that.
    process = subprocess.Popen([ORCH, "sweep", str(recipe)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    measured = 0
    while measured < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        if db_path.exists():
            try:
                with sqlite3.connect(db_path) as db:
                    measured = db.execute("SELECT count(*) FROM results").fetchone()[0]
            except sqlite3.OperationalError:
                pass  # tables not created yet
    assert measured >= 2, "the sweep never recorded a result"
    process.send_signal(signal.SIGINT)  # as a terminal's Ctrl-C reaches the foreground process
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    with sqlite3.connect(db_path) as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM results")]
        assert len(statuses) >= 2 and set(statuses) == {"ok"}  # the killed job left no bogus row
        assert db.execute("SELECT status FROM sweeps").fetchall() == [("interrupted",)]


@pytest.mark.slow
def test_repeat_measures_every_job_n_times(tmp_path: Path, built_tiny):
    recipe = tmp_path / "one.yaml"
    recipe.write_text(TINY_RECIPE.replace("ratio: [0, 0.5], finetune_epochs: [0, 1]", "ratio: 0, finetune_epochs: 0")
                      .replace("quantize: [none, int8_static]", "quantize: none"))
    env = run_env(tmp_path)
    env["ORCH_ARTIFACTS"] = str(built_tiny[2].root)
    done = orch("sweep", str(recipe), "--repeat", "3", env=env)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "results.db") as db:
        assert db.execute("SELECT count(*) FROM results WHERE status = 'ok'").fetchone() == (3,)


@pytest.mark.slow
def test_a_sweep_with_invalid_or_failed_jobs_says_why_and_exits_non_zero(tmp_path: Path, built_tiny):
    """Every job invalid (a spread limit no run can meet): exit code 3 and the reason counted once; a job whose
    model cannot run: exit code 4. Every result is recorded either way."""
    recipe = tmp_path / "one.yaml"
    recipe.write_text(TINY_RECIPE.replace("ratio: [0, 0.5], finetune_epochs: [0, 1]", "ratio: 0, finetune_epochs: 0")
                      .replace("threads: [1]", "threads: [1]\n  max_cv: 0.000001\n  repeat: 2"))
    env = run_env(tmp_path)
    env["ORCH_ARTIFACTS"] = str(built_tiny[2].root)
    done = orch("sweep", str(recipe), env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "4 invalid" in done.stdout
    summary = [line for line in done.stdout.splitlines() if line.startswith("4 invalid:")]
    assert len(summary) == 1 and "robust coefficient of variation" in summary[0], done.stdout  # one line, counted
    assert "results are invalid" in done.stderr and "Traceback" not in done.stderr
    with sqlite3.connect(tmp_path / "results.db") as db:
        assert db.execute("SELECT count(*) FROM results WHERE status = 'invalid'").fetchone() == (4,)
    failing = tmp_path / "failing.yaml"
    failing.write_text(recipe.read_text().replace("max_cv: 0.000001", "providers: [NoSuchExecutionProvider]"))
    done = orch("sweep", str(failing), env=env)
    assert done.returncode == 4, done.stdout + done.stderr
    assert any(line.startswith("4 error:") and "NoSuchExecutionProvider" in line for line in done.stdout.splitlines())
    assert "jobs ended in error" in done.stderr
