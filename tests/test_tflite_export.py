"""TFLite export with litert-torch: fp32 parity, fp16 size and parity, full int8 on held-out digits, metadata."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from edgekit.errors import ConfigError, MissingDependency

pytestmark = [
    pytest.mark.tflite,
    pytest.mark.skipif(
        importlib.util.find_spec("litert_torch") is None,
        reason='litert-torch not installed (pip install "edgekit[convert]")',
    ),
]
torch = pytest.importorskip("torch")
nn = torch.nn

META = {"schema": 1, "labels": [str(d) for d in range(10)], "input": {"shape": [1, 1, 8, 8], "layout": "NCHW"}}


class DigitNet(nn.Module):
    """Conv-BN-ReLU, a residual conv block, a strided conv, global average pool, Linear: ~29k parameters."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32))
        self.down = nn.Sequential(nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        return self.fc(self.down(x).mean((2, 3)))


@pytest.fixture(scope="module")
def digits():
    """A DigitNet trained for a few seconds on scikit-learn's 8x8 digits, and its held-out images."""
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_digits(return_X_y=True)
    x = ((x / 16.0 - 0.5) / 0.5).astype(np.float32).reshape(-1, 1, 8, 8)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:]
    torch.manual_seed(0)
    model = DigitNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    for _ in range(3):
        for i in torch.randperm(len(xt)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[i]), yt[i]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x[test])).numpy()
    assert (ref.argmax(1) == y[test]).mean() > 0.9  # the model learned something: agreement means something
    return model, x[train], x[test], ref


@pytest.fixture(scope="module")
def exported(digits, tmp_path_factory):
    from edgekit.export.tflite import export_tflite

    model, x_train, _, _ = digits
    out = tmp_path_factory.mktemp("tflite")
    return {
        p: export_tflite(
            model, x_train[:1], out / f"digits_{p}.tflite", precision=p, metadata=META, calib=x_train[:256]
        )
        for p in ("fp32", "fp16", "int8")
    }


def _run(artifact, x):
    from edgekit.device.runtime import open_session

    return open_session(artifact.path).run(x)


