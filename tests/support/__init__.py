"""Helpers the tests share: where things are, the small recipe, running the real `orch` script.

Test modules import from here (and from the other tests/support modules), never from each other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ORCH = str(Path(sys.executable).with_name("orch"))

# A small recipe: the quickstart's shape at a fraction of its cost.
TINY_RECIPE = """\
name: tiny
model: {arch: digits_cnn, options: {width: 8}}
dataset: {name: digits, image_size: 16}
train: {epochs: 2, lr: 0.05, batch_size: 64, seed: 0}
variants:
  prune: {method: [l1], ratio: [0, 0.5], finetune_epochs: [0, 1]}
  quantize: [none, int8_static]
  calibration_samples: 32
benchmark:
  warmup: {min_iters: 5, min_s: 0.05}
  measure: {min_iters: 80, min_s: 0.2, max_s: 10}
  threads: [1]
"""


def run_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running the real `orch` script with its files inside tmp_path."""
    env = dict(os.environ)
    env["ORCH_DB"] = str(tmp_path / "results.db")
    env["ORCH_ARTIFACTS"] = str(tmp_path / "artifacts")
    env["COLUMNS"] = "200"
    return env


def orch(*args: str, env: dict[str, str], stdin: str = "", timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed `orch` script; its exit code, stdout and stderr."""
    return subprocess.run([ORCH, *args], capture_output=True, text=True, env=env, input=stdin, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> None:
    """The command failed with `code` and said why in one line on stderr, naming every fragment, no traceback."""
    assert done.returncode == code, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], done.stderr


def recipe_refused(done: subprocess.CompletedProcess, *fragments: str) -> None:
    """`orch recipes check` of one file: a `bad` line naming the fault (every fragment), the count of bad recipes,
    exit code 2."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    bad, summary = done.stderr.strip().splitlines()
    assert bad.startswith("bad") and all(fragment in bad for fragment in fragments), done.stderr
    assert summary == "error: 1 of 1 recipes did not check out", done.stderr
