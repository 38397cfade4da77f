"""The regress re-run hook: a series' newest job spec runs again on its own device, for real."""

from __future__ import annotations

import json

import pytest

from agent.spec import Gate, InputSpec, JobSpec
from orchestrator.fleet.inventory import Inventory
from orchestrator.lab.rerun import scheduled_rerun
from orchestrator.lab.sweep import SweepOptions
from orchestrator.results.findings import SeriesRef

pytestmark = pytest.mark.slow


def _ref(device: str, spec: dict) -> SeriesRef:
    return SeriesRef(series_id=1, key="k", device=device, device_id=1, variant="v", variant_sha256="0" * 64,
                     recipe="tiny", providers="CPUExecutionProvider", threads=1, spec=spec)


def test_the_hook_reruns_the_stored_spec_on_the_same_device(built_tiny, tmp_path):
    builder, variants, store = built_tiny
    variant = variants[0]
    spec = JobSpec(artifact_sha256=variant.sha256, inputs=[InputSpec("input", variant.meta["input"]["shape"])],
                   warmup=Gate(5, 0.05), measure=Gate(80, 0.2, 5.0))
    rerun = scheduled_rerun(store, Inventory(tmp_path / "devices.yaml"), SweepOptions())
    result = rerun(_ref("local", json.loads(spec.to_json())))
    assert result is not None and result["status"] == "ok"
    assert result["timing"]["iterations"] >= 80


def test_a_device_that_is_gone_gives_no_rerun(built_tiny, tmp_path):
    _, variants, store = built_tiny
    spec = JobSpec(artifact_sha256=variants[0].sha256, inputs=[InputSpec("input", [1, 1, 16, 16])])
    rerun = scheduled_rerun(store, Inventory(tmp_path / "devices.yaml"), SweepOptions())
    assert rerun(_ref("jetson-gone", json.loads(spec.to_json()))) is None
    assert rerun(_ref("local", {})) is None
