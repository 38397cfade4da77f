"""The scheduler: one queue per board, boards in parallel, one job at a time per board.

A `BoardPool` may be fed while its boards work (a streaming sweep queues each
variant's jobs as soon as it is built): a board's worker starts with its first
jobs, waits while its queue is empty and still open, and ends when the pool is
closed and its queue is empty. `run_boards` is the pool for a fixed set of queues.

Each board has a worker thread that owns its transport and walks the board
through its lifecycle (BoardState). Workers never touch the database or the
screen: they post events, and the caller's thread handles them in order
(records results, draws progress), so each finished job is committed as soon as
it arrives and one writer does all the writing.

A transient fault (BoardUnreachable) closes the transport, waits (exponential
backoff) and tries again from a fresh connection, retrying the job that was
running; `attempts` faults in a row mark the board down, and its jobs not run
are handed back in its BoardFinished event. A final fault (a refused host key
or login, an agent that will not start, a lock held by another orchestrator)
marks it down at once. One board's fate never touches another's.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

from agent.result import error_result, parse_result
from orchestrator.errors import BoardFault, BoardUnreachable, HostKeyError, IllegalTransition
from orchestrator.fleet.devices import DeviceSpec


class BoardState(Enum):
    """Where a board is in a sweep."""

    UNKNOWN = "unknown"      # not contacted yet, or again after a fault
    REACHABLE = "reachable"  # SSH connection open (host key checked, logged in)
    DEPLOYED = "deployed"    # agent deployed and serving, board lock held: ready for a job
    BUSY = "busy"            # running a job
    FAILED = "failed"        # a fault; waiting to retry, or about to be marked down
    DOWN = "down"            # given up on for this sweep
    RELEASED = "released"    # done with: connection closed, lock released


ALLOWED_MOVES: dict[BoardState, frozenset[BoardState]] = {
    BoardState.UNKNOWN: frozenset({BoardState.REACHABLE, BoardState.FAILED, BoardState.RELEASED}),
    BoardState.REACHABLE: frozenset({BoardState.DEPLOYED, BoardState.FAILED, BoardState.RELEASED}),
    BoardState.DEPLOYED: frozenset({BoardState.BUSY, BoardState.FAILED, BoardState.RELEASED}),
    BoardState.BUSY: frozenset({BoardState.DEPLOYED, BoardState.FAILED, BoardState.RELEASED}),
    BoardState.FAILED: frozenset({BoardState.UNKNOWN, BoardState.DOWN, BoardState.RELEASED}),
    BoardState.DOWN: frozenset(),
    BoardState.RELEASED: frozenset(),
}


def transition(device: str, current: BoardState, target: BoardState) -> BoardState:
    """`target`, if a board may move there from `current`; else IllegalTransition."""
    if target not in ALLOWED_MOVES[current]:
        raise IllegalTransition(f"{device}: a board cannot go from {current.value} to {target.value}")
    return target


class Transport(Protocol):
    """What the scheduler needs of a way to reach one device's agent (local.py, transport.py)."""

    bytes_sent: int
    deploy_bytes_sent: int
    last_job_wall_s: float | None

    def connect(self) -> None: ...
    def start(self) -> None: ...
    def info(self) -> dict[str, Any]: ...
    def ensure_files(self, names: list[str]) -> int: ...
    def run(self, spec_json: str) -> str: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


# make_transport(device, on_note): a new, unopened transport; on_note tells what the board is doing.
TransportFactory = Callable[[DeviceSpec, Callable[[str], None]], Transport]
# admit(device, the board's agent info, job): why the board must not be sent this job (one line), or None.
Admission = Callable[[DeviceSpec, dict[str, Any], "QueuedJob[Any]"], "str | None"]


