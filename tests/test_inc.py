"""Intel Neural Compressor autotune: accuracy measured, weights really int8, an unmet budget says so."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from edgekit.errors import ConfigError, MissingDependency

ARGS = {"in_channels": 1, "num_classes": 10, "widths": [8, 16, 32]}  # a narrow ResNet-8: trains in seconds


@pytest.fixture(scope="module")
def trained():
    """A ResNet-8 trained briefly on the bundled digits, its held-out split, calibration inputs and accuracy."""
    pytest.importorskip("neural_compressor", reason="needs neural-compressor: pip install 'edgekit[inc]'")
    import torch

    from edgekit import data
    from edgekit.models import build
    from edgekit.recipe import DataSpec
    from edgekit.train import loop

    s = data.load(DataSpec(name="digits"))
    torch.manual_seed(0)
    model = build("resnet8", ARGS)
    loop.fit(model, s.tensors("train"), s.tensors("val"), epochs=3, batch_size=64, lr=0.05)
    model.eval()
    x, y = s.tensors("test")
    x = torch.from_numpy(x)

    def accuracy(m) -> float:
        with torch.no_grad():
            return float((m(x).argmax(1).numpy() == y).mean())

    return model, x, s.calibration(256), accuracy


def test_autotune_returns_an_int8_model_within_the_budget(trained):
    from edgekit.compress.inc import inc_autotune, weight_report

    model, x, calib, accuracy = trained
    baseline = accuracy(model)
    assert baseline > 0.9
    r = inc_autotune(model, x[:8], calib, accuracy, budget=0.02, latency="eager", latency_rounds=2,
                     latency_iterations=10)
    assert r.met
    assert r.trials and r.trials[-1].accuracy == r.accuracy
    assert r.baseline == baseline
    assert r.accuracy == accuracy(r.model)  # measured on the returned model, not copied from a trial
    assert r.accuracy >= baseline - 0.02
    assert r.tolerable_loss == pytest.approx(0.02 / baseline, rel=1e-6)
    # really quantized: every conv/linear weight goes through int8 with a calibrated scale, and outputs move
    report = weight_report(r.model)
    assert r.int8_weights == len(report) == 10 and r.float_weights == ()
    assert all(w["dtype"] == "int8" and not w["scale_one"] and w["max_error_in_steps"] <= 0.5 + 1e-3
               for w in report.values())
    import torch

    with torch.no_grad():
        assert (model(x) - r.model(x)).abs().max() > 1e-3
    assert r.latency == "eager" and r.float_p50_ms > 0 and r.int8_p50_ms > 0 and r.latency_ratio > 0
    assert r.inc_version.startswith("3.") and r.wall_s >= r.tune_s > 0


def test_an_unreachable_budget_is_reported_as_not_met(trained):
    from edgekit.compress.inc import inc_autotune

    model, x, calib, _ = trained
    import torch

    with torch.no_grad():
        ref = model(x)

    def bit_exact(m) -> float:  # the float model scores 1.0; int8 never reproduces its logits to 1e-5
        with torch.no_grad():
            return float(((m(x) - ref).abs().amax(1) < 1e-5).float().mean())

    r = inc_autotune(model, x[:8], calib, bit_exact, budget=0.0, max_trials=2, latency="off")
    assert r.baseline == 1.0
    assert not r.met
    assert len(r.trials) == 2  # INC went on to its trial limit
    assert r.model is not None and r.accuracy < 1.0  # INC still hands back its best try
    assert math.isnan(r.int8_p50_ms) and r.latency == "off"


def test_an_eval_that_breaks_on_the_quantized_model_is_not_a_pass(trained):
    from edgekit.compress.inc import inc_autotune

    model, x, calib, accuracy = trained
    calls = []

    def broken(m) -> float:  # right on the float model, NaN afterwards (a bug in the caller's eval)
        calls.append(m)
        return accuracy(m) if len(calls) == 1 else float("nan")

    r = inc_autotune(model, x[:8], calib, broken, budget=1.0, max_trials=1, latency="off")
    assert not r.met and math.isnan(r.accuracy)


def test_accuracy_in_percent_is_refused(trained):
    from edgekit.compress.inc import inc_autotune

    model, x, calib, accuracy = trained
    with pytest.raises(ConfigError, match="fraction"):
        inc_autotune(model, x[:8], calib, lambda m: 100 * accuracy(m), budget=0.01, latency="off")


@pytest.mark.parametrize("kwargs, match", [
    ({"budget": -0.01}, "outside"),
    ({"budget": 1.0, "max_trials": 0}, "max_trials"),
    ({"budget": 0.01, "latency": "compile"}, "Did you mean 'compiled'"),
    ({"budget": 0.01, "choices": []}, "choices"),
])
def test_bad_options_are_config_errors(kwargs, match):
    from edgekit.compress.inc import inc_autotune

    with pytest.raises(ConfigError, match=match):
        inc_autotune(None, None, None, None, **kwargs)


def test_missing_neural_compressor_names_the_extra(monkeypatch):
    from edgekit.compress.inc import inc_autotune

    monkeypatch.setitem(sys.modules, "neural_compressor", None)  # import fails as if not installed
    with pytest.raises(MissingDependency, match=r"edgekit\[inc\]"):
        inc_autotune(None, None, None, None, budget=0.01)


def test_importing_the_module_loads_neither_torch_nor_inc():
    code = ("import sys, edgekit.compress.inc; "
            "print(sorted(m for m in ('torch', 'neural_compressor') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_compiled_latency_compares_int8_kernels_with_float(trained):
    from edgekit.compress.inc import inc_autotune

    model, x, calib, accuracy = trained
    r = inc_autotune(model, x[:8], calib, accuracy, budget=0.02, max_trials=1, latency_rounds=3,
                     latency_iterations=20)
    assert r.latency == "compiled", r.latency
    assert r.float_p50_ms > 0 and r.int8_p50_ms > 0
