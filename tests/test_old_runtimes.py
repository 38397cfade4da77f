"""Boards on older onnxruntime releases: real sshd boards whose `python` is a virtualenv with onnxruntime 1.16.3
(numpy 1.24) or 1.18.1 (numpy 1.26), made by `make test` (Makefile: boards). Every variant either runs on its
board or is refused before it is sent, and a refusal is right only if that runtime really cannot load the file."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.fleet.devices import resolve_devices
from orchestrator.fleet.inventory import load_inventory
from orchestrator.lab.sweep import SweepOptions, SweepReport, run_sweep
from orchestrator.recipes import load_recipe
from orchestrator.results.db import open_database
from tests.support import REPO, TINY_RECIPE
from tests.support.fleet import QUICK_RETRY
from tests.support.sshd import Fleet, sshd_available

OLD_PYTHON = {release: REPO / ".venv-boards" / f"onnxruntime-{release}" / "bin" / "python"
              for release in ("1.16", "1.18")}
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sshd_available(), reason="needs root and OpenSSH's sshd (.ci/run installs it)"),
              pytest.mark.skipif(not all(p.exists() for p in OLD_PYTHON.values()),
                                 reason="needs the old onnxruntime boards: run `make test` (it makes them)")]

PRESETS = ["none", "fp16", "dynamic_uint8", "dynamic_int8", "int8_static", "uint8_static", "int8_static_qoperator"]
# What a board on onnxruntime 1.16 or 1.18 makes of each preset of a variant built for no runtime in particular:
# its int8 ConvInteger kernel does not exist (uint8 only), so dynamic int8 weights on a convolution cannot load.
REFUSED_WITHOUT_TARGET = {"dense/ft0/dynamic_int8": "ConvInteger(10) with T1=uint8, T2=int8, T3=int32 (no kernel)"}
LOADS = """
import sys, onnxruntime as ort
try:
    ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    print("loads")
except Exception as exc:
    print("refuses:", str(exc).splitlines()[0])
"""


def recipe(tmp_path: Path, target: str | None = None) -> Path:
    text = (TINY_RECIPE.replace("ratio: [0, 0.5], finetune_epochs: [0, 1]", "ratio: 0, finetune_epochs: 0")
            .replace("quantize: [none, int8_static]", f"quantize: [{', '.join(PRESETS)}]")
            .replace("measure: {min_iters: 80, min_s: 0.2, max_s: 10}",
                     "measure: {min_iters: 64, min_s: 0.05, max_s: 10}"))
    if target:
        text = text.replace("  calibration_samples: 32\n", f"  calibration_samples: 32\n  target_runtime: {target}\n")
    path = tmp_path / f"old-{target or 'untargeted'}.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    boards = Fleet(tmp_path / "fleet", ["127.0.0.2", "127.0.0.3"])
    yield boards
    boards.stop()


def sweep(fleet: Fleet, path: Path, tmp_path: Path, devices: str) -> SweepReport:
    return run_sweep(load_recipe(path), resolve_devices(devices, load_inventory(fleet.inventory)),
                     open_database(str(tmp_path / "results.db")), _store(tmp_path),
                     options=SweepOptions(ssh=fleet.settings(), retry=QUICK_RETRY))


def _store(tmp_path: Path):  # noqa: ANN202
    from orchestrator.artifacts import ArtifactStore

    return ArtifactStore(tmp_path / "artifacts")


def outcomes(tmp_path: Path, device: str) -> dict[str, tuple[str, str | None, str, float | None]]:
    """variant name -> (status, error, artifact sha256, on-device top-1) of the device's results."""
    with sqlite3.connect(tmp_path / "results.db") as db:
        rows = db.execute("SELECT v.name, r.status, r.error, v.sha256, r.accuracy FROM results r "
                          "JOIN variants v ON v.sha256 = r.variant_sha256 JOIN devices d ON d.id = r.device_id "
                          "WHERE d.name = ?", (device,)).fetchall()
    return {name: (status, error, sha, accuracy) for name, status, error, sha, accuracy in rows}


