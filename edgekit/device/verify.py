"""Parity of an artifact against a reference, measured on held-out data.

fp32 artifacts are judged elementwise (max abs diff of logits); int8 and fp16 by task numbers
(accuracy, top-1 agreement) on the real held-out split, never on random inputs alone. The
accuracy budget compares every artifact with the dense fp32 model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ParityReport:
    """Numbers comparing candidate outputs with reference outputs on the same inputs."""

    samples: int
    accuracy: float | None  # of the candidate, when labels are known
    reference_accuracy: float | None
    top1_agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float

    @property
    def accuracy_drop(self) -> float | None:
        if self.accuracy is None or self.reference_accuracy is None:
            return None
        return self.reference_accuracy - self.accuracy


def parity(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None) -> ParityReport:
    """Compare two (N, classes) output arrays.

    Args:
        reference: outputs of the reference model (PyTorch) on the held-out inputs.
        candidate: outputs of the artifact on the same inputs.
        labels: the true classes, or None (agreement is then the metric).

    Returns:
        A ParityReport.

    Raises:
        ValueError: when the shapes differ.

    Example:
        >>> parity(torch_logits, onnx_logits, y_test).top1_agreement
        0.998
    """
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"output shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    diff = np.abs(reference - candidate)
    r, c = reference.reshape(len(reference), -1), candidate.reshape(len(candidate), -1)
    denom = np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1)
    cos = np.sum(r * c, axis=1) / np.where(denom == 0, 1, denom)
    acc = ref_acc = None
    if labels is not None:
        acc = float((candidate.argmax(1) == labels).mean())
        ref_acc = float((reference.argmax(1) == labels).mean())
    return ParityReport(
        samples=len(reference), accuracy=acc, reference_accuracy=ref_acc,
        top1_agreement=float((reference.argmax(1) == candidate.argmax(1)).mean()),
        max_abs_diff=float(diff.max()) if diff.size else 0.0, mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        cosine=float(cos.mean()) if cos.size else 1.0,
    )


@dataclass(frozen=True)
class Verdict:
    """The budget gate's decision for one artifact."""

    name: str
    passed: bool
    reason: str


def judge(name: str, precision: str, report: ParityReport, *, baseline_accuracy: float, budget: float,
          fp32_tolerance: float) -> Verdict:
    """Apply the accuracy budget (vs the dense fp32 model) and, for fp32, the elementwise tolerance."""
    problems = []
    if report.accuracy is not None:
        drop = baseline_accuracy - report.accuracy
        if drop > budget + 1e-12:
            problems.append(f"accuracy {report.accuracy:.4f} is {drop * 100:.2f} points below the fp32 model's "
                            f"{baseline_accuracy:.4f} (budget {budget * 100:.2f})")
    if precision == "fp32" and report.max_abs_diff > fp32_tolerance:
        problems.append(f"max abs diff {report.max_abs_diff:.2e} exceeds the fp32 tolerance {fp32_tolerance:.0e}")
    return Verdict(name, not problems, "; ".join(problems) or "within budget")


def check_artifacts(artifacts, x: np.ndarray, y: np.ndarray | None, reference_of, judge_one, log=print) -> list[dict]:
    """Run each artifact on ``x`` on every installed runtime, compare with its reference and judge it.

    The loop that ``edgekit run`` and ``edgekit compress`` share; they differ only in the gate.

    Args:
        artifacts: edgekit.device.artifact.Artifact objects (files on disk).
        reference_of: ``reference_of(artifact)`` -> the reference outputs on ``x`` it must match.
        judge_one: ``judge_one(artifact, report)`` -> (passed, reason) for one runtime's ParityReport.

    Returns:
        One results.json entry per artifact (parity per runtime, the verdict, an empty ``latency`` for bench).

    Raises:
        CheckFailed: no runtime is installed for an artifact's format.
    """
    from dataclasses import asdict

    from edgekit import rundir
    from edgekit.device.runtime import open_session, runtimes_for
    from edgekit.errors import CheckFailed

    entries = []
    for art in artifacts:
        runtimes = runtimes_for(art.path)
        if not runtimes:
            raise CheckFailed(f"{art.path}: no runtime installed for {art.format}")
        per_runtime = {rt: parity(reference_of(art), open_session(art.path, runtime=rt, threads=2).run(x), y)
                       for rt in runtimes}
        first = per_runtime[runtimes[0]]
        problems = []
        for rt, rep in per_runtime.items():
            ok, reason = judge_one(art, rep)
            if not ok:
                problems.append(f"{rt}: {reason}")
        log(f"verified {art.name}: "
            + (f"accuracy {first.accuracy:.4f}, " if first.accuracy is not None else "")
            + f"agreement {first.top1_agreement:.4f}, max abs diff {first.max_abs_diff:.2e} -> "
            + (f"FAILED: {'; '.join(problems)}" if problems else "ok"))
        entries.append({
            "name": art.name, "role": art.role, "path": str(art.path), "format": art.format,
            "precision": art.precision, "size_bytes": art.path.stat().st_size, "sha256": rundir.sha256(art.path),
            "accuracy": first.accuracy, "top1_agreement": first.top1_agreement,
            "max_abs_diff": first.max_abs_diff, "mean_abs_diff": first.mean_abs_diff, "cosine": first.cosine,
            "parity": {rt: asdict(rep) for rt, rep in per_runtime.items()},
            "passed": not problems, "verdict": "; ".join(problems) or "within budget", "latency": {},
        })
    return entries


