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


def noise_sample(session) -> np.ndarray:
    """One seeded normal input of the session's shape, batch 1 (dynamic dimensions taken as 1)."""
    shape = [1] + [d if isinstance(d, int) and d > 0 else 1 for d in list(session.input_shape)[1:]]
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def bench(path: str | Path, *, runtime: str | None = None, threads: int = 1, warmup: int = 20,
          iterations: int = 200, sample: np.ndarray | None = None) -> BenchRow:
    """Time single-sample inference of ``path``.

    Args:
        path: an .onnx or .tflite artifact.
        runtime: a name from ``edgekit.device.runtime.RUNTIMES``; None picks the first installed for the format.
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
    from edgekit.device.runtime import open_session

    path = Path(path)
    session = open_session(path, runtime=runtime, threads=threads)
    sample = noise_sample(session) if sample is None else sample[:1]
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


def compare(paths: dict[str, tuple[str | Path, str]], *, threads: int = 1, rounds: int = 10, iterations: int = 50,
            warmup: int = 20, sample: np.ndarray | None = None) -> dict[str, dict]:
    """Time several artifacts side by side, interleaved round by round, so machine noise hits all alike.

    Args:
        paths: label → (artifact path, runtime name).
        threads: intra-op threads for every session.
        rounds: each round times every artifact ``iterations`` times, in turn.
        warmup: untimed runs per artifact before the first round.
        sample: one input shared by all (they must take the same shape); seeded noise by default.

    Returns:
        label → {"p50_ms", "p90_ms", "size_bytes", "runtime"}.
    """
    from edgekit.device.runtime import open_session

    sessions = {k: open_session(p, runtime=rt, threads=threads) for k, (p, rt) in paths.items()}
    samples = {}
    for k, s in sessions.items():
        samples[k] = noise_sample(s) if sample is None else sample[:1]
        for _ in range(warmup):
            s.run(samples[k])
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            x = samples[k]
            for _ in range(iterations):
                t0 = time.perf_counter()
                s.run(x)
                times[k].append(time.perf_counter() - t0)
    out = {}
    for k, t in times.items():
        ms = np.asarray(t) * 1e3
        out[k] = {"p50_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
                  "size_bytes": os.path.getsize(paths[k][0]), "runtime": sessions[k].runtime}
    return out
