"""Raw latency samples: the stored encoding and the quantile SQL function over it.

SQLite: `samples_quantile(latency_samples.data, q)` is registered on every connection orch opens
(create_function), so it works in `orch query` and in any Python code that opens the database with orch.
PostgreSQL: the samples are also stored as a real[] column, and migration 0002 creates
`samples_quantile(latency_samples.samples_ms, q)` as plain SQL (percentile_disc over unnest): no
plpython and no extension needed. Both take the nearest-rank quantile, as the agent's p50/p90/p99 do.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

SAMPLES_ENCODING = "zlib-float32le-ms"


def encode_samples(samples_ms: list[float]) -> bytes:
    return zlib.compress(np.asarray(samples_ms, dtype="<f4").tobytes())


def decode_samples(data: bytes) -> np.ndarray:
    return np.frombuffer(zlib.decompress(data), dtype="<f4")


def nearest_rank_quantile(values: np.ndarray, q: float) -> float:
    """The nearest-rank quantile (q in [0, 1]) of unsorted values: the smallest value with at least q of them <= it."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} is not in [0, 1]")
    ordered = np.sort(values)
    rank = max(1, math.ceil(q * len(ordered) - 1e-9))
    return float(ordered[rank - 1])


def samples_quantile(data: Any, q: Any) -> float | None:
    """SQL function samples_quantile(blob, q): NULL for a NULL or empty blob."""
    if data is None or q is None:
        return None
    values = decode_samples(bytes(data))
    if len(values) == 0:
        return None
    return nearest_rank_quantile(values, float(q))


def register_sqlite_functions(dbapi_connection: Any) -> None:
    """Make orch's SQL functions available on a sqlite3 connection."""
    dbapi_connection.create_function("samples_quantile", 2, samples_quantile, deterministic=True)
