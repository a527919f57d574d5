"""Parity is numbers; the budget gate compares with the dense fp32 model."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.device.verify import judge, parity


def test_parity_numbers_on_known_outputs():
    ref = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    cand = np.array([[1.5, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 3.0]])
    rep = parity(ref, cand, labels=np.array([0, 1, 0, 0]))
    assert rep.samples == 4
    assert rep.top1_agreement == 0.75
    assert rep.max_abs_diff == 1.0
    assert rep.mean_abs_diff == pytest.approx(2.5 / 8)
    assert rep.reference_accuracy == 0.75 and rep.accuracy == 0.5
    assert rep.accuracy_drop == pytest.approx(0.25)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="output shapes differ"):
        parity(np.zeros((2, 3)), np.zeros((2, 4)))


def test_budget_gate_says_which_and_by_how_much():
    rep = parity(np.eye(10), np.eye(10), labels=np.r_[np.arange(9), 0])  # 90 % accurate
    ok = judge("onnx_int8", "int8", rep, baseline_accuracy=0.905, budget=0.01, fp32_tolerance=1e-3)
    assert ok.passed
    bad = judge("onnx_int8", "int8", rep, baseline_accuracy=0.92, budget=0.01, fp32_tolerance=1e-3)
    assert not bad.passed and "2.00 points below" in bad.reason and "budget 1.00" in bad.reason


def test_fp32_artifacts_are_judged_elementwise():
    ref = np.ones((4, 3))
    rep = parity(ref, ref + 0.01, labels=np.zeros(4, int))
    verdict = judge("onnx_fp32", "fp32", rep, baseline_accuracy=1.0, budget=0.01, fp32_tolerance=1e-3)
    assert not verdict.passed and "exceeds the fp32 tolerance" in verdict.reason
    assert judge("tflite_fp16", "fp16", rep, baseline_accuracy=1.0, budget=0.01, fp32_tolerance=1e-3).passed