def _weight_types(path) -> set[str]:
    """Types of the constant tensors of rank >= 2 (conv and fully-connected weights) in a .tflite file.

    INT32 constants are left out: they are shapes and paddings (a PAD before a strided conv), not weights.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    return {
        names[t.type]
        for t in model.subgraphs[0].tensors
        if len(t.shape) >= 2 and model.buffers[t.buffer].data is not None and t.type != schema.TensorType.INT32
    }


def test_fp32_matches_torch(exported, digits):
    _, _, x_test, ref = digits
    a = exported["fp32"]
    assert (a.format, a.precision, a.path.exists()) == ("tflite", "fp32", True)
    assert np.abs(_run(a, x_test) - ref).max() < 1e-4


def test_fp16_is_half_the_size_with_float_io(exported, digits):
    _, _, x_test, ref = digits
    ratio = exported["fp16"].path.stat().st_size / exported["fp32"].path.stat().st_size
    assert 0.4 < ratio < 0.6, ratio
    assert _weight_types(exported["fp16"].path) == {"FLOAT16"}
    from edgekit.device.runtime import open_session

    s = open_session(exported["fp16"].path)
    assert s.input_dtype == np.float32 and s.input_shape == (1, 1, 8, 8)
    assert np.abs(s.run(x_test) - ref).max() < 1e-2


def test_int8_is_full_integer_and_agrees_on_held_out_digits(exported, digits):
    _, _, x_test, ref = digits
    a = exported["int8"]
    assert a.path.stat().st_size <= 0.35 * exported["fp32"].path.stat().st_size
    assert _weight_types(a.path) == {"INT8"}
    from edgekit.device.runtime import open_session

    s = open_session(a.path)
    assert s.input_dtype == np.int8  # int8 in and out, as on a microcontroller; run() takes float32
    out = s.run(x_test)
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.95


def test_metadata_round_trips_in_every_precision(exported):
    from edgekit.device.runtime import open_session, read_metadata

    for precision, artifact in exported.items():
        assert read_metadata(artifact.path) == {**META, "precision": precision}
        assert open_session(artifact.path).metadata == {**META, "precision": precision}


def test_metadata_is_replaced_not_duplicated(exported, tmp_path):
    from edgekit.device.runtime import read_metadata
    from edgekit.export.tflite import embed_metadata

    again = embed_metadata(exported["fp32"].path.read_bytes(), "edgekit", b'{"v": 2}')
    (tmp_path / "m.tflite").write_bytes(again)
    assert read_metadata(tmp_path / "m.tflite") == {"v": 2}


class _Unexportable(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.export refuses it
            return x
        return -x


def test_a_failed_export_leaves_no_file(tmp_path):
    from edgekit.export.tflite import export_tflite

    path = tmp_path / "model.tflite"
    path.write_bytes(b"previous")
    with pytest.raises(Exception):  # noqa: B017 - whatever torch.export raises; the point is what is left
        export_tflite(_Unexportable(), np.ones((1, 1, 4, 4), np.float32), path, precision="fp32", metadata={})
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]


def test_bad_arguments_are_config_errors(tmp_path):
    from edgekit.export.tflite import export_tflite

    x = np.zeros((1, 1, 8, 8), np.float32)
    with pytest.raises(ConfigError, match="unknown TFLite precision 'int4'"):
        export_tflite(DigitNet(), x, tmp_path / "m.tflite", precision="int4", metadata={})
    with pytest.raises(ConfigError, match="calibration"):
        export_tflite(DigitNet(), x, tmp_path / "m.tflite", precision="int8", metadata={})
    assert not any(tmp_path.iterdir())


def test_missing_litert_torch_names_the_extra(monkeypatch, tmp_path):
    from edgekit.export.tflite import export_tflite

    monkeypatch.setitem(sys.modules, "litert_torch", None)  # makes `import litert_torch` fail
    with pytest.raises(MissingDependency, match=r"edgekit\[convert\]"):
        export_tflite(
            DigitNet(), np.zeros((1, 1, 8, 8), np.float32), tmp_path / "m.tflite", precision="fp32", metadata={}
        )


def test_int8_of_a_distillation_teacher_is_as_good_as_before_distillation(digits, tmp_path):
    """Distillation (edgekit.train.loop.fit with teacher=...) leaves the teacher in channels_last; its int8
    file used to come out silently wrong (12.5 % instead of 98.9 % on digits, measured)."""
    import copy

    from edgekit.export.tflite import export_tflite
    from edgekit.models import build
    from edgekit.train.loop import fit

    _, x_train, x_test, _ = digits
    datasets = pytest.importorskip("sklearn.datasets")
    _, y = datasets.load_digits(return_X_y=True)
    y_train = y[np.random.default_rng(0).permutation(len(y))[:1400]]
    torch.manual_seed(0)
    model = build("resnet8", {"in_channels": 1, "num_classes": 10})  # the recipes' model (DigitNet does not show it)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(2):
        for i in torch.randperm(len(xt)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[i]), yt[i]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x_test)).numpy()
    teacher = copy.deepcopy(model)
    labels = ref.argmax(1)[:64].astype(np.int64)
    fit(copy.deepcopy(model), (x_test[:64], labels), (x_test[:16], labels[:16]), epochs=1, batch_size=32, lr=0.0,
        teacher=teacher, device="cpu", desc="distill")
    art = export_tflite(teacher, x_train[:1], tmp_path / "t.tflite", precision="int8", metadata=META,
                        calib=x_train[:256])
    assert (_run(art, x_test).argmax(1) == ref.argmax(1)).mean() > 0.95


class Spiky(nn.Module):
    """A feature map with rare large spikes whose global mean is small: the pooled range is ~10x narrower."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.fc = nn.Linear(16, 6)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("observer", ["histogram", "minmax"])
