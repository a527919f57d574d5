"""GPTQ rounding of int8 weights (edgekit.export.gptq): same grid as round-to-nearest, smaller output error."""

import numpy as np
import pytest

from edgekit.export import gptq


def _nearest(w, s, z, lo, hi):
    return np.clip(np.round(w / s[..., None]) + z[..., None], lo, hi)


def test_with_an_identity_hessian_gptq_is_round_to_nearest():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 5, 20))
    s = np.abs(w).max(-1) / 127
    z = np.zeros_like(s)
    q = gptq.gptq_levels(w, np.broadcast_to(np.eye(20), (2, 20, 20)), s, z, -127, 127, damp=0.0)
    assert np.array_equal(q, _nearest(w, s, z, -127, 127))


def test_gptq_changes_a_layers_outputs_less_than_rounding_to_nearest():
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(64, 64))
    x = rng.normal(size=(2000, 64)) @ mix  # correlated inputs, as real activations are
    w = rng.normal(size=(32, 64))
    s, z = np.abs(w).max(1) / 15, np.zeros(32)  # a coarse grid makes the difference plain
    q = gptq.gptq_levels(w[None], (x.T @ x)[None], s[None], z[None], -15, 15)[0]
    near = _nearest(w, s, z, -15, 15)
    err_gptq = np.linalg.norm(x @ (w - q * s[:, None]).T)
    err_near = np.linalg.norm(x @ (w - near * s[:, None]).T)
    assert q.min() >= -15 and q.max() <= 15
    assert err_gptq < 0.8 * err_near


def test_gptq_keeps_levels_inside_the_span_it_is_given():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
    w = rng.normal(size=(1, 8, 16))
    s = np.abs(w[0]).max(1)[None] / 64
    q = gptq.gptq_levels(w, (x.T @ x)[None], s, np.zeros_like(s), -64, 64)
    assert q.min() >= -64 and q.max() <= 64


@pytest.mark.parametrize("group,stride,pad,dilation", [(1, 1, 1, 1), (2, 2, 0, 1), (4, 1, 2, 2)])
def test_conv_patches_times_the_weights_give_the_convolutions_outputs(group, stride, pad, dilation):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 8, 11, 9)).astype(np.float32)
    conv = torch.nn.Conv2d(8, 12, 3, stride=stride, padding=pad, dilation=dilation, groups=group, bias=False)
    y = conv(torch.from_numpy(x)).detach().numpy()  # (N, O, Ho, Wo)
    w = conv.weight.detach().numpy().reshape(group, 12 // group, -1)  # (G, R, D)
    a = {"group": group, "kernel": (3, 3), "strides": (stride,) * 2, "dilations": (dilation,) * 2,
         "pads": (pad,) * 4, "auto_pad": "NOTSET"}
    pick = np.arange(y.shape[2] * y.shape[3])
    p = gptq.patches(x, a, pick)  # (N*P, G, D)
    got = np.einsum("ngd,grd->ngr", p, w).reshape(2, len(pick), 12)
    want = y.reshape(2, 12, -1).transpose(0, 2, 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _small_net_onnx(tmp_path):
    torch = pytest.importorskip("torch")
    from edgekit.export.onnx import export_onnx_fp32

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1, groups=4), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10)).eval()
    rng = np.random.default_rng(0)
    # smooth images: neighbouring pixels correlate, as in real data
    base = rng.normal(size=(300, 3, 5, 5)).astype(np.float32)
    x = torch.nn.functional.interpolate(torch.from_numpy(base), size=(16, 16), mode="bilinear").numpy()
    path = tmp_path / "fp32.onnx"
    export_onnx_fp32(net, x[:1], path, metadata={})
    return path, x[:200], x[200:]


