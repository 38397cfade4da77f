"""A streaming sweep's build: the recipe is built in a thread of its own, and each variant is posted to the sweep's
thread as soon as it is built (or has failed), so boards measure while the rest builds (lab/sweep.py
StreamingSweep queues its jobs and records everything: the build thread writes nothing).

What every job needs besides its variant (the evaluation set, a pipeline's source) comes from the recipe and the
data, not from the variants: it is worked out in the build thread when the first variant is built, before that
variant is posted, so a recipe error about it is raised before any job runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.builder.pipeline import BuildObserver, BuiltVariant, FailedVariant


@dataclass
class BuildBegan:
    """The build has its plan: `total` variants to build (or take from the cache)."""

    total: int


@dataclass
class VariantReady:
    """A variant built, with what its jobs need: the evaluation set's sha256 and the pipeline source (or None)."""

    variant: BuiltVariant
    evaluation: str | None
    source: dict[str, Any] | None


@dataclass
class VariantUnbuilt:
    """A variant whose build failed (never fatal to the others)."""

    failure: FailedVariant


@dataclass
class BuildEnded:
    """The build is over: every variant was posted, or `error` ended it (the sweep raises it)."""

    error: BaseException | None = None


BuildEvent = BuildBegan | VariantReady | VariantUnbuilt | BuildEnded
# prepare(first built variant) -> (evaluation set sha256, pipeline source) for every job of the sweep.
Prepare = Callable[[BuiltVariant], tuple[str | None, dict[str, Any] | None]]


class BuildCancelled(Exception):
    """The sweep stopped (an interrupt, an error) while its build ran: the build ends at its next variant."""


class PostingBuild:
    """The build observer in the build thread: posts each variant to the sweep's thread (see the module
    docstring); once `cancelled` is set, the next variant ends the build instead."""

    def __init__(self, post: Callable[[BuildEvent], None], prepare: Prepare, cancelled: threading.Event):
        self.post, self.prepare, self.cancelled = post, prepare, cancelled
        self.prepared: tuple[str | None, dict[str, Any] | None] | None = None

    def build_started(self, total: int) -> None:
        self.post(BuildBegan(total))

    def variant_built(self, variant: BuiltVariant) -> None:
        self._go_on()
        if self.prepared is None:
            self.prepared = self.prepare(variant)
        self.post(VariantReady(variant, *self.prepared))

    def variant_failed(self, variant: FailedVariant) -> None:
        self._go_on()
        self.post(VariantUnbuilt(variant))

    def _go_on(self) -> None:
        if self.cancelled.is_set():
            raise BuildCancelled


class BuildThread(threading.Thread):
    """Runs `build(observer)` (a build_recipe call) and posts BuildEnded when it returns or raises.

    A daemon thread: an interrupted sweep does not wait for a build step to finish (the CLI exits; a library
    caller's build stops at its next variant, see PostingBuild).
    """

    def __init__(self, build: Callable[[BuildObserver], object], observer: PostingBuild):
        super().__init__(name="sweep-build", daemon=True)
        self.build, self.observer = build, observer

    def run(self) -> None:
        try:
            self.build(self.observer)
        except BuildCancelled:
            self.observer.post(BuildEnded())
        except BaseException as exc:  # handed to the sweep's thread, which raises it there
            self.observer.post(BuildEnded(exc))
        else:
            self.observer.post(BuildEnded())
