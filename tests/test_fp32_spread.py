"""An fp32 artifact that misses elementwise parity passes only within a few times the model's own fp32 spread.

The spread is measured like for like: the samples the artifact differs most on, run through the exported-from
model batched and one at a time. A model that amplifies float rounding shows it there; an export error does not.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.compress import fp32_spread
from edgekit.compress.samples import Samples
from edgekit.compress.search import Gate
from edgekit.compress.verify_artifacts import verify

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

W = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)


def linear(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1) @ W


def wobbly(amount: float):
    """A model whose outputs move by ``amount`` when run one sample at a time (another summation order)."""
    return lambda x: linear(x) + (0.0 if len(x) > 1 else amount)


def test_a_difference_within_the_factor_of_the_models_own_spread_is_within():
    x = np.random.default_rng(1).normal(size=(100, 6)).astype(np.float32)
    got = linear(x)
    got[7] += 0.3
    s = fp32_spread.measure(wobbly(0.1), x, linear(x), got)
    assert s.within and s.model_diff == pytest.approx(0.1, rel=1e-4) and s.artifact_diff == pytest.approx(0.3, rel=1e-5)
    assert "within 4x the model's own fp32 spread" in s.text("onnxruntime")


def test_a_deterministic_model_gives_no_allowance_at_all():
    x = np.random.default_rng(1).normal(size=(100, 6)).astype(np.float32)
    got = linear(x)
    got[7] += 1e-4
    assert not fp32_spread.measure(linear, x, linear(x), got).within


def test_an_error_far_beyond_the_spread_is_beyond():
    x = np.random.default_rng(1).normal(size=(100, 6)).astype(np.float32)
    got = linear(x) + 2.0  # every sample off: a wrong bias, say
    s = fp32_spread.measure(wobbly(0.1), x, linear(x), got)
    assert not s.within and "beyond" in s.text("litert")


def test_only_the_samples_the_artifact_differs_most_on_are_run_again():
    x = np.random.default_rng(1).normal(size=(500, 6)).astype(np.float32)
    got = linear(x)
    worst = [3, 250, 499]
    got[worst] += 1.0
    seen = []

    def run(batch):
        seen.append(batch.copy())
        return linear(batch)

    fp32_spread.measure(run, x, linear(x), got)
    assert len(seen[0]) == fp32_spread.SAMPLES and len(seen) == 1 + fp32_spread.SAMPLES
    for i in worst:
        assert any(np.array_equal(x[i], row) for row in seen[0])


@pytest.fixture
def fp32_onnx(tmp_path):
    """A real fp32 ONNX artifact of ``linear``: what an exporter writes."""
    import torch

    from edgekit.device.artifact import Artifact
    from edgekit.export.onnx import export_onnx_fp32

    model = torch.nn.Linear(6, 3, bias=False).eval()
    model.weight.data = torch.from_numpy(W.T.copy())
    path = tmp_path / "model_fp32.onnx"
    export_onnx_fp32(model, np.zeros((1, 6), np.float32), path, metadata={"labels": ["a", "b", "c"]})
    return Artifact(path, "onnx", "fp32")


def _verified(art, rerun):
    x = np.random.default_rng(2).normal(size=(200, 6)).astype(np.float32)
    reference = linear(x).astype(np.float64)
    own = reference.copy()
    own[11] += 0.3  # the exported-from model said something else on one sample than the artifact computes
    ev = Samples(x, None, "eval.npz")
    return verify([art], ev, reference, own, Gate(0.01, None), pruned=False, rerun=rerun)[0]


def test_verify_passes_an_fp32_artifact_within_the_models_own_spread_and_says_so(fp32_onnx):
    entry = _verified(fp32_onnx, wobbly(0.1))
    assert entry["passed"], entry["verdict"]
    assert "own fp32 spread" in entry["verdict"]
    assert entry["parity"]["onnxruntime"]["own_fp32_spread"] == pytest.approx(0.1, rel=1e-4)


def test_verify_fails_an_fp32_artifact_beyond_it_and_names_the_spread(fp32_onnx):
    entry = _verified(fp32_onnx, wobbly(0.01))
    assert not entry["passed"]
    assert "fp32 must match" in entry["verdict"] and "beyond 4x the model's own fp32 spread" in entry["verdict"]


def test_verify_without_a_model_to_rerun_keeps_the_plain_tolerance(fp32_onnx):
    entry = _verified(fp32_onnx, None)
    assert not entry["passed"] and "fp32 must match" in entry["verdict"]


def test_the_report_sets_apart_the_fp32_artifacts_that_passed_only_within_the_spread(fp32_onnx):
    from edgekit.compress.report import spread_section

    within, exact = _verified(fp32_onnx, wobbly(0.1)), {"name": "tflite_fp32", "passed": True,
                                                        "verdict": "within budget"}
    lines = spread_section({"artifacts": [within, exact]})
    assert lines[0] == "## fp32 parity within the model's own float spread"
    assert any(ln.startswith("- onnx_fp32: within budget; onnxruntime: max abs diff") for ln in lines)
    assert not any("tflite_fp32" in ln for ln in lines)
    assert spread_section({"artifacts": [exact]}) == []


def test_a_model_that_cannot_run_one_sample_at_a_time_keeps_the_plain_tolerance(fp32_onnx):
    def batched_only(x):
        if len(x) == 1:
            raise RuntimeError("expected more than 1 value per channel when training")
        return linear(x)

    entry = _verified(fp32_onnx, batched_only)
    assert not entry["passed"] and "fp32 must match" in entry["verdict"]
