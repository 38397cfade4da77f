"""Build executors: --build-executor's forms, and the same recipe built inline, in local processes and on a real
Ray cluster (a head on 127.0.0.1 and a worker node running as another Unix user that cannot read the
workstation's folders) gives the same lineage keys and the same ONNX bytes; a worker killed mid-step is retried."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.artifacts import ArtifactStore
from orchestrator.builder.dispatch import build_with
from orchestrator.builder.executors import (
    InlineExecutor,
    ProcessExecutor,
    RayExecutor,
    parse_executor,
)
from orchestrator.builder.pipeline import Builder, BuiltVariant, build_recipe
from orchestrator.errors import ClusterUnreachable, ExecutorError, ExitCode
from orchestrator.recipes import LoadedRecipe, Step, VariantPlan, load_recipe
from tests.support import REPO, TINY_RECIPE, build_steps
from tests.support.ray_cluster import WORKER_USER, ensure_user, free_port, interpreter_reachable, ray_cluster

AS_ROOT = os.geteuid() == 0


# -- the flag ---------------------------------------------------------------------------------------------------

def test_every_accepted_form_parses(monkeypatch):
    monkeypatch.delenv("ORCH_BUILD_EXECUTOR", raising=False)
    assert isinstance(parse_executor(None), InlineExecutor)
    assert parse_executor("inline").name == "inline"
    assert parse_executor("processes:3").name == "processes:3"
    assert isinstance(parse_executor("processes"), ProcessExecutor)
    ray = parse_executor("ray:127.0.0.1:6379")
    assert isinstance(ray, RayExecutor) and ray.address == "127.0.0.1:6379"
    assert parse_executor("ray://head.lab:10001").address == "ray://head.lab:10001"
    assert parse_executor("ray").address is None
    monkeypatch.setenv("ORCH_BUILD_EXECUTOR", "processes:2")
    assert parse_executor(None).name == "processes:2"


@pytest.mark.parametrize("value", ["threads", "processes:0", "processes:x", "ray:nohost", "ray:/x:1", "inline "
                                   "please"])
def test_a_bad_executor_is_one_line_naming_the_accepted_forms(value):
    with pytest.raises(ExecutorError) as raised:
        parse_executor(value)
    message = str(raised.value)
    assert "\n" not in message and value in message
    assert raised.value.exit_code == ExitCode.BAD_INPUT
    if value != "processes:0":
        assert "inline, processes, processes:N, ray, ray:HOST:PORT or ray://HOST:PORT" in message


def test_without_ray_asking_for_it_says_how_to_install_it():
    # A fresh interpreter where `import ray` fails, as it does when the extra is not installed.
    code = ("import sys; sys.modules['ray'] = None\n"
            "from orchestrator.builder.executors import parse_executor\n"
            "from orchestrator.errors import ExecutorError\n"
            "try:\n    parse_executor('ray')\nexcept ExecutorError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert done.stdout.strip() == ("the ray build executor needs Ray, which is not installed: "
                                   "pip install 'orch[ray]'"), done.stderr


def test_an_unreachable_cluster_is_one_clear_line():
    executor = RayExecutor(f"127.0.0.1:{free_port()}", connect_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(ClusterUnreachable) as raised:
        executor.connect(pytest.importorskip("ray"))
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert "\n" not in message and "is unreachable" in message and executor.address in message


# -- the same bytes wherever it is built ---------------------------------------------------------------------------

def _digests(variants: list[BuiltVariant], store: ArtifactStore) -> dict[str, tuple[list[str], bytes]]:
    """Each variant's lineage keys and ONNX bytes, by name."""
    return {v.name: ([step["key"] for step in v.lineage], store.path(v.sha256, ".onnx").read_bytes())
            for v in variants}


def _private_recipe(folder: Path) -> LoadedRecipe:
    """The tiny recipe in a folder only its owner (root) may read, as the workstation's files are."""
    folder.mkdir(mode=0o700)
    (folder / "tiny.yaml").write_text(TINY_RECIPE)
    return load_recipe(folder / "tiny.yaml")


