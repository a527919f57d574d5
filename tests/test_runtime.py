"""edgekit.device.runtime: one session interface over onnxruntime and TFLite, numpy only, never torch."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.device.runtime import RUNTIMES, open_session, read_metadata, runtimes_for
from edgekit.errors import ConfigError, DataError, MissingDependency

MLPERF = Path("/work/shared/reference-models/mlperf-tiny")
META = {"schema": 1, "labels": ["a", "b", "c"], "precision": "fp32"}
needs_ort = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")
needs_litert = pytest.mark.skipif(
    importlib.util.find_spec("ai_edge_litert") is None, reason="ai-edge-litert not installed"
)
needs_mlperf = pytest.mark.skipif(not MLPERF.is_dir(), reason=f"MLPerf Tiny reference models not found at {MLPERF}")

W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
B = np.array([0.5, -1.0, 2.0], dtype=np.float32)


def _linear_onnx(path: Path, *, batch: int | str, metadata: dict | None) -> Path:
    """y = x @ W + B, built with the onnx helper API (no torch)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["xw"]), helper.make_node("Add", ["xw", "B"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime since 1.10
    if metadata is not None:
        helper.set_model_props(model, {"edgekit": json.dumps(metadata), "other": "x"})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def onnx_dynamic(tmp_path_factory) -> Path:
    return _linear_onnx(tmp_path_factory.mktemp("onnx") / "dyn.onnx", batch="N", metadata=META)


@pytest.fixture(scope="module")
def onnx_batch1(tmp_path_factory) -> Path:
    return _linear_onnx(tmp_path_factory.mktemp("onnx") / "b1.onnx", batch=1, metadata=None)


def _x(n: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)


@needs_ort
def test_onnx_session_runs_a_batch_and_reads_metadata(onnx_dynamic):
    with open_session(onnx_dynamic, threads=2) as s:
        assert s.runtime == "onnxruntime"
        assert s.input_shape == (-1, 4) and s.input_dtype == np.float32
        assert s.metadata == META
        out = s.run(_x(5))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _x(5) @ W + B, rtol=1e-6, atol=1e-6)


@needs_ort
def test_fixed_batch_of_one_runs_row_by_row(onnx_batch1):
    s = open_session(onnx_batch1)
    assert s.input_shape == (1, 4)
    assert s.metadata == {}
    np.testing.assert_allclose(s.run(_x(7)), _x(7) @ W + B, rtol=1e-6, atol=1e-6)


@needs_ort
def test_input_of_the_wrong_shape_is_a_data_error(onnx_dynamic):
    with pytest.raises(DataError, match=r"does not fit"):
        open_session(onnx_dynamic).run(np.zeros((2, 5), np.float32))


def test_read_metadata_onnx_without_a_runtime(onnx_dynamic, onnx_batch1):
    onnx = pytest.importorskip("onnx")
    assert read_metadata(onnx_dynamic) == META
    assert read_metadata(onnx_batch1) == {}
    # The wire-format reader agrees with the onnx package.
    props = {p.key: p.value for p in onnx.load(str(onnx_dynamic)).metadata_props}
    assert read_metadata(onnx_dynamic) == json.loads(props["edgekit"])


@needs_litert
@needs_mlperf
def test_tflite_without_edgekit_metadata_reads_empty():
    assert read_metadata(MLPERF / "kws_ref_model.tflite") == {}


def _corrupt(tmp_path: Path, src: Path, kind: str) -> Path:
    bad = tmp_path / f"{kind}{src.suffix}"
    data = src.read_bytes()
    if kind == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    else:
        bad.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return bad


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_broken_files_raise_data_error_naming_the_file(tmp_path, onnx_dynamic, fmt, kind):
    src = onnx_dynamic if fmt == "onnx" else MLPERF / "pretrainedResnet_quant.tflite"
    if not src.exists():
        pytest.skip(f"{src} not found")
    bad = _corrupt(tmp_path, src, kind)
    with pytest.raises(DataError, match=bad.name):
        read_metadata(bad)
    if runtimes_for(bad):
        with pytest.raises(DataError, match=bad.name) as err:
            open_session(bad)
        assert "\n" not in str(err.value)


def test_missing_and_empty_files_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="no such model file"):
        open_session(tmp_path / "nope.onnx")
    (tmp_path / "empty.tflite").write_bytes(b"")
    with pytest.raises(DataError, match="empty.tflite"):
        read_metadata(tmp_path / "empty.tflite")
    (tmp_path / "model.bin").write_bytes(b"\0" * 64)
    with pytest.raises(DataError, match="unknown model format"):
        runtimes_for(tmp_path / "model.bin")


def test_unknown_runtime_name_suggests_a_close_match(onnx_dynamic):
    with pytest.raises(ConfigError, match="Did you mean 'onnxruntime'"):
        open_session(onnx_dynamic, runtime="onnxruntim")


@needs_litert
def test_a_runtime_of_another_format_is_refused(onnx_dynamic):
    with pytest.raises(DataError, match="runs tflite files"):
        open_session(onnx_dynamic, runtime="litert")


@pytest.mark.parametrize(
    ("name", "extra"), [("onnxruntime", "onnx"), ("litert", "tflite"), ("tflite-runtime", "tflite-legacy")]
)
def test_a_missing_runtime_names_its_extra(monkeypatch, tmp_path, onnx_dynamic, name, extra):
    spec = RUNTIMES.get(name)
    path = onnx_dynamic if spec.format == "onnx" else tmp_path / "m.tflite"
    if spec.format == "tflite":
        path.write_bytes(b"\x1c\0\0\0TFL3" + b"\0" * 64)  # only the header is read before the check
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda m, *a: None if m == spec.module.split(".")[0] else real(m, *a)
    )
    with pytest.raises(MissingDependency, match=rf"edgekit\[{extra}\]"):
        open_session(path, runtime=name)
    assert name not in runtimes_for(path)


