"""The layers that write a model's outputs: found on ONNX and TFLite graphs, left in float as the int8 searches'
first accuracy remedy, and kept in float by every later candidate once that helped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.compress import output_layers, search, tflite_search

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")


def graph(nodes, outputs, consts):
    """An ONNX model of ``nodes`` reading input ``x`` (1x4), with ``consts`` as initializers."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.ones(shape, np.float32), name) for name, shape in consts.items()]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_the_layer_writing_an_output_is_found_through_reshapes_a_constant_bias_and_softmax():
    from onnx import helper

    n = helper.make_node
    m = graph([n("MatMul", ["x", "w"], ["h"], name="body"), n("Relu", ["h"], ["r"], name="act"),
               n("MatMul", ["r", "v"], ["s"], name="head"), n("Add", ["s", "b"], ["t"], name="bias"),
               n("Reshape", ["t", "shape"], ["u"], name="flat"), n("Softmax", ["u"], ["y"], name="probs")],
              ["y"], {"w": (4, 4), "v": (4, 3), "b": (3,), "shape": (2,)})
    assert output_layers.onnx_output_layers(m) == ["head"]


def test_an_output_that_mixes_two_activations_or_comes_from_a_recurrent_operator_has_no_output_layer():
    """A residual sum before the output is not "the last layer"; a state written by a GRU is not one either, but
    the scores of the same model still have theirs."""
    from onnx import helper

    n = helper.make_node
    residual = graph([n("MatMul", ["x", "w"], ["h"], name="fc"), n("Add", ["h", "x"], ["y"], name="skip")],
                     ["y"], {"w": (4, 4)})
    assert output_layers.onnx_output_layers(residual) == []
    rnn = graph([n("Unsqueeze", ["x", "axes"], ["seq"], name="seq"),
                 n("GRU", ["seq", "W", "R"], ["all", "state"], name="gru", hidden_size=4),
                 n("Squeeze", ["all", "axes2"], ["last"], name="last"),
                 n("Reshape", ["last", "shape"], ["flat"], name="flat"),
                 n("Gemm", ["flat", "v"], ["scores"], name="classifier")],
                ["scores", "state"], {"axes": (1,), "W": (1, 12, 4), "R": (1, 12, 4), "axes2": (1,), "shape": (2,),
                                      "v": (4, 3)})
    assert output_layers.onnx_output_layers(rnn) == ["classifier"]


