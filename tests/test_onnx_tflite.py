"""ONNX → TFLite (edgekit.export.onnx_tflite): parity of the default route on held-out digits, the input file left
untouched, fallback between routes with a note, onnx2tf kept offline, and bad files as one-line DataErrors."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import ConfigError, DataError, MissingDependency

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
nn = torch.nn

needs_litert_torch = pytest.mark.skipif(
    importlib.util.find_spec("litert_torch") is None, reason='litert-torch not installed (pip install "edgekit[convert]")'
)
LABELS = [str(d) for d in range(10)]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class DigitNet(nn.Module):
    """Conv-BN-ReLU, a strided conv, ``x.view(x.size(0), -1)`` (a shape sub-graph in legacy ONNX), Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = self.down(self.stem(x))
        return self.fc(x.view(x.size(0), -1))


def _export_legacy(model, shape, path: Path, *, opset: int = 13, metadata: dict | None = None) -> Path:
    """torch.onnx.export with the TorchScript exporter and a dynamic batch, as most third-party files are made."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(1, *shape),), str(path), dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}})
    if metadata is not None:
        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "edgekit", json.dumps(metadata)
        onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A DigitNet trained for a few seconds on scikit-learn's digits, as an ONNX file with edgekit metadata,
    its training images (calibration), held-out images and labels, and onnxruntime's outputs on them."""
    datasets = pytest.importorskip("sklearn.datasets")
    ort = pytest.importorskip("onnxruntime")
    x, y = datasets.load_digits(return_X_y=True)
    x = ((x / 16.0 - 0.5) / 0.5).astype(np.float32).reshape(-1, 1, 8, 8)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:]
    torch.manual_seed(0)
    model = DigitNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: 1.6 s on one thread, ~60 s on two when other jobs share the 2 cores
    try:
        for _ in range(3):
            for i in torch.randperm(len(xt)).split(64):
                opt.zero_grad()
                nn.functional.cross_entropy(model(xt[i]), yt[i]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    meta = {"schema": 1, "labels": LABELS, "input": {"name": "image", "shape": [1, 1, 8, 8], "layout": "NCHW"}}
    path = _export_legacy(model, (1, 8, 8), tmp_path_factory.mktemp("onnx") / "digits.onnx", metadata=meta)
    ref = ort.InferenceSession(str(path)).run(None, {"image": x[test]})[0]
    assert (ref.argmax(1) == y[test]).mean() > 0.9  # it learned: agreement on held-out digits means something
    return path, x[train][:256], x[test], y[test], ref


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    from edgekit.device.runtime import open_session

    with open_session(path, runtime="litert") as s:
        return s.run(x)


# --- fast: argument and file checks, no conversion ------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"this is not a protobuf at all \x00\xff" * 4, "truncated"])
def test_garbage_or_truncated_onnx_is_a_data_error_naming_the_file(tmp_path, content):
    from edgekit.export.onnx_tflite import onnx_to_tflite

    bad = tmp_path / "vendor.onnx"
    if content == "truncated":
        good = _export_legacy(DigitNet(), (1, 8, 8), tmp_path / "good.onnx")
        content = good.read_bytes()[: good.stat().st_size // 2]
    bad.write_bytes(content)
    with pytest.raises(DataError) as err:
        onnx_to_tflite(bad, tmp_path / "out.tflite", precision="fp32")
    message = str(err.value)
    assert message.startswith(f"{bad}: ") and "\n" not in message
    assert not (tmp_path / "out.tflite").exists()


def test_a_missing_file_is_a_data_error(tmp_path):
    from edgekit.export.onnx_tflite import onnx_to_tflite

    with pytest.raises(DataError, match="no such ONNX file"):
        onnx_to_tflite(tmp_path / "nope.onnx", tmp_path / "out.tflite", precision="fp32")


def test_bad_arguments_are_config_errors(tmp_path):
    from edgekit.export.onnx_tflite import onnx_to_tflite

    path = _export_legacy(DigitNet(), (1, 8, 8), tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="unknown TFLite precision 'int4'"):
        onnx_to_tflite(path, tmp_path / "m.tflite", precision="int4")
    with pytest.raises(ConfigError, match="Did you mean 'onnx2tf'"):
        onnx_to_tflite(path, tmp_path / "m.tflite", precision="fp32", route="onnx2tflite")
    with pytest.raises(ConfigError, match="calibration"):
        onnx_to_tflite(path, tmp_path / "m.tflite", precision="int8")
    with pytest.raises(DataError, match=r"calibration samples have shape \[4, 1, 9, 9\]"):
        onnx_to_tflite(path, tmp_path / "m.tflite", precision="int8", calib=np.zeros((4, 1, 9, 9), np.float32))


def test_a_named_route_that_is_not_set_up_says_how_to_set_it_up(tmp_path, monkeypatch):
    from edgekit.export.onnx_tflite import onnx_to_tflite

    monkeypatch.setenv("EDGEKIT_ONNX2TF_VENV", str(tmp_path / "no-venv"))
    path = _export_legacy(DigitNet(), (1, 8, 8), tmp_path / "m.onnx")
    with pytest.raises(MissingDependency, match=r"route 'onnx2tf' is not available: .*scripts/onnx2tf_env.py"):
        onnx_to_tflite(path, tmp_path / "m.tflite", precision="fp32", route="onnx2tf")


def test_auto_falls_back_past_a_failed_and_a_missing_route_and_notes_why(tmp_path, monkeypatch):
    """The fallback mechanism itself, with stand-in routes (no converter runs)."""
    from edgekit.export import onnx_tflite as ot

    def broken(source, precision, calib, meta, out, check_x, work):
        raise ot._RouteFailed("simulated conversion error")

    def working(source, precision, calib, meta, out, check_x, work):
        out.write_bytes(b"TFL3 stand-in")

    routes = {"first": ot.Route("first", lambda p: "simulated: not installed", broken),
              "second": ot.Route("second", lambda p: None, broken),
              "third": ot.Route("third", lambda p: None, working)}
    monkeypatch.setattr(ot, "ROUTES", routes)
    path = _export_legacy(DigitNet(), (1, 8, 8), tmp_path / "m.onnx")
    art = ot.onnx_to_tflite(path, tmp_path / "m.tflite", precision="fp32", check=False)
    assert ot.conversion_route(art) == "third"
    assert art.notes == ("route: third", "first skipped: simulated: not installed",
                         "second failed: simulated conversion error")
    assert (tmp_path / "m.tflite").read_bytes() == b"TFL3 stand-in"

    monkeypatch.setattr(ot, "ROUTES", {k: routes[k] for k in ("first", "second")})
    with pytest.raises(DataError, match=r"m.onnx: no route converted it to TFLite: first skipped: .*; second failed"):
        ot.onnx_to_tflite(path, tmp_path / "m2.tflite", precision="fp32", check=False)
    assert not (tmp_path / "m2.tflite").exists()


# --- the default route, end to end ------------------------------------------------------------------------------


@pytest.mark.tflite
@needs_litert_torch
def test_default_route_fp32_matches_onnxruntime_and_keeps_the_input_layout(digits, tmp_path):
    from edgekit.device.runtime import open_session, read_metadata
    from edgekit.export.onnx_tflite import ROUTES, conversion_route, onnx_to_tflite

    path, _, x_test, _, ref = digits
    before = _sha(path)
    art = onnx_to_tflite(path, tmp_path / "digits_fp32.tflite", precision="fp32")
    assert _sha(path) == before  # the input ONNX is unchanged byte for byte
    assert conversion_route(art) == next(iter(ROUTES)), art.notes
    with open_session(art.path, runtime="litert") as s:
        assert tuple(s.input_shape[1:]) == (1, 8, 8)  # NCHW, as the ONNX file: the same input works on both
        out = s.run(x_test)
    assert np.abs(out - ref).max() < 1e-4 * (ref.max() - ref.min())
    meta = read_metadata(art.path)
    assert meta["labels"] == LABELS and meta["precision"] == "fp32"  # the ONNX file's edgekit metadata, reused
    assert meta["converted_from"]["route"] == conversion_route(art)


@pytest.mark.tflite
@pytest.mark.slow
@needs_litert_torch
def test_default_route_int8_agrees_on_held_out_digits(digits, tmp_path):
    from edgekit.export.onnx_tflite import onnx_to_tflite

    path, calib, x_test, y_test, ref = digits
    before = _sha(path)
    art = onnx_to_tflite(path, tmp_path / "digits_int8.tflite", precision="int8", calib=calib)
    assert _sha(path) == before
    out = _run(art.path, x_test)
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.97
    assert (out.argmax(1) == y_test).mean() >= (ref.argmax(1) == y_test).mean() - 0.02


@pytest.mark.tflite
@needs_litert_torch
def test_without_the_onnx2tf_environment_auto_uses_onnx2torch_and_says_why(digits, tmp_path, monkeypatch):
    from edgekit.export import onnx_tflite as ot

    monkeypatch.setenv("EDGEKIT_ONNX2TF_VENV", str(tmp_path / "no-venv"))
    monkeypatch.setattr(ot, "ROUTES", {k: ot.ROUTES[k] for k in ("onnx2tf", "onnx2torch")})  # onnx2tf first
    path, _, x_test, _, ref = digits
    art = ot.onnx_to_tflite(path, tmp_path / "digits.tflite", precision="fp32")
    assert ot.conversion_route(art) == "onnx2torch"
    assert art.notes[1].startswith(f"onnx2tf skipped: the onnx2tf environment {tmp_path / 'no-venv'} is not built")
    assert np.abs(_run(art.path, x_test) - ref).max() < 1e-4 * (ref.max() - ref.min())


@pytest.mark.tflite
@needs_litert_torch
def test_fp16_weights_keep_parity(digits, tmp_path):
    from edgekit.export.onnx_tflite import onnx_to_tflite

    path, _, x_test, _, ref = digits
    art = onnx_to_tflite(path, tmp_path / "digits_fp16.tflite", precision="fp16")
    assert np.abs(_run(art.path, x_test) - ref).max() < 1e-2 * (ref.max() - ref.min())


# --- onnx2tf: isolated environment, private copy, no network ---------------------------------------------------


def _onnx2tf_ready() -> bool:
    from edgekit.export.route_onnx2tf import onnx2tf_env_ready

    return onnx2tf_env_ready() and importlib.util.find_spec("ai_edge_quantizer") is not None


needs_onnx2tf = pytest.mark.skipif("not _onnx2tf_ready()", reason="onnx2tf environment not built "
                                   "(python scripts/onnx2tf_env.py) or ai-edge-quantizer missing")


class NHWCNet(nn.Module):
    """Takes (N, H, W, 3) like a TensorFlow-trained model: the input onnx2tf downloads sample images for."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.conv(x.permute(0, 3, 1, 2)).mean((2, 3)))


@pytest.mark.tflite
@pytest.mark.slow
@needs_onnx2tf
def test_onnx2tf_route_converts_offline_and_leaves_the_input_alone(digits, tmp_path):
    from edgekit.export.onnx_tflite import conversion_route, onnx_to_tflite

    path, calib, x_test, y_test, ref = digits
    before = _sha(path)
    fp32 = onnx_to_tflite(path, tmp_path / "fp32.tflite", precision="fp32", route="onnx2tf")
    int8 = onnx_to_tflite(path, tmp_path / "int8.tflite", precision="int8", calib=calib, route="onnx2tf")
    assert _sha(path) == before  # onnx2tf rewrites its input: it only ever sees a private copy
    assert conversion_route(fp32) == conversion_route(int8) == "onnx2tf"
    assert np.abs(_run(fp32.path, x_test) - ref).max() < 1e-4 * (ref.max() - ref.min())
    assert (_run(int8.path, x_test).argmax(1) == ref.argmax(1)).mean() >= 0.95


@pytest.mark.tflite
@pytest.mark.slow
@needs_onnx2tf
def test_onnx2tf_is_kept_off_the_network_for_3_channel_nhwc_inputs(tmp_path):
    """onnx2tf fetches sample images from GitHub for 4-D 3-channel inputs. edgekit puts the file it looks for
    in its working folder, and refuses sockets inside the subprocess: without the file the conversion fails on a
    refused connection (so the guard works and onnx2tf did try), with it the conversion succeeds offline."""
    from edgekit.export import onnx_tflite as ot

    torch.manual_seed(0)
    path = _export_legacy(NHWCNet(), (16, 16, 3), tmp_path / "nhwc.onnx")
    from edgekit.export.onnx_source import _load_source
    from edgekit.export.route_onnx2tf import _run_onnx2tf

    source = _load_source(path, None)
    (tmp_path / "work").mkdir()
    with pytest.raises(ot._RouteFailed, match="refused network connections"):
        _run_onnx2tf(source, tmp_path / "work", None, sample_file=False)
    art = ot.onnx_to_tflite(path, tmp_path / "nhwc.tflite", precision="fp32", route="onnx2tf")
    x = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype(np.float32)
    ref = pytest.importorskip("onnxruntime").InferenceSession(str(path)).run(None, {"image": x})[0]
    out = _run(art.path, x)  # the NHWC input stays NHWC
    assert np.abs(out - ref).max() < 1e-4 * (ref.max() - ref.min())