def verify_artifacts(paths: list[str], *, reference: str | None = None, data: str | None = None,
                     arrays: tuple[np.ndarray, np.ndarray | None] | None = None, budget: float = 0.01,
                     limit: int | None = None) -> list[tuple[str, ParityReport, str]]:
    """Run artifacts (and an optional reference artifact) on labelled data; judge each against the budget.

    Device side: needs a runtime and numpy, not torch. The host's ``edgekit verify --recipe`` loads the
    recipe's held-out split itself and passes it as ``arrays``.

    Args:
        paths: .onnx / .tflite files.
        reference: an artifact whose outputs are the reference; without it, outputs are compared with themselves
            and only accuracy means something.
        data: an .npz with ``x`` (pre-processed float32 inputs) and optionally ``y`` (int labels).
        arrays: ``(x, y)`` already in memory (``y`` may be None), instead of ``data``.
        budget: allowed accuracy drop against the reference.
        limit: at most this many samples.

    Returns:
        (path, ParityReport, verdict) per artifact; verdict is "ok" or the reason it failed.

    Raises:
        ConfigError: neither or both of ``data`` and ``arrays``.
        DataError: unreadable data or artifacts.
    """
    from pathlib import Path

    from edgekit.device.runtime import open_session
    from edgekit.errors import ConfigError

    if (data is None) == (arrays is None):
        raise ConfigError("verify needs exactly one of --data FILE.npz or --recipe RECIPE")
    if arrays is not None:
        x, y = arrays
    else:
        x, y = _read_inputs(Path(data))
    if limit:
        x, y = x[:limit], (y[:limit] if y is not None else None)
    ref_out = open_session(reference).run(x) if reference else None
    out = []
    for p in paths:
        cand = open_session(p).run(x)
        rep = parity(ref_out if ref_out is not None else cand, cand, y)
        drop = rep.accuracy_drop
        verdict = "ok"
        if ref_out is not None and drop is not None and drop > budget + 1e-12:
            verdict = f"accuracy {drop * 100:.2f} points below the reference (budget {budget * 100:.2f})"
        elif ref_out is not None and y is None and 1 - rep.top1_agreement > budget + 1e-12:
            verdict = f"top-1 agreement {rep.top1_agreement:.4f} below {1 - budget:.4f}"
        out.append((p, rep, verdict))
    return out


def _read_inputs(path) -> tuple[np.ndarray, np.ndarray | None]:
    """Model inputs (and labels) from a file: an ``.npz`` with ``x`` (and ``y``), or an ``.npy`` of inputs alone.

    Never unpickles (edgekit.device.arrays): a data file from elsewhere cannot run code.

    Raises:
        DataError: missing, unreadable, or not holding numeric inputs, in one line.
    """
    from edgekit.device.arrays import read_arrays
    from edgekit.errors import DataError

    loaded = read_arrays(path)
    if isinstance(loaded, np.ndarray):
        x, y = loaded, None
    else:
        if "x" not in loaded:
            raise DataError(f"{path}: holds {', '.join(loaded) or 'no arrays'}; verify reads the inputs from "
                            "an array named x (and labels from y)")
        x, y = loaded["x"], loaded.get("y")
    if x.dtype.kind not in "fiub" or x.ndim < 1 or len(x) == 0:
        raise DataError(f"{path}: x must be a non-empty numeric array, got {x.dtype} of shape {x.shape}")
    if y is not None and (y.dtype.kind not in "iub" or y.ndim != 1 or y.shape[:1] != x.shape[:1]):
        raise DataError(f"{path}: y must hold one integer label per sample of x ({len(x)}), got {y.dtype} {y.shape}")
    return x.astype(np.float32), (y.astype(np.int64) if y is not None else None)
