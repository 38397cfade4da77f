"""Running the detection pipeline over a source, sequential or pipelined, timing every stage of every frame.

  sequential  one loop calls the six stages (agent/pipeline/stages.py) in order, frame after frame
  pipelined   one thread per stage, a queue.Queue(maxsize=queue_size) between two stages and an end marker after
              the last frame; the caller's thread takes the finished frames. A file source waits for room in the
              first queue, so every frame is processed; a live source (a camera) never waits: a frame that finds
              the first queue full is dropped and counted. An exception in any stage halts every thread and is
              raised in the caller as StageError naming the stage; so does `stop`, without an error. Frames in
              flight when a run halts are neither processed nor dropped.

Each frame carries perf_counter_ns stamps of each stage's start and end. Its latency runs from the start of its
read to the end of its encode, and is exactly its six stage times plus its `queued` time (between one stage's end
and the next one's start: waiting in a queue or for a thread; next to nothing in sequential mode). The figures
of a run are the `pipeline` part of a result (Figures.summary).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from agent.detection.decoders import DetectionSpec
from agent.pipeline import stages
from agent.pipeline.figures import Figures, FrameOut, Work
from agent.pipeline.sources import FrameSource, PipelineError, open_source
from agent.pipeline.stages import STAGES
from agent.preprocess import Preprocess
from agent.spec import PipelineSpec

POLL_S = 0.05  # how often a waiting thread looks for a halt: the promptness of `stop`
END = object()  # follows the last frame through the queues


class StageError(PipelineError):
    """A stage that failed on a frame; the message names the stage (stage infer: ...), on one line."""

    def __init__(self, stage: str, cause: BaseException):
        what = str(cause) if isinstance(cause, PipelineError) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"stage {stage}: {' '.join(what.split())}")
        self.stage = stage


class BoundStages:
    """The stage functions bound to one run's session, spec and source, each filling in a Work; both modes run
    frames through `run`."""

    def __init__(self, session: Any, spec: PipelineSpec, source: FrameSource):
        self.source = source
        self.config = Preprocess(**spec.preprocess)
        self.detection = DetectionSpec.from_dict(spec.detection)
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_names = [output.name for output in session.get_outputs()]
        self.labels = spec.labels
        self.jpeg_quality = spec.jpeg_quality
        self.rate = stages.RateMeter()
        self.steps: List[Callable[[Work], None]] = [self.read, self.preprocess, self.infer, self.postprocess,
                                                     self.draw, self.encode]

    def run(self, position: int, work: Work) -> None:
        """Stage number `position` on `work`, stamped; a failure comes out as StageError naming the stage."""
        started = time.perf_counter_ns()
        try:
            self.steps[position](work)
        except Exception as exc:
            raise StageError(STAGES[position], exc) from exc
        work.stamps_ns[2 * position] = started
        work.stamps_ns[2 * position + 1] = time.perf_counter_ns()

    def read(self, work: Work) -> None:
        frame = stages.read(self.source)
        if frame is not None:
            work.index, work.pixels = frame

    def preprocess(self, work: Work) -> None:
        work.model_input, work.placement = stages.preprocess(self.config, work.pixels)

    def infer(self, work: Work) -> None:
        work.outputs = stages.infer(self.session, self.input_name, work.model_input)

    def postprocess(self, work: Work) -> None:
        height, width = self.config.size
        work.detections = stages.postprocess(work.outputs, self.output_names, self.detection, (height, width),
                                             work.placement)

    def draw(self, work: Work) -> None:
        work.fps = self.rate.tick(time.perf_counter_ns())
        work.annotated = stages.draw(work.pixels, work.detections, self.labels, work.fps)

    def encode(self, work: Work) -> None:
        work.jpeg = stages.encode(work.annotated, self.jpeg_quality)


def run_pipeline(session: Any, spec: PipelineSpec, cache_dir: str,
                 on_frame: Optional[Callable[[FrameOut], None]] = None,
                 stop: Optional[threading.Event] = None) -> Dict[str, Any]:
    """Run `spec`'s pipeline with `session` over its source (files in `cache_dir`) and return the result's
    `pipeline` figures. on_frame is called with each finished frame, in order; `stop` ends the run early.
    SourceError when the source cannot be opened, StageError when a stage fails."""
    stages.require_pillow()
    source = open_source(spec.source, cache_dir, loop=spec.loop)
    try:
        bound = BoundStages(session, spec, source)
        figures = Figures(spec)
        stop = stop or threading.Event()
        cpu_before, wall_before = os.times(), time.perf_counter()
        if spec.mode == "sequential":
            dropped = _sequential(bound, figures, spec.frames, stop, on_frame)
        else:
            dropped = _Pipelined(bound, spec.queue_size, stop).run(figures, spec.frames, on_frame)
        cpu_after, wall_after = os.times(), time.perf_counter()
    finally:
        source.close()
    cpu_s = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return figures.summary(spec.mode, source, dropped, 100.0 * cpu_s / max(wall_after - wall_before, 1e-9))


def _sequential(bound: BoundStages, figures: Figures, limit: Optional[int], stop: threading.Event,
                on_frame: Optional[Callable[[FrameOut], None]]) -> int:
    """Frames through the stages one after the other, in this thread; no frame is ever dropped."""
    while (limit is None or figures.frames < limit) and not stop.is_set():
        work = Work()
        bound.run(0, work)
        if work.pixels is None:
            break
        for position in range(1, len(STAGES)):
            bound.run(position, work)
        finished = figures.add(work)
        if on_frame is not None:
            on_frame(finished)
    return 0


class _Pipelined:
    """One thread per stage and bounded queues between them; the caller's thread collects the finished frames."""

    def __init__(self, bound: BoundStages, queue_size: int, stop: threading.Event):
        self.bound = bound
        self.outboxes: List[queue.Queue] = [queue.Queue(maxsize=queue_size) for _ in STAGES]  # each stage's output
        self.stop = stop
        self.halt = threading.Event()
        self.failure: Optional[BaseException] = None
        self._failure_lock = threading.Lock()
        self.dropped = 0

    def run(self, figures: Figures, limit: Optional[int], on_frame: Optional[Callable[[FrameOut], None]]) -> int:
        """Process frames until the source ends, `limit` frames, `stop` or a failure (raised here); frames dropped."""
        threads = [threading.Thread(target=self._guarded, args=(self._read, limit), name="pipeline-read",
                                    daemon=True)]
        threads += [threading.Thread(target=self._guarded, args=(self._stage, position),
                                     name=f"pipeline-{STAGES[position]}", daemon=True)
                    for position in range(1, len(STAGES))]
        for thread in threads:
            thread.start()
        try:
            while True:
                work = self._get(self.outboxes[-1])
                if work is None or work is END:
                    break
                finished = figures.add(work)
                if on_frame is not None:
                    on_frame(finished)
        finally:
            self.halt.set()
            for thread in threads:
                thread.join()
        if self.failure is not None:
            raise self.failure
        return self.dropped

    def _guarded(self, body: Callable[[int], None], argument: Any) -> None:
        try:
            body(argument)
        except Exception as exc:  # handed to the caller's thread, which raises it
            with self._failure_lock:
                if self.failure is None:  # the first failure is the cause; others follow from the halt
                    self.failure = exc
            self.halt.set()

    def _read(self, limit: Optional[int]) -> None:
        taken = 0
        outbox = self.outboxes[0]
        while (limit is None or taken < limit) and not self._halted():
            work = Work()
            self.bound.run(0, work)
            if work.pixels is None:
                break
            if self.bound.source.live:
                try:
                    outbox.put_nowait(work)
                except queue.Full:
                    self.dropped += 1
                    continue
            elif not self._put(outbox, work):
                return
            taken += 1
        self._put(outbox, END)

    def _stage(self, position: int) -> None:
        inbox, outbox = self.outboxes[position - 1], self.outboxes[position]
        while True:
            work = self._get(inbox)
            if work is None:
                return
            if work is not END:
                self.bound.run(position, work)
            if not self._put(outbox, work) or work is END:
                return

    def _halted(self) -> bool:
        return self.halt.is_set() or self.stop.is_set()

    def _get(self, inbox: queue.Queue) -> Any:
        """The next item of `inbox`; None once the run halts."""
        while not self._halted():
            try:
                return inbox.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return None

    def _put(self, outbox: queue.Queue, item: Any) -> bool:
        """Put `item` in `outbox` when there is room; False (not put) once the run halts."""
        while not self._halted():
            try:
                outbox.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False