def loads_on(release: str, artifact: Path) -> str:
    """What that onnxruntime release itself says of the file: `loads`, or `refuses: ...`."""
    return subprocess.run([str(OLD_PYTHON[release]), "-c", LOADS, str(artifact)], capture_output=True, text=True,
                          check=True, timeout=120).stdout.strip()


def test_built_for_the_oldest_board_every_preset_and_fp16_run_there(fleet: Fleet, tmp_path: Path):
    fleet.write_inventory(board1={"python": str(OLD_PYTHON["1.16"])})
    report = sweep(fleet, recipe(tmp_path, target="auto"), tmp_path, "board1")
    assert report.target is not None and report.target.version == "1.16.3"
    assert report.statuses == {"ok": len(PRESETS)}, report.statuses
    results = outcomes(tmp_path, "board1")
    fp32_top1 = results["dense/ft0/fp32"][3]
    assert fp32_top1 is not None and fp32_top1 > 0.5
    with sqlite3.connect(tmp_path / "results.db") as db:
        built = dict(db.execute("SELECT name, target_runtime FROM variants"))
        kept = db.execute("SELECT lineage FROM variants WHERE name = 'dense/ft0/dynamic_int8'").fetchone()[0]
        agreement = dict(db.execute("SELECT name, output_error FROM variants WHERE output_error IS NOT NULL"))
    assert set(built.values()) == {"1.16.3"}
    assert "kept_float" in json.loads(kept)[-1]["meta"]  # its convolutions stay float: no int8 ConvInteger there
    for name, (status, _, _, top1) in results.items():
        assert status == "ok" and top1 is not None and abs(top1 - fp32_top1) <= 0.05, (name, top1, fp32_top1)
    assert all(error < 0.1 for error in agreement.values()), agreement  # outputs close to the fp32 model's


def test_untargeted_a_board_refuses_exactly_what_its_runtime_cannot_load(fleet: Fleet, tmp_path: Path):
    fleet.write_inventory(board1={"python": str(OLD_PYTHON["1.16"])})
    report = sweep(fleet, recipe(tmp_path), tmp_path, "board1")
    assert report.target is None
    results = outcomes(tmp_path, "board1")
    assert set(results) == {f"dense/ft0/{'fp32' if p == 'none' else p}" for p in PRESETS}
    for name, (status, error, sha256, _) in results.items():
        said = loads_on("1.16", tmp_path / "artifacts" / f"{sha256}.onnx")
        sent = (fleet.board("board1").cache_dir / "artifacts" / f"{sha256}.onnx").exists()
        if name in REFUSED_WITHOUT_TARGET:
            assert status == "error" and error.startswith("refused before sending: board1 onnxruntime 1.16.3 "
                                                          "supports IR <= 9, ai.onnx <= 19"), error
            assert REFUSED_WITHOUT_TARGET[name] in error and said.startswith("refuses:") and not sent, (said, sent)
        else:
            assert status == "ok" and said == "loads" and sent, (name, status, error, said)


def test_two_boards_on_different_runtimes_each_run_what_they_can(fleet: Fleet, tmp_path: Path):
    fleet.write_inventory(board1={"python": str(OLD_PYTHON["1.16"])})  # board2 has the workstation's 1.32
    sweep(fleet, recipe(tmp_path), tmp_path, "board1,board2")
    old, new = outcomes(tmp_path, "board1"), outcomes(tmp_path, "board2")
    assert {name for name, (status, *_) in new.items() if status == "ok"} == set(new)
    assert {name for name, (status, *_) in old.items() if status != "ok"} == set(REFUSED_WITHOUT_TARGET)
    for name in REFUSED_WITHOUT_TARGET:
        sha256 = old[name][2]
        assert not (fleet.board("board1").cache_dir / "artifacts" / f"{sha256}.onnx").exists()
        assert (fleet.board("board2").cache_dir / "artifacts" / f"{sha256}.onnx").exists()
    with sqlite3.connect(tmp_path / "results.db") as db:
        known = dict(db.execute("SELECT name, json_extract(info, '$.onnxruntime') FROM devices"))
    assert known["board1"] == "1.16.3" and known["board2"].startswith("1.32")
