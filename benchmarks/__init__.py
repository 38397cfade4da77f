"""Measurements of orch itself. `make bench` runs them all; none of them runs in the test suite."""

from __future__ import annotations

from typing import Any


def cpu_session(data: bytes) -> Any:
    """An onnxruntime session on the CPU with one intra-op thread, run sequentially: what the benchmarks time."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