@dataclass(frozen=True)
class RetryPolicy:
    """attempts: faults in a row before a board is marked down; the n-th retry waits
    backoff_s * factor**(n-1), at most backoff_max_s."""

    attempts: int = 3
    backoff_s: float = 2.0
    factor: float = 2.0
    backoff_max_s: float = 30.0

    def delay_s(self, failures: int) -> float:
        return min(self.backoff_s * self.factor ** max(failures - 1, 0), self.backoff_max_s)


J = TypeVar("J")


@dataclass
class QueuedJob(Generic[J]):
    """A job as the scheduler carries it: the caller's own record of it (`job`, handed back in events), a label
    for progress notes, the agent spec and the artifact store files it needs."""

    job: J
    label: str
    spec_json: str
    files: list[str]


@dataclass
class BoardOutcome:
    """How a board's part of the sweep ended: `released` (all run) or `down` (reason says why)."""

    device: str
    state: BoardState = BoardState.UNKNOWN
    reason: str = ""
    jobs_run: int = 0
    faults: int = 0
    bytes_sent: int = 0
    deploy_bytes_sent: int = 0


@dataclass
class BoardChanged:
    device: DeviceSpec
    state: BoardState
    note: str = ""


@dataclass
class BoardReady:
    device: DeviceSpec
    info: dict[str, Any]


@dataclass
class JobStarted:
    item: QueuedJob


@dataclass
class JobFinished:
    """A job's result, with the orchestrator's wall time for it and the agent's wall time of its process."""

    item: QueuedJob
    result: dict[str, Any]
    wall_s: float
    agent_wall_s: float | None
    bytes_sent: int


@dataclass
class BoardFinished:
    device: DeviceSpec
    outcome: BoardOutcome
    not_run: list[QueuedJob] = field(default_factory=list)


@dataclass
class JobsNotRun:
    """Jobs queued on a board after it went down: never run (reason: why the board is down)."""

    device: DeviceSpec
    reason: str
    items: list[QueuedJob]


Event = BoardChanged | BoardReady | JobStarted | JobFinished | BoardFinished | JobsNotRun