@needs_ort
@needs_litert
@needs_mlperf
def test_runtimes_for_lists_installed_runtimes_of_the_format(onnx_dynamic):
    assert runtimes_for(onnx_dynamic) == ["onnxruntime"]
    tflite = runtimes_for(MLPERF / "vww_96_int8.tflite")
    assert tflite[0] == "litert"
    assert ("tflite-runtime" in tflite) == (importlib.util.find_spec("tflite_runtime") is not None)


def _smooth(rng: np.random.Generator, n: int, shape: tuple[int, ...], lo: float, hi: float) -> np.ndarray:
    """Smooth random images (bilinear upsampling of a 4x4 grid): structured, unlike white noise."""
    h, w, c = shape
    grid = rng.uniform(size=(n, 4, 4, c))
    ys, xs = np.linspace(0, 3, h), np.linspace(0, 3, w)
    y0, x0 = np.minimum(ys.astype(int), 2), np.minimum(xs.astype(int), 2)
    fy, fx = (ys - y0)[None, :, None, None], (xs - x0)[None, None, :, None]
    rows = grid[:, y0] * (1 - fy) + grid[:, y0 + 1] * fy
    img = rows[:, :, x0] * (1 - fx) + rows[:, :, x0 + 1] * fx
    return (lo + (hi - lo) * img).astype(np.float32)


def _mfcc_like(rng: np.random.Generator, n: int) -> np.ndarray:
    """49 frames x 10 MFCCs: a large negative c0 (log energy), higher coefficients smaller, slow drift in time."""
    k = np.arange(10)
    scale = np.where(k == 0, 8.0, 12.0 / (1 + k))
    energy = np.where(k == 0, -1.0, 0.0) * rng.uniform(20, 90, (n, 1, 1))
    drift = np.cumsum(rng.normal(size=(n, 49, 10)), axis=1) * scale * 0.5
    x = energy + drift + rng.normal(size=(n, 1, 10)) * scale * 2
    return np.clip(x, -123, 25)[..., None].astype(np.float32)  # the int8 input's range: scale 0.585, zero 83


# (int8 file, float file, input maker, lowest top-1 agreement int8 vs float). Measured with 10 seeds x 32
# inputs: KWS 0.91-1.00 (mean 0.97), ResNet-8 0.75-0.97 (mean 0.88; smooth images are far from CIFAR-10,
# so many sit near a decision boundary), VWW 1.00. The thresholds leave room below the worst seed.
REFERENCE_PAIRS = [
    ("kws_ref_model.tflite", "kws_ref_model_float32.tflite", _mfcc_like, 0.85),
    (
        "pretrainedResnet_quant.tflite",
        "pretrainedResnet.tflite",
        lambda rng, n: _smooth(rng, n, (32, 32, 3), 0, 255),
        0.70,
    ),  # raw pixels: int8 scale 1.0, zero -128
    ("vww_96_int8.tflite", "vww_96_float.tflite", lambda rng, n: _smooth(rng, n, (96, 96, 3), 0, 1), 0.90),
]


@needs_litert
@needs_mlperf
@pytest.mark.parametrize(("int8", "fp32", "make", "agree"), REFERENCE_PAIRS, ids=["kws", "resnet8", "vww"])
def test_mlperf_reference_models_run_and_int8_agrees_with_float(int8, fp32, make, agree):
    q, f = open_session(MLPERF / int8), open_session(MLPERF / fp32)
    assert q.input_dtype == np.int8 and f.input_dtype == np.float32
    assert q.input_shape == f.input_shape and q.input_shape[0] == -1  # NHWC, any batch
    x = make(np.random.default_rng(0), 64)
    pq, pf = q.run(x), f.run(x)
    assert pq.shape == pf.shape == (64, pf.shape[1]) and pq.dtype == np.float32
    # Both end in a softmax: dequantized int8 probabilities sum to 1 within a few output steps (1/256).
    np.testing.assert_allclose(pq.sum(1), 1, atol=0.02)
    np.testing.assert_allclose(pf.sum(1), 1, atol=1e-4)
    assert (pq.argmax(1) == pf.argmax(1)).mean() >= agree
    # Row by row gives the same as the whole batch.
    np.testing.assert_array_equal(q.run(x[:3]), np.concatenate([q.run(x[i : i + 1]) for i in range(3)]))


@needs_ort
@needs_litert
@needs_mlperf
def test_the_device_side_never_imports_torch(onnx_dynamic):
    code = f"""
import sys, numpy as np
from edgekit.device.runtime import open_session, read_metadata
s = open_session({str(MLPERF / "kws_ref_model.tflite")!r})
s.run(np.zeros((2, 49, 10, 1), np.float32))
assert "onnxruntime" not in sys.modules, "a TFLite session imported onnxruntime"
o = open_session({str(onnx_dynamic)!r})
o.run(np.zeros((2, 4), np.float32))
read_metadata({str(onnx_dynamic)!r})
leaked = sorted(m for m in ("torch", "tensorflow", "litert_torch", "jax", "onnx") if m in sys.modules)
assert not leaked, leaked
"""
    root = Path(__file__).resolve().parents[1]  # `python -c` imports edgekit from the working folder
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
