"""A PyTorch model litert-torch cannot convert still gets its TFLite artifacts, from its ONNX file.

Seen on timm's mobilevitv2_050: litert-torch's converter passes refuse its linear attention's broadcasting
multiply ("'tfl.mul' op operands don't have broadcast-compatible shapes"), dense or pruned, while the model
exports to ONNX. The ONNX -> TFLite routes take over, and the int8 search keeps to ai-edge-quantizer (its
PT2E candidates would fail the same way).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ai_edge_litert")

from edgekit.compress import target_jobs  # noqa: E402

MODEL = """import torch


def build():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, 4))
"""


@pytest.fixture
def user_model(tmp_path):
    """A user's model file, its weights, its float ONNX file and the data a job reads."""
    from edgekit.compress.source import ModelRef
    from edgekit.export.onnx import export_onnx_fp32

    (tmp_path / "net.py").write_text(MODEL)
    torch.manual_seed(0)
    ns: dict = {}
    exec(MODEL, ns)  # noqa: S102 - the test's own model definition
    model = ns["build"]().eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    rng = np.random.default_rng(0)
    calib, x = rng.normal(size=(64, 3, 16, 16)).astype(np.float32), rng.normal(size=(48, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    np.savez(tmp_path / "data.npz", calib=calib, x=x, reference=reference)
    onnx_path = tmp_path / "fp32.onnx"
    export_onnx_fp32(model, x[:1], onnx_path, metadata={"labels": list("abcd")})
    ref = ModelRef(spec=f"{tmp_path / 'net.py'}:build", args={}, weights=str(tmp_path / "w.pt")).as_dict()
    return ref, str(onnx_path), str(tmp_path / "data.npz")


def _litert_torch_refuses(monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("Failed to run converter passes: error: 'tfl.mul' op operands don't have "
                         "broadcast-compatible shapes")

    monkeypatch.setattr("edgekit.export.tflite.export_tflite", refuse)


def test_fp32_tflite_comes_from_the_onnx_file_when_litert_torch_refuses_the_model(user_model, tmp_path, monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    ref, onnx_path, data = user_model
    _litert_torch_refuses(monkeypatch)
    out = tmp_path / "model_fp32.tflite"
    made = target_jobs.tflite_float(precision="fp32", ref=ref, onnx=onnx_path, data=data, out=str(out),
                                    metadata={"labels": list("abcd")})
    assert made["route"] and out.is_file()
    assert "litert-torch could not convert the PyTorch model" in made["notes"][0]
    assert "broadcast-compatible" in made["notes"][0] and "from its ONNX file instead" in made["notes"][0]
    Interpreter(model_path=str(out)).allocate_tensors()


def test_without_an_onnx_file_the_converters_failure_is_the_jobs(user_model, tmp_path, monkeypatch):
    ref, _, data = user_model
    _litert_torch_refuses(monkeypatch)
    with pytest.raises(ValueError, match="converter passes"):
        target_jobs.tflite_float(precision="fp32", ref=ref, onnx=None, data=data, out=str(tmp_path / "m.tflite"),
                                 metadata={})


@pytest.mark.parametrize("source", ["pytorch", "onnx"])
def test_the_int8_search_keeps_to_ai_edge_quantizer_when_litert_torch_refuses_the_model(user_model, tmp_path,
                                                                                       monkeypatch, source):
    """The user's PyTorch model, or onnx2torch's rebuild of a user's ONNX file; no fp32 TFLite target was made
    (int8 alone was asked for): the job converts the ONNX file itself, and the search goes on without PT2E."""
    import time

    ref, onnx_path, data = user_model
    if source == "onnx":
        ref = None
    _litert_torch_refuses(monkeypatch)
    found = target_jobs.tflite_int8(ref=ref, onnx=onnx_path, data=data, work=str(tmp_path / "tfl"),
                                    gate={"budget": 0.01, "baseline": None}, metadata={"labels": list("abcd")},
                                    fp32_tflite=None, mirror_axis=None, threads=1, deadline=time.monotonic() + 120)
    names = [c["name"] for c in found["candidates"]]
    assert names and not any(n.startswith("tflite_ptq") or n == "tflite_qat" for n in names), names
    assert any(n.startswith("tflite_aeq") for n in names)
    assert "litert-torch could not convert" in found["note"]


@pytest.mark.parametrize("ref, fp32_stage, took", [
    ({"spec": "net.py:build"}, {}, True),  # litert-torch converted the user's model
    ({"spec": "net.py:build"}, {"route": "onnx2tf", "routes": {"onnx2tf": {}}}, False),  # it had to go through ONNX
    (None, {"route": "onnx2torch", "routes": {"onnx2torch": {}, "onnx2tf": {}}}, True),  # the rebuild converted
    (None, {"route": "onnx2tf", "routes": {"onnx2tf": {}}, "notes": ["onnx2torch failed: ..."]}, False),
    (None, {}, None),  # no record: the job finds out
])
def test_the_int8_search_knows_from_the_fp32_target_whether_pt2e_can_convert_the_model(ref, fp32_stage, took):
    """PT2E candidates convert with litert-torch; how the fp32 TFLite target was made says whether it can, for
    the user's model and for onnx2torch's rebuild of an ONNX file alike, so no PT2E candidate is spent failing."""
    from edgekit.compress.job import litert_torch_took

    record = {"stages": {"onnx_to_tflite": {"fp32": fp32_stage}}} if fp32_stage else {}
    assert litert_torch_took(ref, record) is took
