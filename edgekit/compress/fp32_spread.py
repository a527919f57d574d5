"""The model's own fp32 spread: how far its outputs move when the same inputs only run in another batch size.

An fp32 artifact must match the model it was exported from within 1e-3 of the output range. Most models stay
orders of magnitude inside that, and an export bug (a wrong epsilon, a missing bias) lands far outside it. A few
networks amplify float rounding itself: on timm's levit_128s with a fitted classifier, onnxruntime differed from
PyTorch by 0.39 on outputs of size 63 (6e-3 of the range) while the median sample differed by 3e-6 and top-1
agreed on every sample; PyTorch alone, running those same worst samples in one batch and then one at a time,
moved them by 0.16. A summation order changes those samples' logits; that is not an export error.

So when an fp32 artifact misses the elementwise tolerance, the samples where it differs most are run again
through the exported-from model, batched and one at a time, and the artifact passes when its largest difference
is within :data:`FACTOR` times the largest the model shows against itself there — like for like, on the same
samples. The spread and the factor are reported with the artifact; the metric gate (accuracy or agreement
within the budget) still applies on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SAMPLES = 32  # the samples where the artifact differs most: the spread is measured on them
FACTOR = 4.0  # an fp32 artifact may differ by this many times the model's own spread on those samples


@dataclass(frozen=True)
class Spread:
    """The exported-from model against itself on the ``samples`` where the artifact differs most."""

    samples: int
    model_diff: float  # max abs difference of the model's outputs, batched vs one sample at a time
    artifact_diff: float  # max abs difference of the artifact's outputs against the model's, on all samples

    @property
    def allowed(self) -> float:
        return FACTOR * self.model_diff

    @property
    def within(self) -> bool:
        return self.model_diff > 0 and self.artifact_diff <= self.allowed

    def text(self, runtime: str) -> str:
        verdict = "within" if self.within else "beyond"
        return (f"{runtime}: max abs diff {self.artifact_diff:.2e} is {verdict} {FACTOR:g}x the model's own fp32 "
                f"spread ({self.model_diff:.2e}: its {self.samples} most-differing samples run batched, then one "
                "at a time)")


def measure(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, reference: np.ndarray,
            got: np.ndarray) -> Spread:
    """The spread of ``run`` (the exported-from model, inputs -> outputs) on the :data:`SAMPLES` inputs of ``x``
    where ``got`` (the artifact's outputs) differs most from ``reference`` (the model's)."""
    per_sample = np.abs(np.asarray(got, np.float64) - np.asarray(reference, np.float64)).reshape(len(x), -1).max(1)
    worst = np.sort(np.argsort(-per_sample, kind="stable")[:SAMPLES])
    batched = np.asarray(run(x[worst]), np.float64)
    single = np.concatenate([np.asarray(run(x[i:i + 1]), np.float64) for i in worst])
    model_diff = float(np.abs(batched - single).max()) if batched.size else 0.0
    return Spread(samples=len(worst), model_diff=model_diff, artifact_diff=float(per_sample.max(initial=0.0)))
