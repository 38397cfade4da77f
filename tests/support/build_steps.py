"""Test-only build steps (registered in STEPS by the tests that use them; a Ray worker imports this module by name).

`fails_here` always fails (BuildError). `traced_copy` records every attempt at it (pid, uid) in a file under
params["trace"], sleeps params["seconds"], and passes its parent's ONNX file on unchanged: a test can see which
process runs it and kill it mid-step.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from orchestrator.builder import STEPS, OnnxNode
from orchestrator.errors import BuildError


class TracedCopy:
    name = "traced_copy"
    version = "1"
    produces = "onnx"

    def run(self, ctx: Any, parent: OnnxNode, params: dict[str, Any]) -> OnnxNode:
        trace = Path(params["trace"]) / "attempts"
        with trace.open("a") as out:
            out.write(f"{os.getpid()} {os.getuid()}\n")
        time.sleep(params["seconds"])
        data = ctx.store.path(parent.sha256, ".onnx").read_bytes()
        return OnnxNode(ctx.store.put(data, ".onnx"), {})


class FailsHere:
    name = "fails_here"
    version = "1"
    produces = "onnx"

    def run(self, ctx: Any, parent: OnnxNode, params: dict[str, Any]) -> OnnxNode:
        raise BuildError("this step always fails\nand says more on its next lines")


def register() -> None:
    """Put the test steps in STEPS (once per process)."""
    for step in (TracedCopy(), FailsHere()):
        if step.name not in STEPS:
            STEPS.register(step.name)(step)
