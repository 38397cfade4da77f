"""The MobileNet-v1 / CIFAR-10 course study as it is handed in: a reduced grid on a CIFAR-10 fixture in the official
pickle layout, every job run three times over the test set with a power meter whose readings differ between
repeats, and one view (`study_results`, `fom`) giving each variant's accuracy %, maximum memory, average latency,
maximum power, average energy per image and the course's figure of merit, checked against the same figures
computed here from the raw result rows."""

from __future__ import annotations

import sqlite3
import statistics
import sys
from pathlib import Path

import pytest

from tests.support import REPO, orch, run_env
from tests.support.datasets import write_cifar10

# A meter program: each run (one per job) prints a constant power that depends on how many runs came before it,
# so the three repeats of a job read 2.0, 2.5 and 3.0 W (then again), at 50 lines a second.
METER = """\
import sys, time
from pathlib import Path
counter = Path(sys.argv[1])
runs = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(runs + 1))
watts = 2.0 + 0.5 * (runs % 3)
while True:
    print(f"{watts:.3f}", flush=True)
    time.sleep(0.02)
"""


def course_recipe(tmp_path: Path) -> Path:
    """recipes/mobilenetv1-cifar10.yaml reduced: width 0.25, 2 epochs, pruning 0 and 0.5, no fine-tune, fp32 and
    dynamic uint8; the meter above; short gates over the test set."""
    write_cifar10(tmp_path / "data" / "cifar10", n_train_per_batch=40, n_test=40)
    meter = tmp_path / "meter.py"
    meter.write_text(METER)
    text = ((REPO / "recipes" / "mobilenetv1-cifar10.yaml").read_text()
            .replace("options: {width: 1.0}", "options: {width: 0.25}")
            .replace("root: ../data/cifar10,", "root: data/cifar10,")
            .replace("train: {epochs: 30, lr: 0.05, batch_size: 128, seed: 0}",
                     "train: {epochs: 2, lr: 0.05, batch_size: 32, seed: 0}")
            .replace("ratio: [0, 0.05, 0.25, 0.5, 0.75, 0.9]", "ratio: [0, 0.5]")
            .replace("finetune_epochs: [0, 3, 5]", "finetune_epochs: [0]")
            .replace("warmup: {min_iters: 10, min_s: 0.5}", "warmup: {min_iters: 2, min_s: 0.01}")
            .replace("min_iters: 300, min_s: 3, max_s: 60", "min_iters: 64, min_s: 0.5, max_s: 10")
            .replace("  threads: [1]\n", f"  threads: [1]\n  power: {{type: command, command: '{sys.executable} "
                                         f"{meter} {tmp_path / 'runs'}', rate_hz: 50}}\n  power_idle_s: 0.3\n"))
    assert "inputs: evaluation_set" in text and "repeat: 3" in text  # the course's rules, in the example recipe
    path = tmp_path / "course.yaml"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_the_course_table_comes_straight_from_one_view_and_matches_the_raw_rows(tmp_path: Path):
    recipe = course_recipe(tmp_path)
    done = orch("sweep", str(recipe), "--allow-command-meter", env=run_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    with sqlite3.connect(tmp_path / "results.db") as db:
        raw = db.execute("SELECT v.name, r.status, r.accuracy, r.peak_rss_mb, r.mean_ms, r.max_w, "
                         "r.energy_per_inference_mj, r.measure_inputs, r.iterations, r.accuracy_n "
                         "FROM results r JOIN variants v ON v.sha256 = r.variant_sha256").fetchall()
        view = {row[0]: row[1:] for row in db.execute(
            "SELECT variant, repeats, accuracy_pct, peak_rss_mb, mean_ms, max_w, energy_per_inference_mj "
            "FROM study_results")}
        fom = dict(db.execute("SELECT variant, fom_pct_per_ms_mj FROM fom").fetchall())
    names = {"dense/ft0/fp32", "dense/ft0/dynamic_uint8", "l1-0.50/ft0/fp32", "l1-0.50/ft0/dynamic_uint8"}
    assert set(view) == names and set(fom) == names
    for name in names:
        rows = [row for row in raw if row[0] == name]
        assert len(rows) == 3 and all(row[1] == "ok" for row in rows), rows
        # Over the test set: every timed run fed a test image, at least one whole pass of the 40.
        assert all(row[7] == "evaluation_set" and row[8] >= 40 and row[9] == 40 for row in rows), rows
        assert len({row[5] for row in rows}) == 3  # the meter read differently in each repeat
        accuracy_pct = 100 * statistics.mean(row[2] for row in rows)
        latency_ms = statistics.mean(row[4] for row in rows)
        energy_mj = statistics.mean(row[6] for row in rows)
        expected = (3, accuracy_pct, max(row[3] for row in rows), latency_ms, max(row[5] for row in rows), energy_mj)
        assert view[name] == pytest.approx(expected, rel=1e-9), name
        # The course: FoM = accuracy (%) / (average latency x average energy per image).
        assert fom[name] == pytest.approx(accuracy_pct / (latency_ms * energy_mj), rel=1e-9), name
