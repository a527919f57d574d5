"""Judging a model with several outputs: the main output by the task metric, every other one by its error.

A stateful RNN exported for streaming returns its scores and its new state; a detector returns boxes and
scores. The first output is the main one: class scores (two or more values a sample) are judged by top-1
agreement with the original, or accuracy when the data has labels; a single probability by the decision at
0.5; anything else by its error. Every other output (a state, say) is judged by its relative RMS error against
the original's: sqrt(mean((got - ref)^2)) / std(ref), within ``tolerance`` for int8 and fp16 artifacts.
fp32 artifacts must match every output elementwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STATE_TOLERANCE = 0.1  # relative RMS error of the non-main outputs of an int8/fp16 artifact (20 dB SNR)
FP32_TOLERANCE = 1e-3  # max abs error of an fp32 artifact, as a fraction of each output's range


@dataclass(frozen=True)
class OutputReport:
    name: str
    kind: str  # "classes", "decision" or "values"
    max_abs_diff: float
    relative_rms: float
    agreement: float | None = None


@dataclass(frozen=True)
class OutputsReport:
    """Every output compared; ``accuracy``/``top1_agreement`` are those of the main output when it has them."""

    outputs: list[OutputReport]
    accuracy: float | None
    top1_agreement: float
    max_abs_diff: float
    samples: int
    mean_abs_diff: float = 0.0
    cosine: float = 1.0
    problems: list[str] = field(default_factory=list)


def kind_of(ref: np.ndarray) -> str:
    per = ref.reshape(len(ref), -1)
    if per.shape[1] >= 2:
        return "classes"
    if per.size and float(per.min()) >= 0.0 and float(per.max()) <= 1.0:
        return "decision"
    return "values"


def compare(reference: list[np.ndarray], got: list[np.ndarray], y: np.ndarray | None, *,
            names: list[str] | None = None) -> OutputsReport:
    """Numbers for each output of ``got`` against ``reference`` (lists of arrays, N samples stacked first)."""
    if len(reference) != len(got):
        raise ValueError(f"{len(got)} outputs against the original's {len(reference)}")
    names = names or [f"output {i}" for i in range(len(reference))]
    reports, accuracy, agreement = [], None, 1.0
    for i, (r, g) in enumerate(zip(reference, got, strict=True)):
        r, g = np.asarray(r, np.float64), np.asarray(g, np.float64)
        if r.shape != g.shape:
            raise ValueError(f"{names[i]}: shape {list(g.shape)} against the original's {list(r.shape)}")
        diff = np.abs(r - g)
        rel = float(np.sqrt(np.mean((r - g) ** 2)) / (r.std() + 1e-12)) if r.size else 0.0
        kind = kind_of(r) if i == 0 else "values"
        agree = None
        if kind == "classes":
            rr, gg = r.reshape(len(r), -1), g.reshape(len(g), -1)
            agree = float((rr.argmax(1) == gg.argmax(1)).mean())
            if y is not None:
                accuracy = float((gg.argmax(1) == y).mean())
        elif kind == "decision":
            agree = float(((r.reshape(len(r)) > 0.5) == (g.reshape(len(g)) > 0.5)).mean())
            if y is not None:
                accuracy = float(((g.reshape(len(g)) > 0.5).astype(np.int64) == y).mean())
        if i == 0 and agree is not None:
            agreement = agree
        reports.append(OutputReport(names[i], kind, float(diff.max()) if diff.size else 0.0, rel, agree))
    main = reports[0]
    return OutputsReport(reports, accuracy, agreement, max(o.max_abs_diff for o in reports), len(reference[0]),
                         float(np.mean([np.abs(np.asarray(r) - np.asarray(g)).mean() for r, g in
                                        zip(reference, got, strict=True)])), 1.0 - main.relative_rms)


def judge(rep: OutputsReport, reference: list[np.ndarray], *, precision: str, gate, tolerance: float = STATE_TOLERANCE
          ) -> tuple[bool, str]:
    """The gate for one artifact: fp32 elementwise on every output; otherwise the main output by the task metric
    (``gate``, a :class:`edgekit.compress.search.Gate`) and the others by relative RMS error."""
    problems = []
    if precision == "fp32":
        for o, r in zip(rep.outputs, reference, strict=True):
            limit = FP32_TOLERANCE * max(1.0, float(np.ptp(r)) if np.size(r) else 1.0)
            if o.max_abs_diff > limit:
                problems.append(f"{o.name}: max abs diff {o.max_abs_diff:.2e} (fp32 must match within {limit:.1e})")
        return (not problems), "; ".join(problems) or "every output matches"
    main, rest = rep.outputs[0], rep.outputs[1:]
    reasons = []
    if main.kind in ("classes", "decision"):
        ok, reason = gate.check(rep.accuracy, rep.top1_agreement)
        reasons.append(f"{main.name}: {reason}")
        if not ok:
            problems.append(reasons[-1])
    else:
        rest = rep.outputs
    for o in rest:
        line = f"{o.name}: relative RMS error {o.relative_rms:.3f} (at most {tolerance})"
        reasons.append(line)
        if not o.relative_rms <= tolerance:
            problems.append(line)
    return (not problems), "; ".join(problems) if problems else "; ".join(reasons)