class BoardQueue:
    """One board's jobs in order (thread-safe). The caller may add jobs while the board works, then closes the
    queue; the worker takes the head, removes it when done with it, and waits while the queue is empty and open."""

    def __init__(self, items: list[QueuedJob], closed: bool = True):
        self._items: deque[QueuedJob] = deque(items)
        self._closed, self._refusing = closed, False
        self._changed = threading.Condition()

    def add(self, items: list[QueuedJob]) -> bool:
        """Queue more jobs; False (nothing queued) once the board is done with for this sweep (down)."""
        with self._changed:
            if self._refusing:
                return False
            self._items.extend(items)
            self._changed.notify_all()
            return True

    def close(self) -> None:
        """No more jobs will come: the worker ends when the queue is empty."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def next(self, stop: threading.Event) -> QueuedJob | None:
        """The job at the head (left there until done()), once there is one; None when the queue is closed and
        empty, or `stop` is set."""
        with self._changed:
            while not self._items and not self._closed and not stop.is_set():
                self._changed.wait(0.2)
            return self._items[0] if self._items and not stop.is_set() else None

    def done(self) -> None:
        """The head job is finished (or refused): the next one is up."""
        with self._changed:
            self._items.popleft()

    def refuse_rest(self) -> list[QueuedJob]:
        """The jobs never run, taken out; from now on add() refuses jobs (the board is down)."""
        with self._changed:
            self._refusing = True
            rest, self._items = list(self._items), deque()
            return rest


class BoardWorker(threading.Thread):
    """Runs one board's queue (see the module docstring)."""

    def __init__(self, device: DeviceSpec, jobs: BoardQueue, make_transport: TransportFactory,
                 policy: RetryPolicy, events: queue.Queue[Any], stop: threading.Event,
                 admit: Admission | None = None):
        super().__init__(name=f"board-{device.name}", daemon=True)
        self.device, self.jobs, self.make_transport = device, jobs, make_transport
        self.policy, self.events, self.stop, self.admit = policy, events, stop, admit
        self.state = BoardState.UNKNOWN
        self.outcome = BoardOutcome(device.name)
        self.transport: Transport | None = None
        self.info: dict[str, Any] = {}

    def abort(self) -> None:
        """From another thread: end the running call now (the stop event is already set)."""
        transport = self.transport
        if transport is not None:
            transport.abort()

    def run(self) -> None:
        try:
            self._work()
        except Exception as exc:  # a bug in orch itself: this board goes down with the traceback, others go on
            self.outcome.reason = f"internal error: {exc!r}\n{traceback.format_exc()}"
            self._force(BoardState.DOWN)
        finally:
            self._close()
            if self.state is not BoardState.DOWN:
                self._move(BoardState.RELEASED)
            self.outcome.state = self.state
            not_run = self.jobs.refuse_rest() if self.state is BoardState.DOWN else []
            self.events.put(BoardFinished(self.device, self.outcome, not_run))

    def _work(self) -> None:
        failures = 0
        while (item := self.jobs.next(self.stop)) is not None:
            try:
                if self.transport is None:
                    self._open()
                refused = self.admit(self.device, self.info, item) if self.admit else None
                if refused:  # never sent: the board could not load it
                    self.jobs.done()
                    self.events.put(JobFinished(item, error_result(refused), 0.0, None, 0))
                    continue
                self._move(BoardState.BUSY, item.label)
                self.events.put(JobStarted(item))
                assert self.transport is not None
                started = time.perf_counter()
                sent = self.transport.ensure_files(item.files)
                result_json = self.transport.run(item.spec_json)
                wall_s = time.perf_counter() - started
                if self.stop.is_set():
                    return  # interrupted: a job killed under it is no measurement
                self.jobs.done()
                failures = 0
                self.outcome.jobs_run += 1
                self._move(BoardState.DEPLOYED)
                self.events.put(JobFinished(item, parse_result(result_json), wall_s,
                                            self.transport.last_job_wall_s, sent))
            except BoardUnreachable as exc:
                if self.stop.is_set():
                    return
                failures += 1
                self.outcome.faults += 1
                self.outcome.reason = f"{failures} fault{'s' if failures > 1 else ''} in a row, the last: {exc.detail}"
                self._close()
                if failures >= self.policy.attempts:
                    self._move(BoardState.FAILED, exc.detail)
                    self._move(BoardState.DOWN, self.outcome.reason)
                    return
                delay_s = self.policy.delay_s(failures)
                self._move(BoardState.FAILED, f"{exc.detail}; retry {failures} of {self.policy.attempts - 1} "
                                              f"in {delay_s:.1f} s")
                if self.stop.wait(delay_s):
                    return
                self._move(BoardState.UNKNOWN, f"retry {failures} of {self.policy.attempts - 1}")
            except (HostKeyError, BoardFault) as exc:
                self.outcome.faults += 1
                self.outcome.reason = exc.detail
                self._move(BoardState.FAILED, exc.detail)
                self._move(BoardState.DOWN, exc.detail)
                return

    def _open(self) -> None:
        transport = self.make_transport(self.device, lambda note: self._note(note))
        self.transport = transport
        transport.connect()
        self._move(BoardState.REACHABLE)
        transport.start()
        self._move(BoardState.DEPLOYED)
        self.info = transport.info()
        self.events.put(BoardReady(self.device, self.info))

    def _close(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            self.outcome.bytes_sent += transport.bytes_sent
            self.outcome.deploy_bytes_sent += transport.deploy_bytes_sent
            transport.close()

    def _move(self, target: BoardState, note: str = "") -> None:
        self.state = transition(self.device.name, self.state, target)
        self.events.put(BoardChanged(self.device, target, note))

    def _force(self, target: BoardState) -> None:
        """Down from anywhere, for a board whose worker hit a bug (the only move that skips the rules)."""
        self.state = target
        self.events.put(BoardChanged(self.device, target, self.outcome.reason.splitlines()[0]))

    def _note(self, note: str) -> None:
        self.events.put(BoardChanged(self.device, self.state, note))


class BoardPool:
    """Board workers that may be fed while they work (see the module docstring). The caller's thread adds jobs,
    posts its own events and runs the pool; `run` hands it every event in order, the boards' and its own."""

    def __init__(self, make_transport: TransportFactory, policy: RetryPolicy, admit: Admission | None = None):
        self.make_transport, self.policy, self.admit = make_transport, policy, admit
        self.events: queue.Queue[Any] = queue.Queue()
        self.stop = threading.Event()
        self.workers: dict[str, BoardWorker] = {}
        self.closed = False

    def add(self, device: DeviceSpec, items: list[QueuedJob]) -> None:
        """Queue jobs on a board, its worker started with its first jobs; jobs for a board already down come back
        as a JobsNotRun event. Nothing is queued once the pool is stopping."""
        if not items or self.stop.is_set():
            return
        worker = self.workers.get(device.name)
        if worker is None:
            worker = BoardWorker(device, BoardQueue(items, closed=self.closed), self.make_transport, self.policy,
                                 self.events, self.stop, self.admit)
            self.workers[device.name] = worker
            worker.start()
        elif not worker.jobs.add(items):
            self.events.put(JobsNotRun(device, worker.outcome.reason, items))

    def post(self, event: object) -> None:
        """From any thread: an event of the caller's own, handed to `run`'s handler in order with the boards'."""
        self.events.put(event)

    def close(self) -> None:
        """No more jobs for any board: `run` returns once every board has run its queue."""
        self.closed = True
        for worker in self.workers.values():
            worker.jobs.close()

    def run(self, handle: Callable[[Any], None]) -> dict[str, BoardOutcome]:
        """Call `handle` (in this thread) for each event, in order, until the pool is closed and every board
        done; each board's outcome by device name. On an interrupt (KeyboardInterrupt) every board is stopped and
        its running job killed; events that had already arrived are still handled before the interrupt
        propagates. Any other exception out of `handle` stops the boards too, and propagates."""
        outcomes: dict[str, BoardOutcome] = {}
        try:
            while not (self.closed and len(outcomes) == len(self.workers)):
                try:
                    event = self.events.get(timeout=0.2)
                except queue.Empty:
                    continue
                handle(event)
                if isinstance(event, BoardFinished):
                    outcomes[event.device.name] = event.outcome
        except KeyboardInterrupt:
            self._halt()
            self._drain(handle)  # keep whatever was measured before the interrupt
            raise
        except BaseException:
            self._halt()
            raise
        for worker in self.workers.values():
            worker.join()
        self._drain(handle)  # jobs refused by a board already down, queued after its last event
        return outcomes

    def _halt(self) -> None:
        self.stop.set()
        for worker in self.workers.values():
            worker.abort()
        for worker in self.workers.values():
            worker.join(timeout=10)

    def _drain(self, handle: Callable[[Any], None]) -> None:
        while True:
            try:
                handle(self.events.get_nowait())
            except queue.Empty:
                return


def run_boards(queues: list[tuple[DeviceSpec, list[QueuedJob]]], make_transport: TransportFactory,
               policy: RetryPolicy, handle: Callable[[Event], None],
               admit: Admission | None = None) -> dict[str, BoardOutcome]:
    """Run every board's queue in parallel, calling `handle` (in this thread) for each event, in order; a job
    `admit` refuses for its board (given the board's agent info) is finished with the reason, never sent.

    On an interrupt (KeyboardInterrupt) every board is stopped and its running job killed; results
    that had already arrived are still handled before the interrupt propagates.
    """
    pool = BoardPool(make_transport, policy, admit)
    pool.close()
    for device, items in queues:
        pool.add(device, items)
    return pool.run(handle)
