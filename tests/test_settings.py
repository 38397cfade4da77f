"""Settings precedence (orchestrator/lab/settings.py): a board's limits are ceilings a recipe may tighten but never
loosen; measurement gates come from the recipe."""

from __future__ import annotations

from pathlib import Path

from agent.spec import DEFAULT_MEASURE, Gate, Thermal
from orchestrator.builder.pipeline import BuiltVariant
from orchestrator.fleet.devices import resolve_devices
from orchestrator.fleet.inventory import load_inventory
from orchestrator.lab.jobs import Job, job_spec
from orchestrator.lab.settings import power_for, providers_for, thermal_for
from orchestrator.recipes import load_recipe
from orchestrator.recipes.schema import BenchmarkSpec


def test_a_board_thermal_ceiling_is_tightened_never_loosened():
    board = Thermal(max_c=60.0, wait_timeout_s=300.0)
    assert thermal_for(Thermal(max_c=80.0), board) == Thermal(60.0, 300.0)  # the recipe cannot loosen it
    assert thermal_for(Thermal(max_c=50.0), board) == Thermal(50.0, 300.0)  # ... but may tighten it
    assert thermal_for(Thermal(), board) == Thermal(60.0, 300.0)
    assert thermal_for(Thermal(max_c=70.0, wait_timeout_s=5.0), None) == Thermal(70.0, 5.0)
    assert thermal_for(Thermal(max_c=70.0), Thermal()) == Thermal(70.0)  # a board without a ceiling


def test_a_board_meter_is_its_hardware():
    ina = {"type": "ina3221", "rail": "VDD_IN"}
    assert power_for(None, ina) == ina
    assert power_for({"type": "estimate", "watts": 5}, ina) == ina  # not swapped for a lesser one
    assert power_for({"type": "command", "command": "evil"}, ina) == ina
    assert power_for({"type": "none"}, ina) == {"type": "none"}  # switching power off is the recipe's call
    assert power_for({"type": "auto"}, ina) == ina
    assert power_for({"type": "ina3221", "rate_hz": 50}, ina) == {**ina, "rate_hz": 50}
    assert power_for({"type": "rapl"}, None) == {"type": "rapl"}
    assert power_for({"type": "rapl"}, {"type": "auto"}) == {"type": "rapl"}
    assert power_for(None, None) is None


def test_providers_are_the_recipes_then_the_boards_then_the_cpu():
    board = ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert providers_for(BenchmarkSpec(), board) == list(board)
    assert providers_for(BenchmarkSpec(providers=["CPUExecutionProvider"]), board) == ["CPUExecutionProvider"]
    assert providers_for(BenchmarkSpec(), None) == ["CPUExecutionProvider"]


def test_a_job_spec_takes_gates_from_the_recipe_and_limits_from_the_board(tmp_path: Path):
    (tmp_path / "devices.yaml").write_text(
        "devices:\n  jetson:\n    host: 10.0.0.2\n    power: {type: ina3221}\n    thermal: {max_c: 60}\n")
    (tmp_path / "r.yaml").write_text(
        "name: r\nmodel: {arch: digits_cnn}\ndataset: {name: digits}\n"
        "benchmark:\n  measure: {min_iters: 64}\n  thermal: {max_c: 85}\n  power: {type: estimate, watts: 3}\n"
        "  max_cv: 0.5\n")
    recipe = load_recipe(tmp_path / "r.yaml").recipe
    (device,) = resolve_devices("jetson", load_inventory(tmp_path / "devices.yaml"))
    variant = BuiltVariant("v", "0" * 64, {}, [], {"input": {"name": "x", "shape": [1, 1, 8, 8], "dtype": "float32"}},
                           1, 0)
    spec = job_spec(recipe, Job(variant, device, threads=2), None)
    assert spec.measure == Gate(64, DEFAULT_MEASURE.min_s, DEFAULT_MEASURE.max_s) and spec.max_cv == 0.5
    assert spec.thermal.max_c == 60.0 and spec.power == {"type": "ina3221"} and spec.intra_op_threads == 2
