"""Latency of an artifact on a runtime: batch 1, after a warm-up, median and p90 over many runs.

Device side: numpy and the runtime only, never torch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class BenchRow:
    """One measurement: an artifact on a runtime at a thread count."""

    artifact: str
    runtime: str
    threads: int
    size_bytes: int
    p50_ms: float
    p90_ms: float
    mean_ms: float
    iterations: int


def bench(path: str | Path, *, runtime: str | None = None, threads: int = 1, warmup: int = 20,
          iterations: int = 200, sample: np.ndarray | None = None) -> BenchRow:
    """Time single-sample inference of ``path``.

    Args:
        path: an .onnx or .tflite artifact.
        runtime: a name from ``edgekit.runtime.RUNTIMES``; None picks the first installed for the format.
        threads: the runtime's intra-op thread count.
        warmup: untimed runs first (allocations, caches, lazy kernel selection).
        iterations: timed runs.
        sample: one input (1, ...); a seeded normal tensor of the model's input shape when None.

    Returns:
        A BenchRow with p50/p90/mean milliseconds and the file size.

    Example:
        >>> bench("model_int8.onnx", threads=1).p50_ms
        0.104
    """
    from edgekit.runtime import open_session

    path = Path(path)
    session = open_session(path, runtime=runtime, threads=threads)
    if sample is None:
        shape = [1 if (d is None or not isinstance(d, int) or d <= 0) else d for d in session.input_shape]
        shape[0] = 1
        sample = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    sample = sample[:1]
    for _ in range(warmup):
        session.run(sample)
    times = np.empty(iterations)
    for i in range(iterations):
        t0 = time.perf_counter()
        session.run(sample)
        times[i] = time.perf_counter() - t0
    times *= 1e3
    return BenchRow(artifact=str(path), runtime=session.runtime, threads=threads, size_bytes=os.path.getsize(path),
                    p50_ms=float(np.median(times)), p90_ms=float(np.percentile(times, 90)),
                    mean_ms=float(times.mean()), iterations=iterations)
