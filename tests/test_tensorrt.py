"""TensorRT without a GPU: the int8 file TensorRT takes, the rules that name what it refuses, the runtime's
cache keys and its one-line errors, and the Jetson plan that builds engines and runs the golden pairs there.

What needs an NVIDIA GPU (building an engine, its latency) runs only where one is: not on the machines these
tests run on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.devices import load as load_device
from edgekit.export.onnx_tensorrt import check

from .conftest import RECIPES, edgekit

# ---------------------------------------------------------------- hand-made Q/DQ graphs


def qdq_graph(*, zp_dtype=np.int8, zp=0, weight_scale="per_channel", axis=0, quantize_input=True,
              residual="both", after="Relu") -> onnx.ModelProto:
    """x -> Q/DQ -> Conv(DQ(w)) -> y1 ; y1 + (Q/DQ or not)(x) -> Add -> after -> out. Knobs break one rule each."""
    rng = np.random.default_rng(0)
    w = rng.integers(-100, 100, (4, 4, 3, 3)).astype(np.int8)
    scale = np.full(4, 0.01, np.float32) if weight_scale == "per_channel" else np.array(0.01, np.float32)
    inits = [numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(scale, "w_scale"),
             numpy_helper.from_array(np.zeros(scale.shape, np.int8), "w_zp"),
             numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(zp, zp_dtype), "x_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"], name="q_x"),
             helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="dq_w", axis=axis),
             helper.make_node("Conv", ["x_dq" if quantize_input else "x", "w"], ["y1"], name="conv", pads=[1] * 4)]
    if residual == "both":
        nodes += [helper.make_node("QuantizeLinear", ["y1", "x_scale", "x_zp"], ["y1_q"], name="q_y1"),
                  helper.make_node("DequantizeLinear", ["y1_q", "x_scale", "x_zp"], ["y1_dq"], name="dq_y1"),
                  helper.make_node("Add", ["y1_dq", "x_dq"], ["s"], name="residual_add")]
    else:
        nodes.append(helper.make_node("Add", ["y1", "x_dq"], ["s"], name="residual_add"))
    nodes.append(helper.make_node(after, ["s"], ["out"], name="act"))
    if after == "Sigmoid":  # a Q/DQ pair before the Sigmoid: TensorRT cannot fuse it
        nodes[-1] = helper.make_node("QuantizeLinear", ["s", "x_scale", "x_zp"], ["s_q"], name="q_s")
        nodes += [helper.make_node("DequantizeLinear", ["s_q", "x_scale", "x_zp"], ["s_dq"], name="dq_s"),
                  helper.make_node("Sigmoid", ["s_dq"], ["out"], name="act")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def violations(tmp_path, **knobs) -> list[str]:
    path = tmp_path / "m.onnx"
    onnx.save(qdq_graph(**knobs), str(path))
    return [str(v) for v in check(path)]


def test_a_graph_that_follows_tensorrts_rules_has_no_violation(tmp_path):
    assert violations(tmp_path) == []


@pytest.mark.parametrize("knobs, node, says", [
    ({"zp_dtype": np.uint8, "zp": 128}, "q_x (QuantizeLinear)", "uint8 zero point"),
    ({"zp": 3}, "dq_x (DequantizeLinear)", "zero point 3 != 0"),
    ({"weight_scale": "per_tensor"}, "conv (Conv)", "per-tensor weight scale"),
    ({"axis": 1}, "conv (Conv)", "weight scales on axis 1, the output channels are axis 0"),
    ({"quantize_input": False}, "conv (Conv)", "input x is not quantized"),
    ({"residual": "one"}, "residual_add (Add)", "residual Add with one quantized input: y1 is float"),
    ({"after": "Sigmoid"}, "dq_s (DequantizeLinear)", "Q/DQ before Sigmoid"),
])
def test_each_broken_rule_is_named_at_its_node(tmp_path, knobs, node, says):
    found = violations(tmp_path, **knobs)
    assert any(v.startswith(node) and says in v for v in found), found


def test_a_float_model_is_not_a_tensorrt_int8_model(tmp_path):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(g), str(tmp_path / "f.onnx"))
    assert "no Q/DQ nodes" in str(check(tmp_path / "f.onnx")[0])


# ---------------------------------------------------------------- the runtime without a GPU


def test_engine_cache_keys_change_with_each_thing_an_engine_binds_to():
    from edgekit.device.runtime.tensorrt import engine_key, engine_path

    base = ("ab" * 32, "10.3.0", "Orin (nvgpu)", "int8")
    k = engine_key(*base)
    assert k == engine_key(*base) and len(k) == 32
    for i, other in enumerate(("cd" * 32, "10.4.0", "NVIDIA A10G", "fp16")):
        changed = list(base)
        changed[i] = other
        assert engine_key(*changed) != k
    assert engine_path(Path("/b/model_int8_tensorrt.onnx"), k, home="/h") == Path(
        f"/h/engines/model_int8_tensorrt-{k}.engine")
    with pytest.raises(ValueError):
        engine_key("ab" * 32, "10.3.0", "gpu", "int4")


FAKE_TENSORRT = {  # what a machine with TensorRT and cuda-python but no GPU looks like to edgekit
    "tensorrt/__init__.py": "__version__ = '10.3.0'\n",
    "cuda/__init__.py": "",
    "cuda/bindings/__init__.py": "",
    "cuda/bindings/runtime.py": "def cudaGetDeviceCount():\n    return (100, 0)  # cudaErrorNoDevice\n",
}


@pytest.mark.parametrize("installed", ["nothing", "tensorrt, no GPU"])
def test_tensorrt_says_in_one_line_what_is_missing(digits_run, tmp_path, installed):
    """`bench` stops with exit 2; the smoke test on a bundle records the same line in its report (exit 1)."""
    from edgekit.pack import bundle

    env = {}
    if installed != "nothing":
        for rel, text in FAKE_TENSORRT.items():
            (tmp_path / "site" / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "site" / rel).write_text(text)
        env["PYTHONPATH"] = str(tmp_path / "site")
    says = "needs tensorrt" if installed == "nothing" else "no CUDA GPU here"
    proc = edgekit("bench", str(digits_run / "artifacts" / "model_fp32.onnx"), "--runtime", "tensorrt", env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith("edgekit: error: ") and says in line
    if installed == "nothing":
        return
    b = bundle(digits_run, "jetson_orin_nano", tmp_path / "b")
    proc = edgekit("smoke", str(b.path), "--runtime", "tensorrt", "--json", "--iterations", "2", env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    on_trt = [a.name for a in b.artifacts if "tensorrt" in a.runtimes]
    assert on_trt == ["onnx_fp32"] and not report["passed"]
    assert any(p.startswith("onnx_fp32 on tensorrt: ") and says in p for p in report["problems"])


# ---------------------------------------------------------------- the recipe's TensorRT-ready int8, end to end


@pytest.fixture(scope="module")
def trt_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("trt_runs")
    proc = edgekit("run", str(RECIPES / "digits_resnet8.yaml"), "--out", str(out),
                   "--set", "export.targets=[onnx:fp32,onnx:int8,onnx:int8_tensorrt]", "--set", "bench.threads=[1]",
                   "--set", "bench.iterations=30")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((out / "digits_resnet8").iterdir())
    return run


@pytest.mark.slow
def test_the_tensorrt_ready_int8_passes_the_budget_on_onnxruntime_and_the_rules(trt_run):
    res = json.loads((trt_run / "results.json").read_text())
    arts = {e["name"]: e for e in res["artifacts"]}
    trt = arts["onnx_int8_tensorrt"]
    assert trt["passed"] and trt["precision"] == "int8_tensorrt"
    assert res["models"]["dense"]["accuracy"] - trt["accuracy"] <= res["budget"]
    assert trt["size_bytes"] < 0.4 * arts["onnx_fp32"]["size_bytes"]
    ok = edgekit("verify", "--rules", "tensorrt", trt["path"])
    assert ok.returncode == 0 and "follows TensorRT's explicit-quantization rules" in ok.stdout
    bad = edgekit("verify", "--rules", "tensorrt", arts["onnx_int8"]["path"])  # onnxruntime's uint8 activations
    assert bad.returncode == 1 and "uint8 zero point: TensorRT takes int8 only" in bad.stdout


@pytest.mark.slow
def test_the_jetson_dry_run_builds_each_engine_then_runs_the_golden_pairs_through_tensorrt(trt_run, tmp_path):
    from edgekit.deploy import _python_body, plan
    from edgekit.deploy.transports import transport_for
    from edgekit.pack import bundle

    b = bundle(trt_run, "jetson_orin_nano", tmp_path / "jetson")
    assert "onnx_int8_tensorrt" in [a.name for a in b.artifacts]
    dev = load_device("jetson_orin_nano")
    steps = plan(b, dev, transport_for(dev, host="nvidia@jetson.local"), remote_dir="/opt/ek")
    names = [s.name for s in steps]
    assert names[-4:] == ["tensorrt onnx_fp32 fp32", "tensorrt onnx_fp32 fp16", "tensorrt onnx_int8_tensorrt int8",
                          "tensorrt golden pairs"]
    int8 = steps[names.index("tensorrt onnx_int8_tensorrt int8")].argv[-1]
    assert "--onnx=/opt/ek/bundles/jetson/artifacts/model_int8_tensorrt.onnx" in int8
    assert int8.endswith("--int8 --fp16")
    golden = steps[-1].argv[-1]
    assert golden.startswith("/opt/ek/venv/bin/python -m edgekit smoke /opt/ek/bundles/jetson --json --runtime "
                             "tensorrt")
    assert "--system-site-packages" in steps[names.index("create environment")].argv[-1]  # JetPack's tensorrt
    proc = edgekit("deploy", str(b.path), "--host", "nvidia@jetson.local", "--dry-run")
    assert proc.returncode == 0 and "# tensorrt golden pairs" in proc.stdout and "--int8 --fp16" in proc.stdout

    # What the device sends back, from stand-ins: trtexec's summary and the smoke report of the golden pairs.
    trtexec = ("[I] Latency: min = 0.31 ms, max = 0.52 ms, mean = 0.33 ms, median = 0.32 ms, "
               "percentile(90%) = 0.35 ms\n&&&& PASSED TensorRT.trtexec\n")
    smoke = {"passed": True, "runtime": "tensorrt", "artifacts": [{"artifact": "onnx_int8_tensorrt", "passed": True}]}
    outputs = {"probe": {"stdout": "{}", "returncode": 0}, "smoke": {"stdout": json.dumps({"passed": True}),
                                                                       "returncode": 0},
               **{f"trtexec:{s.name.split()[1]}:{s.name.split()[2]}": {"stdout": trtexec, "returncode": 0}
                  for s in steps if s.name.startswith("tensorrt onnx")},
               "tensorrt-smoke": {"stdout": json.dumps(smoke), "returncode": 0, "stderr": ""}}
    body = _python_body(b, dev, transport_for(dev, host="j"), outputs)
    assert body["tensorrt_golden"]["passed"] and {r["mode"] for r in body["tensorrt"]} == {"fp32", "fp16", "int8"}
    outputs["tensorrt-smoke"] = {"stdout": "", "returncode": 2, "stderr": "edgekit: error: no CUDA GPU here"}
    body = _python_body(b, dev, transport_for(dev, host="j"), outputs)
    assert not body["tensorrt_golden"]["passed"] and "no CUDA GPU here" in body["tensorrt_golden"]["problems"][0]