def test_int8_global_mean_gets_its_own_range_not_its_inputs(observer, tmp_path):
    """The keywords DS-CNN fell from 86.5 % to 13-65 % in int8 TFLite while a global mean shared its input's
    scale; with its own output range it keeps 86.4-86.8 %. Here: 0.88-0.90 agreement before the fix."""
    from edgekit.device.runtime import open_session
    from edgekit.export.tflite import export_tflite

    interpreter = pytest.importorskip("ai_edge_litert.interpreter")
    torch.manual_seed(0)
    model = Spiky().eval()
    with torch.no_grad():
        model.fc.weight.mul_(20)  # logits that depend on small differences between the pooled features
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.5, (300, 1, 12, 12)).astype(np.float32)
    spot = rng.integers(0, 12, (300, 2))
    x[np.arange(300), 0, spot[:, 0], spot[:, 1]] = rng.uniform(10, 30, 300)
    with torch.no_grad():
        ref = model(torch.from_numpy(x[150:])).numpy()
    path = tmp_path / "spiky.tflite"
    export_tflite(model, x[:1], path, precision="int8", metadata=META, calib=x[:150],
                  int8_options={"activation_observer": observer})

    it = interpreter.Interpreter(str(path))
    it.allocate_tensors()
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    mean = next(op for op in it._get_ops_details() if op["op_name"] == "MEAN")
    scale_in = tensors[mean["inputs"][0]]["quantization"][0]
    scale_out = tensors[mean["outputs"][0]]["quantization"][0]
    assert scale_out < scale_in / 3, (scale_in, scale_out)
    session = open_session(path)
    out = np.concatenate([session.run(x[i:i + 1]) for i in range(150, 300)])
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.95


def test_an_unknown_activation_observer_is_a_config_error(tmp_path):
    from edgekit.export.tflite import export_tflite

    with pytest.raises(ConfigError, match="activation_observer"):
        export_tflite(Spiky().eval(), np.zeros((1, 1, 12, 12), np.float32), tmp_path / "m.tflite", precision="int8",
                      metadata=META, calib=np.zeros((4, 1, 12, 12), np.float32),
                      int8_options={"activation_observer": "percentile"})
    assert not (tmp_path / "m.tflite").exists()


def test_quantization_aware_training_is_full_int8_trains_and_keeps_the_int8_model_as_close_to_float(digits, tmp_path):
    """QAT fine-tunes under fake quantization with the float model as teacher, on the calibration samples
    alone (no labels). BatchNorm is folded first, so the file is still full int8; the training really changes
    the weights, and it does not take the int8 model away from the float one.

    It cannot be asked to bring this model closer: post-training int8 of DigitNet already agrees with float on
    99.75 % of held-out digits at a class-distribution KL of 5e-5, the floor. Measured on an AMD EPYC (VNNI),
    10 epochs, output MSE against float relative to the untrained QAT graph: lr 1e-5 1.06x/1.08x (seeds 0/1),
    3e-5 1.07x/1.17x, 1e-4 1.13x/1.11x; held-out agreement 99.75-100 % throughout. Where QAT helps, on the
    MLPerf person detector rebuilt from ONNX, :func:`_quantization_aware_training` records its figures.
    """
    from edgekit.compress.tflite_search import QAT_EPOCHS, QAT_LR
    from edgekit.export.tflite import export_tflite

    model, x_train, x_test, ref_test = digits
    calib = x_train[:256]
    with torch.no_grad():
        ref = model(torch.from_numpy(calib)).numpy()
    error, files = {}, {}
    for lr in (0.0, QAT_LR):
        art = export_tflite(model, calib[:1], tmp_path / f"qat_{lr}.tflite", precision="int8", metadata=META,
                            calib=calib, int8_options={"qat_epochs": QAT_EPOCHS, "qat_lr": lr})
        assert _weight_types(art.path) <= {"INT8"}, _weight_types(art.path)
        error[lr] = float(np.mean((_run(art, calib) - ref) ** 2))
        files[lr] = art.path.read_bytes()
        assert (_run(art, x_test).argmax(1) == ref_test.argmax(1)).mean() >= 0.99, lr
    assert files[QAT_LR] != files[0.0]  # the steps changed the weights: lr 0 is the untrained graph
    assert error[QAT_LR] < 1.25 * error[0.0], error
