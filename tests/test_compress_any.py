"""`edgekit compress` on what users bring: pruned models gated right, dynamic shapes, several inputs, kills."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import edgekit

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

NET = '''
import torch
from torch import nn


def build(width: int = 48):
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 10))
'''


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from edgekit import data
    from edgekit.recipe import DataSpec

    s = data.load(DataSpec(name="digits"))
    (xt, yt), (xe, ye) = s.tensors("train"), s.tensors("test")
    return xt, yt, xe, ye


@pytest.fixture(scope="module")
def trained_net(tmp_path_factory) -> tuple[Path, Path]:
    """A small CNN trained on digits for a few seconds: the user's own model file and its weights."""
    from edgekit.train.loop import fit

    folder = tmp_path_factory.mktemp("net")
    (folder / "net.py").write_text(NET)
    sys.path.insert(0, str(folder))
    import net  # noqa: F401

    torch.manual_seed(0)
    model = net.build()
    xt, yt, xe, ye = digits()
    fit(model, (xt, yt), (xe, ye), epochs=8, batch_size=64, lr=0.05, device="cpu", desc="fixture")
    torch.save(model.state_dict(), folder / "net.pt")
    return folder / "net.py", folder / "net.pt"


def test_a_pruned_student_within_budget_ships_and_its_fp32_artifact_matches_the_student(trained_net, tmp_path):
    code, weights = trained_net
    out = tmp_path / "out"
    proc = edgekit("compress", f"{code}:build", "--weights", str(weights), "--calib", "dataset:digits", "--eval",
                   "dataset:digits", "--prune", "0.5", "--budget", "0.03", "--format", "onnx",
                   "--precision", "fp32,int8", "--no-inc", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    prune = res["stages"]["prune"]
    assert prune["kept"] and prune["macs_ratio"] <= 0.5
    fp32 = next(e for e in res["artifacts"] if e["name"] == "onnx_fp32")
    assert fp32["exported_from"] == "pruned student" and fp32["max_abs_diff"] < 1e-3 and fp32["passed"]
    # the budget is against the original: the accuracy drop includes what pruning cost
    assert res["models"]["original"]["accuracy"] - fp32["accuracy"] <= 0.03
    on_disk = onnx.load(str(out / "model_fp32.onnx"))
    assert sum(onnx.numpy_helper.to_array(i).size for i in on_disk.graph.initializer) < 0.6 * sum(
        p.numel() for p in torch.load(weights, weights_only=True).values())


def dynamic_onnx(path: Path) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A classifier exported with a dynamic batch, height and width (as OCR and detection models are)."""
    from edgekit.train.loop import fit

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3, 2, 1),
                                torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(32, 10))
    xt, yt, xe, ye = digits()
    fit(model, (xt, yt), (xe, ye), epochs=6, batch_size=64, lr=0.05, device="cpu", desc="fixture")
    model.eval()
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}, "y": {0: "N"}}, opset_version=13, dynamo=False)
    return path, xt, yt, xe, ye


def test_a_dynamic_height_and_width_onnx_takes_its_shape_from_the_data(tmp_path):
    model, xt, yt, xe, ye = dynamic_onnx(tmp_path / "dyn.onnx")
    dims = [d.dim_param or d.dim_value for d in onnx.load(str(model)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 1, "H", "W"]
    np.savez(tmp_path / "calib.npz", x=xt[:300], y=yt[:300])
    np.savez(tmp_path / "eval.npz", x=xe, y=ye)
    out = tmp_path / "out"
    proc = edgekit("compress", str(model), "--calib", str(tmp_path / "calib.npz"), "--eval", str(tmp_path / "eval.npz"),
                   "--format", "onnx,tflite", "--precision", "fp32,int8", "--no-inc", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    names = {e["name"]: e for e in res["artifacts"] if e["passed"]}
    assert {"onnx_fp32", "onnx_int8", "tflite_fp32", "tflite_int8"} <= set(names)
    assert res["models"]["original"]["accuracy"] - names["onnx_int8"]["accuracy"] <= 0.01
    assert "dynamic" in res["stages"]["shapes"] and "TFLite" in res["stages"]["shapes"]
    kept = onnx.load(str(out / "model_int8.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) or d.dim_value <= 0 for d in kept] == [True, False, True, True]  # still dynamic
    from edgekit.device.runtime import open_session

    with open_session(out / "model_fp32.tflite") as s:
        assert list(s.input_shape[1:]) == [1, 8, 8]  # TFLite: fixed to the data's shape


def stateful_gru(folder: Path, *, steps: int = 200) -> Path:
    """A streaming GRU as exported for a device loop: x (1, 20, 10), the state h (1, 1, 32) and an int64 sample
    rate in; class scores and the new state out. Trained briefly so that the classes mean something."""
    torch.manual_seed(0)

    class Streaming(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(10, 32, batch_first=True)
            self.fc = torch.nn.Linear(32, 5)

        def forward(self, x, h, sr):
            y, h2 = self.gru(x * (sr.to(torch.float32) / 16000.0), h)
            return self.fc(y[:, -1]), h2

    rng = np.random.default_rng(0)

    def batch(n):
        y = rng.integers(0, 5, n)
        x = rng.normal(0, 1, (n, 20, 10)).astype(np.float32)
        for i, c in enumerate(y):
            x[i, :, 2 * c: 2 * c + 2] += 2.0
        return x, rng.normal(0, 0.3, (1, n, 32)).astype(np.float32), y

    m = Streaming()
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(steps):
        x, h, y = batch(64)
        loss = torch.nn.functional.cross_entropy(m(torch.from_numpy(x), torch.from_numpy(h), torch.tensor(16000))[0],
                                                 torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    path = folder / "stream_gru.onnx"
    torch.onnx.export(m, (torch.zeros(1, 20, 10), torch.zeros(1, 1, 32), torch.tensor(16000)), str(path),
                      input_names=["x", "h", "sr"], output_names=["logits", "h_out"], opset_version=14, dynamo=False)
    for split, n in (("calib", 200), ("eval", 200)):
        x, h, y = batch(n)
        # every sample exactly as the model takes it: x (1, 20, 10), h (1, 1, 32), sr a scalar
        np.savez(folder / f"{split}.npz", x=x[:, None], h=h.transpose(1, 0, 2)[:, None], sr=np.full(n, 16000), y=y)
    return path


def test_a_stateful_rnn_with_three_inputs_compresses_to_int8_with_every_output_judged(tmp_path):
    model = stateful_gru(tmp_path)
    out = tmp_path / "out"
    proc = edgekit("compress", str(model), "--calib", str(tmp_path / "calib.npz"), "--eval", str(tmp_path / "eval.npz"),
                   "--format", "onnx,tflite", "--precision", "fp32,int8", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert [i["name"] for i in res["models"]["original"]["inputs"]] == ["x", "h", "sr"]
    for name in ("onnx_int8", "tflite_int8"):
        e = next(a for a in res["artifacts"] if a["name"] == name)
        assert e["passed"], e["verdict"]
        (rt, rep), = e["parity"].items()
        logits, state = rep["outputs"]
        assert logits["name"] == "logits" and logits["kind"] == "classes" and logits["agreement"] >= 0.99
        assert state["name"] == "h_out" and state["relative_rms"] <= 0.1  # the new state, judged by its error
    assert "h_out: relative RMS error" in (out / "report.md").read_text() or "h_out" in json.dumps(res["artifacts"])


def test_data_missing_an_input_of_a_several_input_model_is_one_line(tmp_path):
    model = stateful_gru(tmp_path, steps=0)
    np.savez(tmp_path / "partial.npz", x=np.zeros((4, 1, 20, 10), np.float32))
    proc = edgekit("compress", str(model), "--calib", str(tmp_path / "partial.npz"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no array for input(s) h, sr" in proc.stderr and not (tmp_path / "out").exists()


def compress_cmd(model: Path, data: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "edgekit", "compress", str(model), "--calib", data, "--eval", data,
            "--format", "onnx,tflite", "--precision", "fp32,int8", "--out", str(out)]


def test_a_finished_output_folder_is_replaced_by_the_same_command_and_refused_to_another(digits_run, tmp_path):
    model = digits_run / "artifacts" / "model_fp32.onnx"
    out = tmp_path / "out"
    args = ["compress", str(model), "--calib", "dataset:digits", "--format", "onnx", "--precision", "fp32",
            "--out", str(out)]
    assert edgekit(*args).returncode == 0
    again = edgekit(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    other = edgekit(*args[:-2], "--budget", "0.02", "--out", str(out))
    assert other.returncode == 2 and "another edgekit compress command" in other.stderr
    assert (out / "results.json").is_file()  # nothing of the earlier result was touched


def test_the_recommended_artifact_is_never_slower_than_fp32():
    from edgekit.compress.job import recommend

    def entry(name, precision, ms, passed=True, size=100):
        return {"name": name, "format": "onnx", "precision": precision, "passed": passed, "size_bytes": size,
                "path": __file__, "latency": {"onnxruntime": {"1": {"p50_ms": ms}}}}

    slow_int8 = [entry("onnx_fp32", "fp32", 1.0), entry("onnx_int8", "int8", 1.4, size=25)]
    assert recommend(slow_int8)["onnxruntime"]["artifact"] == "onnx_fp32"
    fast_int8 = [entry("onnx_fp32", "fp32", 1.0), entry("onnx_int8", "int8", 0.4, size=25),
                 entry("onnx_x", "int8", 0.1, passed=False)]
    rec = recommend(fast_int8)["onnxruntime"]
    assert rec["artifact"] == "onnx_int8" and rec["speedup_vs_fp32"] == pytest.approx(2.5)


def test_a_several_input_command_keeps_back_the_time_its_verification_will_take(tmp_path):
    """Verification runs every artifact over every evaluation sample after the searches: the clock keeps back that
    time, measured on the float model (a fixed reserve let a slow model's verification overrun the limit)."""
    from onnx import TensorProto, helper

    from edgekit.compress import samples
    from edgekit.compress.several_io import seconds_after_searches

    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 64]) for n in ("a", "b", "y")]
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g", vi[:2], vi[2:])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    few = samples.Feeds({"a": np.zeros((10, 1, 64), np.float32), "b": np.zeros((10, 1, 64), np.float32)}, None,
                        "x.npz", "")
    many = samples.Feeds({k: np.repeat(v, 1000, axis=0) for k, v in few.arrays.items()}, None, "x.npz", "")
    targets = ["onnx:fp32", "onnx:int8", "tflite:fp32", "tflite:int8"]
    assert 30.0 < seconds_after_searches(tmp_path / "m.onnx", few, targets) \
        < seconds_after_searches(tmp_path / "m.onnx", many, targets)
    wrong = samples.Feeds({"a": few.arrays["a"]}, None, "x.npz", "")  # an input missing: no estimate, no crash
    assert seconds_after_searches(tmp_path / "m.onnx", wrong, targets) == 0.0