@pytest.fixture(scope="module")
def workstation(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("workstation")
    root.chmod(0o700)
    return root


@pytest.fixture(scope="module")
def inline_build(workstation: Path):
    """The tiny recipe built inline with one torch thread (as each worker has): (loaded, store, digests)."""
    import torch

    loaded = _private_recipe(workstation / "recipe-inline")
    store = ArtifactStore(workstation / "artifacts-inline")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcome = build_recipe(loaded, store)
    finally:
        torch.set_num_threads(threads)
    return loaded, store, _digests(outcome.variants, store)


class Recorder:
    """A build observer that notes the thread each variant was reported from."""

    def __init__(self) -> None:
        self.started, self.built, self.failed, self.threads = 0, [], [], set()

    def build_started(self, total: int) -> None:
        self.started = total

    def variant_built(self, variant) -> None:
        self.built.append(variant.name)
        self.threads.add(threading.get_ident())

    def variant_failed(self, variant) -> None:
        self.failed.append(variant.name)


@pytest.mark.slow
def test_local_processes_build_the_same_keys_and_bytes_as_inline(inline_build, workstation):
    loaded, _, expected = inline_build
    store = ArtifactStore(workstation / "artifacts-processes")
    observer = Recorder()
    outcome = build_recipe(loaded, store, observer, executor=ProcessExecutor(2, threads=1))
    assert not outcome.failures and _digests(outcome.variants, store) == expected
    assert sorted(observer.built) == sorted(expected) and observer.threads == {threading.get_ident()}
    assert outcome.steps_run == sum(v.steps_run for v in outcome.variants) == 12
    again = build_recipe(loaded, store, executor=ProcessExecutor(2, threads=1))
    assert again.steps_run == 0 and _digests(again.variants, store) == expected


class FailingBuilder(Builder):
    """Three variants from the tiny recipe's first: one with a step that fails, one more step after that one, and
    the first variant itself."""

    def plans(self) -> list[VariantPlan]:
        first = super().plans()[0]
        fails = (*first.steps, Step(name="fails_here", params={}))
        after = (*fails, Step(name="traced_copy", params={"trace": "/nonexistent", "seconds": 0}))
        return [first.model_copy(update={"name": "fails", "steps": fails}),
                first.model_copy(update={"name": "after-failure", "steps": after}), first]


@pytest.mark.slow
def test_a_step_that_fails_on_a_worker_fails_its_variants_only(inline_build):
    build_steps.register()
    builder = FailingBuilder(inline_build[0], inline_build[1])
    observer = Recorder()
    built = build_with(builder, ProcessExecutor(1, threads=1), observer)
    assert [v.name for v in built] == observer.built == ["dense/ft0/fp32"]
    assert sorted(observer.failed) == ["after-failure", "fails"]
    assert {(f.step, f.reason) for f in builder.failures} == {("fails_here", "this step always fails")}


BYO_RECIPE = """\
name: byo
model: {onnx: model.onnx}
dataset: {name: image_folder, root: images, image_size: 32, test_fraction: 0.25}
variants:
  quantize: [none, int8_static]
  calibration_samples: 16
  include:
    - {simplify: true, quantize: [none]}
"""


@pytest.mark.slow
def test_an_onnx_source_on_image_files_builds_the_same_bytes_in_processes(tmp_path):
    """The model source (a user's file) is read on the workstation, the images travel as arrays."""
    from tests.support import onnx_models

    onnx_models.write_colour_folder(tmp_path / "images")
    onnx_models.zoo_format(tmp_path / "model.onnx", onnx_models.trained())
    (tmp_path / "byo.yaml").write_text(BYO_RECIPE)
    loaded = load_recipe(tmp_path / "byo.yaml")
    inline_store, store = ArtifactStore(tmp_path / "inline"), ArtifactStore(tmp_path / "processes")
    inline = build_recipe(loaded, inline_store)
    outcome = build_recipe(loaded, store, executor=ProcessExecutor(2, threads=1))
    assert not inline.failures and not outcome.failures and len(outcome.variants) == 3
    assert _digests(outcome.variants, store) == _digests(inline.variants, inline_store)
    source = {v.lineage[0]["worker"]["pid"] for v in outcome.variants}
    assert source == {os.getpid()}  # import_onnx ran here; the other steps in the worker processes
    assert os.getpid() not in {step["worker"]["pid"] for v in outcome.variants for step in v.lineage[1:]}


# -- a real Ray cluster: the head as root, the worker node as another user ---------------------------------------

@pytest.fixture(scope="module")
def cluster() -> Iterator:
    if not AS_ROOT:
        pytest.skip("the Ray cluster test starts a worker node as another Unix user: run as root (CI does)")
    pytest.importorskip("ray")
    worker = ensure_user()
    with interpreter_reachable(), ray_cluster(head_cpus=0, workers=((2, WORKER_USER),)) as running:
        running.worker_uid = worker.pw_uid
        yield running


def _readable_by(user: str, path: Path) -> bool:
    return subprocess.run(["runuser", "-u", user, "--", "test", "-r", str(path / ".")]).returncode == 0 and \
        subprocess.run(["runuser", "-u", user, "--", "ls", str(path)], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def ray_build(cluster, workstation, inline_build):
    loaded = _private_recipe(workstation / "recipe-ray")
    store = ArtifactStore(workstation / "artifacts-ray")
    observer = Recorder()
    outcome = build_recipe(loaded, store, observer, executor=RayExecutor(cluster.address))
    return loaded, store, outcome, observer


@pytest.mark.slow
def test_a_ray_build_on_another_users_node_gives_the_inline_keys_and_bytes(cluster, workstation, inline_build,
                                                                           ray_build):
    _, _, expected = inline_build
    loaded, store, outcome, observer = ray_build
    # The worker's user cannot read the workstation's recipe, data or artifact folders.
    for folder in (workstation, Path(loaded.path).parent, store.root):
        assert not _readable_by(WORKER_USER, folder), folder
    assert not outcome.failures and _digests(outcome.variants, store) == expected
    assert sorted(observer.built) == sorted(expected) and observer.threads == {threading.get_ident()}
    # Every step ran on the worker node (the head has no CPU to offer), as that user, in a Ray worker process.
    records = {step["key"]: step for variant in outcome.variants for step in variant.lineage}
    assert len(records) == outcome.steps_run == 12
    assert {record["worker"]["uid"] for record in records.values()} == {cluster.worker_uid}
    assert len({record["worker"]["node"] for record in records.values()}) == 1
    assert all(record["worker"]["pid"] != os.getpid() for record in records.values())


class TracedBuilder(Builder):
    """The tiny recipe's first variant with a test-only step at its end that records its attempts (build_steps)."""

    def __init__(self, loaded: LoadedRecipe, store: ArtifactStore, trace: Path):
        super().__init__(loaded, store)
        self.trace = trace

    def plans(self) -> list[VariantPlan]:
        first = super().plans()[0]
        step = Step(name="traced_copy", params={"trace": str(self.trace), "seconds": 3})
        return [first.model_copy(update={"name": "traced", "steps": (*first.steps, step)})]


def _attempts(trace: Path) -> list[tuple[int, int]]:
    try:
        lines = (trace / "attempts").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [(int(pid), int(uid)) for pid, uid in (line.split() for line in lines if line.strip())]


@pytest.mark.slow
def test_a_worker_killed_mid_step_is_retried_by_ray_with_the_same_bytes(cluster, inline_build, ray_build):
    build_steps.register()
    trace = Path(tempfile.mkdtemp(prefix="orch-trace-"))
    trace.chmod(0o777)  # the worker's user writes its attempts here; nothing else of the workstation's
    try:
        inline = TracedBuilder(inline_build[0], inline_build[1], trace).build_all()
        (trace / "attempts").unlink()
        builder = TracedBuilder(ray_build[0], ray_build[1], trace)
        result: dict[str, list[BuiltVariant]] = {}
        building = threading.Thread(target=lambda: result.update(built=build_with(
            builder, RayExecutor(cluster.address))))
        building.start()
        deadline = time.monotonic() + 120
        while not _attempts(trace) and time.monotonic() < deadline:
            time.sleep(0.05)
        first_pid, first_uid = _attempts(trace)[0]
        os.kill(first_pid, signal.SIGKILL)  # the worker process, mid-step
        building.join(timeout=180)
        attempts = _attempts(trace)
    finally:
        subprocess.run(["rm", "-rf", str(trace)])
    assert not building.is_alive() and not builder.failures
    assert len(attempts) == 2 and attempts[0][0] != attempts[1][0]
    assert {uid for _, uid in attempts} == {first_uid} == {cluster.worker_uid}
    [variant] = result["built"]
    assert variant.lineage[-1]["worker"]["pid"] == attempts[1][0]
    assert _digests([variant], ray_build[1]) == _digests(inline, inline_build[1])
    assert pwd.getpwuid(first_uid).pw_name == WORKER_USER


def test_an_unreachable_ray_address_in_the_environment_is_one_clear_line(monkeypatch):
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(ClusterUnreachable) as raised:
        RayExecutor(None, connect_timeout_s=2).connect(pytest.importorskip("ray"))
    assert "\n" not in str(raised.value) and address in str(raised.value)


# -- the command line -------------------------------------------------------------------------------------------

def test_orch_build_and_sweep_take_the_executor_from_the_flag_or_the_environment(tmp_path):
    import json
    import sqlite3

    from tests.support import one_line_error, orch, run_env

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    env = run_env(tmp_path)
    done = orch("build", str(recipe), "--build-executor", "processes:2", env=env)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "results.db") as db:
        lineages = [json.loads(row[0]) for row in db.execute("SELECT lineage FROM variants")]
    assert len(lineages) == 8  # 2 ratios x 2 fine-tune lengths x (fp32, int8)
    # Every step ran in a worker process, which its lineage record names (an inline step has no worker).
    workers = {step["worker"]["pid"] for lineage in lineages for step in lineage}
    assert workers and os.getpid() not in workers
    one_line_error(orch("sweep", str(recipe), env={**env, "ORCH_BUILD_EXECUTOR": "threads:4"}),
                   "--build-executor 'threads:4'", "processes:N")
