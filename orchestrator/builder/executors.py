"""Build executors: where a recipe's build steps run. The lineage graph and the cache decide what runs
(builder/dispatch.py); an executor only decides where.

    inline            here, one step after the other (the default; exactly the builder's own loop)
    processes[:N]     N local worker processes (spawned; default: one per core)
    ray               a Ray cluster: RAY_ADDRESS's, else a new one on this machine
    ray:HOST:PORT     the Ray cluster whose head (GCS) listens there; this machine is one of its nodes
    ray://HOST:PORT   a remote Ray cluster through its Ray Client server (`pip install 'ray[client]'`)

Picked per run by `--build-executor` or ORCH_BUILD_EXECUTOR (`parse_executor`). Every remote step gets torch
threads so the workers on a machine do not oversubscribe its cores: processes:N gives each cores // N threads;
a Ray task declares `threads` CPUs and uses as many. Ray retries a step whose worker was lost (`retries`).
Ray pickles and has no authentication: its port is a trust boundary (docs/security.md).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import socket
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from orchestrator.builder.remote import Shipment, StepDone, StepJob, run_on_worker
from orchestrator.errors import ClusterUnreachable, ExecutorError, first_line

ENVIRONMENT = "ORCH_BUILD_EXECUTOR"
FORMS = "inline, processes, processes:N, ray, ray:HOST:PORT or ray://HOST:PORT"
INSTALL_RAY = "pip install 'orch[ray]'"
CONNECT_TIMEOUT_S = 10.0


@dataclass
class InlineExecutor:
    """Steps run here, one after the other: the builder's own loop, unchanged."""

    name: str = "inline"


class ProcessExecutor:
    """Steps run in `workers` spawned local processes, each with `threads` torch threads (default: cores // workers,
    at least 1)."""

    def __init__(self, workers: int, threads: int | None = None):
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self.name = f"processes:{workers}"
        self._pool: ProcessPoolExecutor | None = None

    def open(self, shipment: Callable[[], Shipment]) -> None:
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_adopt_shipment, initargs=(shipment(),))

    def submit(self, job: StepJob) -> Future[StepDone]:
        if self._pool is None:
            raise RuntimeError("ProcessExecutor.submit before open")
        return self._pool.submit(_run_in_process, job, self.threads)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


_SHIPMENT: Shipment | None = None  # a process worker's copy of the build's data, received once


def _adopt_shipment(shipment: Shipment) -> None:
    global _SHIPMENT
    _SHIPMENT = shipment


def _run_in_process(job: StepJob, threads: int) -> StepDone:
    if _SHIPMENT is None:
        raise RuntimeError("a process worker without the build's data")
    return run_on_worker(_SHIPMENT, job, threads)


class RayExecutor:
    """Steps run as Ray tasks declaring `threads` CPUs each (and no GPU: no recipe asks for one), retried by Ray
    up to `retries` times when their worker is lost. `address`: None (RAY_ADDRESS, else a new local cluster), a
    head's HOST:PORT, or ray://HOST:PORT."""

    def __init__(self, address: str | None, threads: int = 1, retries: int = 3,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S):
        self.address, self.threads, self.retries = address, threads, retries
        self.connect_timeout_s = connect_timeout_s
        self.name = "ray" if address is None else f"ray:{address}" if "://" not in address else address
        self._connected_here = False
        self._task: Any = None
        self._shipment: Any = None

    def open(self, shipment: Callable[[], Shipment]) -> None:
        ray = import_ray()
        self.connect(ray)  # first: the cluster starts this driver's workers while the data is read
        self._shipment = ray.put(shipment())
        self._task = ray.remote(run_on_ray).options(num_cpus=self.threads, num_gpus=0, max_retries=self.retries,
                                                   retry_exceptions=False)

    def submit(self, job: StepJob) -> Future[StepDone]:
        return self._task.remote(self._shipment, job, self.threads).future()

    def connect(self, ray: Any) -> None:
        """Join the cluster (unless this process already has): one clear line when it cannot be reached."""
        if ray.is_initialized():
            return
        named = self.address or os.environ.get("RAY_ADDRESS")
        if named and named not in ("auto", "local"):
            probe(named, self.connect_timeout_s)
        try:
            ray.init(address=self.address, log_to_driver=False, logging_level="ERROR")
        except Exception as exc:  # Ray raises several kinds (ConnectionError, RuntimeError, ...): one line
            raise ClusterUnreachable(f"{self.name}: cannot join the Ray cluster: {first_line(exc)}") from exc
        self._connected_here = True

    def close(self) -> None:
        self._task = self._shipment = None
        if self._connected_here:
            import_ray().shutdown()
            self._connected_here = False


def run_on_ray(shipment: Shipment, job: StepJob, threads: int) -> StepDone:
    """The Ray task: one step, its record naming the Ray node that ran it."""
    import ray

    return run_on_worker(shipment, job, threads, node=ray.get_runtime_context().get_node_id())


def import_ray() -> Any:
    """The ray package, or one line saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ExecutorError(f"the ray build executor needs Ray, which is not installed: {INSTALL_RAY}") from exc
    return ray


def probe(address: str, timeout_s: float) -> None:
    """Fail with one line, within `timeout_s`, when nothing listens at a cluster's HOST:PORT."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        raise ClusterUnreachable(f"ray cluster at {address} is unreachable ({first_line(exc)}): is its head "
                                 "running (`ray start --head`) and this workstation allowed to reach its port?") \
            from exc


# What parse_executor returns and build_recipe takes (the last two are builder/dispatch.py Executors).
BuildExecutor = InlineExecutor | ProcessExecutor | RayExecutor
_PROCESSES = re.compile(r"processes(?::(\d+))?")
_RAY = re.compile(r"ray(?::(?P<head>[^/:]+:\d+)|(?P<client>://[^/]+:\d+))?")


def parse_executor(text: str | None = None) -> BuildExecutor:
    """The executor `text` names (None: ORCH_BUILD_EXECUTOR's, else inline); a bad value is a one-line
    ExecutorError listing the accepted forms; asking for Ray without it installed says how to install it."""
    source = "--build-executor"
    if text is None:
        text, source = os.environ.get(ENVIRONMENT) or "inline", ENVIRONMENT
    value = text.strip()
    if value == "inline":
        return InlineExecutor()
    processes = _PROCESSES.fullmatch(value)
    if processes:
        workers = int(processes.group(1) or os.cpu_count() or 1)
        if workers < 1:
            raise ExecutorError(f"{source} {text!r}: processes:N needs N >= 1")
        return ProcessExecutor(workers)
    ray_form = _RAY.fullmatch(value)
    if ray_form:
        import_ray()
        address = ray_form.group("head") or (f"ray{ray_form.group('client')}" if ray_form.group("client") else None)
        return RayExecutor(address)
    raise ExecutorError(f"{source} {text!r}: not a build executor; expected one of {FORMS}")
