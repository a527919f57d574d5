"""The model zoo: every architecture builds from the registry, takes its documented input, exports to ONNX with
parity; the zoo matrix (bench/zoo_matrix.py) reports a pass/fail cell with a reason for every stage."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgekit.errors import ConfigError  # noqa: E402
from edgekit.models import MODELS, build  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# name, args, documented input shape, output shape, parameter range
ZOO = [
    ("mobilenet_v2", {}, (2, 3, 96, 96), (2, 10), (300_000, 500_000)),
    ("mobilenet_v3_small", {}, (2, 3, 96, 96), (2, 10), (300_000, 500_000)),
    ("efficientnet_lite0", {}, (2, 3, 96, 96), (2, 10), (800_000, 1_200_000)),
    ("resnet18", {}, (2, 3, 32, 32), (2, 10), (600_000, 800_000)),
    ("squeezenet", {}, (2, 3, 96, 96), (2, 10), (150_000, 250_000)),
    ("shufflenet_v2", {}, (2, 3, 96, 96), (2, 10), (300_000, 400_000)),
    ("lstm_kws", {}, (2, 1, 49, 10), (2, 12), (15_000, 25_000)),
]


@pytest.mark.parametrize("name, args, shape, out, params", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_model_takes_its_documented_input(name, args, shape, out, params):
    model = build(name, args).eval()
    n = sum(p.numel() for p in model.parameters())
    assert params[0] <= n <= params[1], n
    with torch.no_grad():
        assert model(torch.randn(*shape)).shape == out


@pytest.mark.parametrize(
    "name", ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_lite0", "squeezenet", "shufflenet_v2"]
)
def test_image_models_adapt_channels_classes_and_resolution(name):
    model = build(name, {"in_channels": 1, "num_classes": 4, "input_size": 32}).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 32, 32)).shape == (3, 4)


def test_resnet18_has_the_cifar_stem_below_64_px_and_the_imagenet_stem_above():
    small, large = build("resnet18", {"input_size": 32}), build("resnet18", {"input_size": 224})
    assert small.stem[0].kernel_size == (3, 3) and small.stem[0].stride == (1, 1)
    assert large.stem[0][0].kernel_size == (7, 7) and isinstance(large.stem[1], torch.nn.MaxPool2d)
    blocks = [m for m in small.modules() if type(m).__name__ == "BasicBlock"]
    assert len(blocks) == 8  # [2, 2, 2, 2]


def test_defining_blocks_are_there():
    v2 = build("mobilenet_v2")
    assert any(isinstance(m, torch.nn.ReLU6) for m in v2.modules())
    assert sum(getattr(m, "residual", False) for m in v2.modules()) == 10  # identity skips of the paper's table
    v3 = build("mobilenet_v3_small")
    kinds = {type(m).__name__ for m in v3.modules()}
    assert {"SqueezeExcite", "Hardswish"} <= kinds
    lite = {type(m).__name__ for m in build("efficientnet_lite0").modules()}
    assert "SqueezeExcite" not in lite and "ReLU6" in lite and "Hardswish" not in lite


@pytest.mark.parametrize(
    "name, args",
    [
        ("shufflenet_v2", {"width": 0.3}),
        ("mobilenet_v2", {"input_size": 100}),
        ("resnet18", {"width": 0}),
        ("lstm_kws", {"hidden": 0}),
    ],
)
def test_bad_zoo_arguments_are_config_errors(name, args):
    with pytest.raises(ConfigError, match=f"model.args for '{name}'"):
        build(name, args)


EXPORTS = [  # small inputs: the exporter's time goes into tracing, the same at any resolution
    ("mobilenet_v2", {"input_size": 32}, (1, 3, 32, 32)),
    ("mobilenet_v3_small", {"input_size": 32}, (1, 3, 32, 32)),
    ("efficientnet_lite0", {"input_size": 32}, (1, 3, 32, 32)),
    ("resnet18", {"width": 0.125}, (1, 3, 32, 32)),
    ("squeezenet", {"input_size": 32}, (1, 3, 32, 32)),
    ("shufflenet_v2", {"input_size": 32}, (1, 3, 32, 32)),
    ("lstm_kws", {}, (1, 1, 49, 10)),
]


@pytest.mark.parametrize("name, args, shape", EXPORTS, ids=[e[0] for e in EXPORTS])
def test_zoo_model_exports_to_fp32_onnx_with_parity(tmp_path, name, args, shape):
    pytest.importorskip("onnxruntime")
    from edgekit.device.runtime import open_session
    from edgekit.export.onnx import export_onnx_fp32

    torch.manual_seed(0)
    model = build(name, args).eval()
    x = np.random.default_rng(0).standard_normal((5, *shape[1:])).astype(np.float32)
    art = export_onnx_fp32(model, x[:1], tmp_path / f"{name}.onnx", metadata={"schema": 1})
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with open_session(art.path) as s:
        np.testing.assert_allclose(s.run(x), ref, atol=1e-4, rtol=1e-4)


def test_every_zoo_model_is_registered():
    from edgekit.models import zoo

    factories = [
        n
        for n, f in vars(zoo).items()
        if callable(f)
        and f.__module__ == zoo.__name__
        and n.islower()
        and not n.startswith("_")
        and n not in ("make_divisible", "channel_shuffle")
    ]
    assert sorted(factories) == sorted(z[0] for z in ZOO)
    assert all(n in MODELS for n in factories)


def _matrix_module():
    spec = importlib.util.spec_from_file_location("zoo_matrix", ROOT / "bench" / "zoo_matrix.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["zoo_matrix"] = module
    spec.loader.exec_module(module)
    return module


def test_matrix_lists_at_least_twelve_architectures_and_refuses_unknown_names(capsys):
    zm = _matrix_module()
    assert len({a.name for a in zm.ZOO}) >= 12
    assert all(a.name in MODELS for a in zm.ZOO)
    assert zm.main(["--models", "mobilenet_v9"]) == 2
    assert "Did you mean" in capsys.readouterr().err


def test_synthetic_keyword_task_needs_the_order_of_events():
    zm = _matrix_module()
    x, y = zm.keyword_like(300, seed=0)
    assert x.shape == (300, 1, 49, 10) and x.dtype == np.float32 and set(np.unique(y)) <= set(range(12))
    again, _ = zm.keyword_like(300, seed=0)
    np.testing.assert_array_equal(x, again)


@pytest.mark.slow
def test_matrix_cells_pass_and_fail_with_reasons(tmp_path):
    """Two archs through every stage: the matrix has one cell per stage, a GRU's prune fails with the known
    torch-pruning gap, and thresholds that cannot be met turn passing cells into failures with the number."""
    pytest.importorskip("litert_torch")
    zm = _matrix_module()
    archs = [a for a in zm.ZOO if a.name in ("ds_cnn", "gru_kws")]
    res = zm.run_matrix(archs, zm.Thresholds(), quick=True, work=tmp_path / "a")
    assert [r["name"] for r in res["rows"]] == ["ds_cnn", "gru_kws"]
    for row in res["rows"]:
        assert list(row["cells"]) == list(zm.CELLS)
        assert all(set(c) >= {"passed", "summary", "seconds", "metrics"} for c in row["cells"].values())
    ds, gru = res["rows"]
    assert ds["cells"]["prune"]["passed"] and ds["cells"]["prune"]["metrics"]["macs_ratio"] <= 0.5
    assert ds["exported"] == "pruned"
    assert not gru["cells"]["prune"]["passed"] and "no pruner for nn.GRU" in gru["cells"]["prune"]["summary"]
    assert gru["exported"] == "dense"
    assert ds["cells"]["onnx_fp32"]["passed"] and ds["cells"]["onnx_fp32"]["metrics"]["max_abs_diff"] < 1e-3
    assert res["total"] == 10 and res["passed"] == sum(c["passed"] for r in res["rows"] for c in r["cells"].values())
    text = zm.markdown(res)
    assert "| ds_cnn" in text and "gru_kws / prune:" in text and "pass rate" in text

    impossible = zm.Thresholds(int8_agreement=1.01, fp32_tolerance=-1.0)
    res = zm.run_matrix(archs[:1], impossible, quick=True, work=tmp_path / "b", cells=("onnx_fp32", "onnx_int8"))
    cells = res["rows"][0]["cells"]
    assert list(cells) == ["onnx_fp32", "onnx_int8"] and res["passed"] == 0
    assert "max abs diff" in cells["onnx_fp32"]["summary"] and "> -1e+00" in cells["onnx_fp32"]["summary"]
    assert "< 101%" in cells["onnx_int8"]["summary"] and cells["onnx_int8"]["metrics"]["top1_agreement"] > 0.9
