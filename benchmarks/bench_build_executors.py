"""Build executor scheduling: 16 independent build steps that each sleep 1 s, on a 4-worker Ray cluster on 127.0.0.1.

Scheduling, not CPU (this machine may have 2 cores): ideal makespan = 16 x 1 s / 4 workers = 4 s. Measured from
the call to build_with (the cluster already up and this process joined to it) until every variant is in the
store. The first build of a session also starts Ray's worker processes for this driver (Ray starts at most as
many at once as the machine has cores) and imports orch in each; the second build reuses them. Target: ideal /
measured >= 0.8.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrator.artifacts import ArtifactStore
from orchestrator.builder import STEPS, OnnxNode
from orchestrator.builder.dispatch import build_with
from orchestrator.builder.executors import RayExecutor
from orchestrator.builder.pipeline import Builder
from orchestrator.recipes import Step, VariantPlan, load_recipe
from tests.support import TINY_RECIPE
from tests.support.ray_cluster import ray_cluster

STEPS_N, SLEEP_S, WORKERS = 16, 1.0, 4


class SleepStep:
    """A model source that sleeps, then stores a one-node ONNX model (the same bytes every time)."""

    name = "bench_sleep"
    version = "1"
    produces = "onnx"

    def run(self, ctx: Any, parent: None, params: dict[str, Any]) -> OnnxNode:
        from onnx import TensorProto, helper

        time.sleep(params["seconds"])
        tensor = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("input", "output")]
        graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "sleep", tensor[:1],
                                  tensor[1:])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="bench")
        return OnnxNode(ctx.store.put(model.SerializeToString(), ".onnx"), {})


class SleepBuilder(Builder):
    """16 variants, each one independent sleeping step."""

    def plans(self) -> list[VariantPlan]:
        return [VariantPlan(name=f"sleep-{index}", axes={"index": index},
                            steps=(Step(name="bench_sleep", params={"index": index, "seconds": SLEEP_S}),))
                for index in range(STEPS_N)]


def _timed_build(root: Path, address: str) -> float:
    builder = SleepBuilder(load_recipe(root / "tiny.yaml"), ArtifactStore(root / f"artifacts-{time.monotonic_ns()}"))
    _ = builder.context.splits  # the data shipped to workers, loaded before the clock starts
    started = time.perf_counter()
    built = build_with(builder, RayExecutor(address, threads=1))
    measured = time.perf_counter() - started
    if len(built) != STEPS_N or builder.steps_run != STEPS_N:
        raise RuntimeError(f"built {len(built)} variants in {builder.steps_run} steps, expected {STEPS_N}")
    return measured


def run() -> Iterator[tuple[str, float, str]]:
    import ray

    if "bench_sleep" not in STEPS:
        STEPS.register("bench_sleep")(SleepStep())
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp, ray_cluster(head_cpus=WORKERS) as cluster:
        (Path(tmp) / "tiny.yaml").write_text(TINY_RECIPE)
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        try:
            cold = _timed_build(Path(tmp), cluster.address)
            warm = _timed_build(Path(tmp), cluster.address)
        finally:
            ray.shutdown()
    ideal = STEPS_N * SLEEP_S / WORKERS
    yield f"ideal makespan ({STEPS_N} x {SLEEP_S:g} s steps on {WORKERS} Ray workers)", ideal, "s"
    yield "measured makespan, first build (Ray starts its workers)", cold, "s"
    yield "ideal / measured, first build", ideal / cold, "ratio (target >= 0.8)"
    yield "measured makespan, second build (workers running)", warm, "s"
    yield "ideal / measured, second build", ideal / warm, "ratio (target >= 0.8)"