def test_gptq_quantized_onnx_has_the_same_graph_and_scales_and_is_closer_to_fp32(tmp_path):
    import onnx
    from onnx import numpy_helper

    from edgekit.device.runtime import open_session
    from edgekit.export.onnx import quantize_onnx

    fp32, calib, held_out = _small_net_onnx(tmp_path)
    near, gq = tmp_path / "near.onnx", tmp_path / "gptq.onnx"
    quantize_onnx(fp32, near, calib, metadata={}, reduce_range=True)
    quantize_onnx(fp32, gq, calib, metadata={}, reduce_range=True, weight_rounding="gptq")
    a, b = onnx.load(str(near)), onnx.load(str(gq))
    assert [n.op_type for n in a.graph.node] == [n.op_type for n in b.graph.node]
    ia = {i.name: numpy_helper.to_array(i) for i in a.graph.initializer}
    ib = {i.name: numpy_helper.to_array(i) for i in b.graph.initializer}
    assert ia.keys() == ib.keys()
    weights = [k for k, v in ia.items() if v.dtype == np.int8 and v.ndim >= 2]
    assert len(weights) == 4
    assert any(not np.array_equal(ia[k], ib[k]) for k in weights)
    for k, v in ia.items():
        if k not in weights:
            assert np.array_equal(v, ib[k]), k  # scales, zero points, biases: untouched
    assert all(np.abs(ib[k]).max() <= 64 for k in weights)  # 7-bit weights stay 7-bit
    with open_session(str(fp32)) as s:
        ref = s.run(held_out)
    errs = {}
    for name, path in (("nearest", near), ("gptq", gq)):
        with open_session(str(path)) as s:
            errs[name] = float(np.mean((s.run(held_out) - ref) ** 2))
    assert errs["gptq"] < errs["nearest"], errs


def test_weight_rounding_must_be_a_known_one(tmp_path):
    from edgekit.export.onnx import quantize_onnx

    fp32, calib, _ = _small_net_onnx(tmp_path)
    with pytest.raises(ValueError, match="weight_rounding"):
        quantize_onnx(fp32, tmp_path / "q.onnx", calib, weight_rounding="stochastic")


def _tflite_weights(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    consts = {}
    for t in it.get_tensor_details():
        if t["dtype"] == np.int8 and len(t["shape"]) >= 2 and len(t["quantization_parameters"]["scales"]) > 1:
            consts[t["name"]] = (it.get_tensor(t["index"]).copy(), t["quantization_parameters"]["scales"].copy())
    return consts


def test_gptq_tflite_int8_keeps_the_scales_and_moves_some_weight_levels(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("litert_torch")
    from edgekit.export.tflite import export_tflite

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1, groups=4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
    base = np.random.default_rng(0).normal(size=(64, 3, 5, 5)).astype(np.float32)
    x = torch.nn.functional.interpolate(torch.from_numpy(base), size=(16, 16), mode="bilinear").numpy()
    made = {}
    for rounding in ("nearest", "gptq"):
        path = tmp_path / f"{rounding}.tflite"
        export_tflite(net, x[:1], path, precision="int8", metadata={}, calib=x,
                      int8_options={"weight_rounding": rounding})
        made[rounding] = _tflite_weights(path)
    near, gq = made["nearest"], made["gptq"]
    assert near.keys() == gq.keys() and len(near) == 3  # two convolutions and the classifier, per channel
    for name in near:
        np.testing.assert_array_equal(near[name][1], gq[name][1])  # the grid is the quantizer's own
        assert np.abs(gq[name][0].astype(int) - near[name][0]).mean() < 1  # most levels stay, some move a step
    assert any(not np.array_equal(near[k][0], gq[k][0]) for k in near)


def test_weights_of_inputs_the_calibration_never_saw_are_rounded_to_nearest_not_dropped():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    x[:, 3] = 0.0  # a channel that was never active on the calibration samples
    w = rng.normal(size=(1, 6, 12))
    s = np.abs(w[0]).max(1)[None] / 127
    q = gptq.gptq_levels(w, (x.T @ x)[None], s, np.zeros_like(s), -127, 127)
    np.testing.assert_array_equal(q[0, :, 3], _nearest(w, s, np.zeros_like(s), -127, 127)[0, :, 3])