def test_many_output_heads_are_not_treated_as_the_output_layer():
    from onnx import helper

    k = output_layers.MAX_OUTPUT_LAYERS + 1
    m = graph([helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"], name=f"head{i}") for i in range(k)],
              [f"y{i}" for i in range(k)], {f"w{i}": (4, 2) for i in range(k)})
    assert output_layers.onnx_output_layers(m) == []


class Outlier(torch.nn.Module):
    """A small conv net whose classifier has one weight per row 1000x the others: rounded per row to int8, the
    other weights of each row fall to zero, so the output layer is the one int8 cannot carry."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc = torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8 * 6 * 6, 4)
        with torch.no_grad():
            self.fc.weight[:, 0] = 1000.0 * self.fc.weight.abs().max()

    def forward(self, x):
        return self.fc(self.conv(x).relu().flatten(1))


def outlier_data():
    rng = np.random.default_rng(0)
    calib, x = rng.normal(size=(64, 3, 8, 8)).astype(np.float32), rng.normal(size=(64, 3, 8, 8)).astype(np.float32)
    model = Outlier().eval()
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    return model, calib, x, reference


def test_onnx_search_tries_the_output_layer_in_float_right_after_plain_int8_and_later_candidates_keep_it(tmp_path):
    from edgekit.export.onnx import save_onnx, to_onnx_proto

    model, calib, x, reference = outlier_data()
    save_onnx(to_onnx_proto(model, x[:1]), tmp_path / "m.onnx", {})
    heads = output_layers.onnx_output_layers_of(tmp_path / "m.onnx", tmp_path / "w")
    assert len(heads) == 1
    lines: list[str] = []
    tried = search.onnx_int8(tmp_path / "m.onnx", tmp_path / "w", calib=calib, x=x, y=None, reference=reference,
                             gate=search.Gate(-1.0, None), metadata={}, log=lines.append, speed_remedies=False)
    names = [c.name for c in tried]
    i = names.index("ptq_float_output_layer")
    # right after plain int8 (and GPTQ, which comes first when the weights' rounding is most of the loss, as here)
    assert names[:i] in (["ptq_minmax_per_channel"], ["ptq_minmax_per_channel", "ptq_gptq"]), names
    head = tried[i]
    assert head.excluded == heads and head.path
    assert search.score(head) > max(search.score(c) for c in tried[:i]), tried[:i + 1]  # what int8 could not carry
    # ... so it stays float everywhere after, the layers-in-float steps counting beside it
    later = [c for c in tried[i + 1:] if c.path]
    assert later and all(heads[0] in c.excluded for c in later), [(c.name, c.excluded) for c in later]
    one = next(c for c in tried if c.name == "ptq_float_1_layers")
    assert len(one.excluded) == 2 and "besides the output layer" in one.remedy
    assert any("stay in float in every later candidate" in ln for ln in lines)
    # the float layer really is float in the file: its weight has no DequantizeLinear
    g = onnx.load(head.path).graph
    dq_outputs = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    gemm = [n for n in g.node if n.op_type in ("Gemm", "MatMul")]
    assert gemm and all(n.input[1] not in dq_outputs for n in gemm)


def test_when_the_output_layer_in_float_does_not_help_later_candidates_quantize_it(tmp_path, monkeypatch):
    from edgekit.export.onnx import save_onnx, to_onnx_proto

    model, calib, x, reference = outlier_data()
    save_onnx(to_onnx_proto(model, x[:1]), tmp_path / "m.onnx", {})
    monkeypatch.setattr(search, "score", lambda c: (0.0 if c.name == "ptq_float_output_layer" else 1.0, 0.0)
                        if c.path else (-1.0, -np.inf))
    tried = search.onnx_int8(tmp_path / "m.onnx", tmp_path / "w", calib=calib, x=x, y=None, reference=reference,
                             gate=search.Gate(-1.0, None), metadata={}, log=lambda m: None, speed_remedies=False)
    i = [c.name for c in tried].index("ptq_float_output_layer")
    assert i <= 2 and all(not c.excluded for c in tried[i + 1:] if c.path and "float" not in c.name)
    # measured alone in float without gain: "the most sensitive layers in float" do not repeat it
    heads = output_layers.onnx_output_layers_of(tmp_path / "m.onnx", tmp_path / "w")
    one = next(c for c in tried if c.name == "ptq_float_1_layers")
    assert one.excluded and heads[0] not in one.excluded, one


def test_tflite_ladder_leaves_the_output_layer_in_float_after_min_max_int8_and_keeps_it_when_it_helped(tmp_path):
    pytest.importorskip("litert_torch")
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.export.tflite import export_tflite

    model, calib, x, reference = outlier_data()
    fp32 = tmp_path / "m.tflite"
    export_tflite(model, x[:1], fp32, precision="fp32", metadata={})
    heads = output_layers.tflite_output_layers(fp32)
    assert len(heads) == 1
    journal = tmp_path / "w" / search.JOURNAL
    tflite_search.tflite_int8(None, tmp_path / "w", calib=calib, x=x, y=None, reference=reference,
                              gate=search.Gate(-1.0, None), metadata={}, fp32_tflite=fp32, log=lambda m: None,
                              speed_remedies=False, journal=journal)
    tried = [json.loads(ln) for ln in journal.read_text().splitlines()]
    names = [c["name"] for c in tried]
    assert names[:2] == ["tflite_aeq_minmax", "tflite_float_output_layer"], names
    minmax, head = tried[0], tried[1]
    assert head["excluded"] == heads and head["top1_agreement"] > minmax["top1_agreement"], (minmax, head)
    later = [c for c in tried[2:] if c["path"]]
    assert later and all(heads[0] in c["excluded"] for c in later)
    # the operator writing the output is float in the file: its weights are float32
    it = Interpreter(model_path=head["path"])
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    fc = next(op for op in it._get_ops_details() if tensors[int(op["outputs"][0])]["name"] == heads[0])  # noqa: SLF001
    assert tensors[int(fc["inputs"][1])]["dtype"] == np.float32


def test_tflite_pt2e_leaves_the_output_layer_in_float_after_plain_int8_and_later_pt2e_candidates_keep_it(
        tmp_path, monkeypatch):
    """litert-torch's quantizer takes no "float" setting for a module; the search drops the output layer's PT2E
    annotations instead, and the file's layer really is float."""
    pytest.importorskip("litert_torch")
    from ai_edge_litert.interpreter import Interpreter

    model, calib, x, reference = outlier_data()
    monkeypatch.setattr(tflite_search, "_aeq_ladder", lambda *a, **k: True)  # stands in for the rest: it passes
    tried = tflite_search.tflite_int8(model, tmp_path / "w", calib=calib, x=x, y=None, reference=reference,
                                      gate=search.Gate(-1.0, None), metadata={}, log=lambda m: None,
                                      speed_remedies=False, weights_first=False)
    names = [c.name for c in tried]
    assert names[:2] == ["tflite_ptq_per_channel", "tflite_ptq_float_output_layer"], names
    plain, head = tried[0], tried[1]
    assert head.options["float_output_layers"] is True
    assert head.top1_agreement > plain.top1_agreement, (plain, head)
    later = [c for c in tried[2:] if c.name.startswith("tflite_ptq")]
    assert later and all(c.options.get("float_output_layers") for c in later), names
    it = Interpreter(model_path=head.path)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    fc = next(op for op in it._get_ops_details() if op["op_name"] == "FULLY_CONNECTED")  # noqa: SLF001
    assert tensors[int(fc["inputs"][1])]["dtype"] == np.float32
    conv = next(op for op in it._get_ops_details() if op["op_name"] == "CONV_2D")  # noqa: SLF001
    assert tensors[int(conv["inputs"][1])]["dtype"] == np.int8  # the rest stays int8
