"""Which layers of an ONNX model int8 hurts most: the ranking behind "the most sensitive layers in float".

Used by the ONNX int8 search (:mod:`edgekit.compress.search`); the TFLite search ranks its layers with
ai-edge-quantizer's validator instead (:func:`edgekit.compress.aeq.tflite_sensitivity`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

# Operators looked through when charging an activation's noise to the weight layer that produced it.
PASS_THROUGH = ("Relu", "Clip", "LeakyRelu", "HardSwish", "HardSigmoid", "Sigmoid", "BatchNormalization", "Identity")


def sensitivity(fp32_path: Path, work: Path, *, calib: np.ndarray, options: dict, log=print) -> list[tuple[str, float]]:
    """Nodes ranked by how much quantization noise each adds: dB of SQNR lost from its inputs to its output.

    The whole model is quantized as the candidates are (``options``, through the same
    :func:`edgekit.export.onnx.quantizer_kwargs`, weights rounded to nearest), both models are run on ``calib``
    with every intermediate tensor as an output, and onnxruntime's ``qdq_loss_debug`` matches the float and
    dequantized activations by tensor name (hence onnxruntime's own files, not edgekit's renamed ones).
    Returns (node name, dB lost), worst first; only nodes that carry weights (Conv, Gemm, MatMul) are ranked.
    """
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as dbg
    from onnxruntime.quantization import quantize_static

    from edgekit.export.onnx import CalibrationReader, pre_process, quantizer_kwargs, unshare_initializers

    sdir = work / "sensitivity"
    sdir.mkdir(parents=True, exist_ok=True)
    pre, qdq = sdir / "pre.onnx", sdir / "qdq.onnx"
    onnx.save_model(unshare_initializers(onnx.load(str(fp32_path))), str(sdir / "unshared.onnx"))
    pre_process(sdir / "unshared.onnx", pre)
    model = onnx.load(str(pre))
    name = model.graph.input[0].name
    # Nearest rounding: GPTQ on these fewer samples would pay for a whole new solve (60 s on resnet50) to rank
    # layers by the activations' noise.
    quantize_static(str(pre), str(qdq), CalibrationReader(name, calib), **quantizer_kwargs(
        **{k: v for k, v in options.items() if k in ("per_channel", "activation", "method", "reduce_range",
                                                     "op_types", "extra_options")}))
    f_aug, q_aug = sdir / "pre_aug.onnx", sdir / "qdq_aug.onnx"
    dbg.modify_model_output_intermediate_tensors(str(pre), str(f_aug))
    dbg.modify_model_output_intermediate_tensors(str(qdq), str(q_aug))
    f_act = dbg.collect_activations(str(f_aug), CalibrationReader(name, calib))
    q_act = dbg.collect_activations(str(q_aug), CalibrationReader(name, calib))
    errors = dbg.compute_activation_error(dbg.create_activation_matching(q_act, f_act))
    sqnr = {t: e.get("xmodel_err") for t, e in errors.items() if e.get("xmodel_err") is not None}
    producer = {o: n for n in model.graph.node for o in n.output}
    weighted = ("Conv", "Gemm", "MatMul", "ConvTranspose")

    def layer_of(tensor: str):
        """The weight layer whose output ``tensor`` is, looking through activations (Relu, Clip, ...)."""
        node = producer.get(tensor)
        while node is not None and node.op_type not in weighted and len(node.input) >= 1:
            node = producer.get(node.input[0]) if node.op_type in PASS_THROUGH else None
        return node

    loss: dict[str, float] = {}
    for tensor, out in sqnr.items():
        node = layer_of(tensor)
        if node is None or not node.name:
            continue
        ins = [sqnr[i] for i in node.input if i in sqnr]
        upstream = min(ins) if ins else 60.0  # the graph input is exact up to its own quantization
        loss[node.name] = max(loss.get(node.name, -1e9), float(min(upstream, 60.0) - min(out, 60.0)))
    ranked = list(loss.items())
    ranked.sort(key=lambda t: -t[1])
    shutil.rmtree(sdir, ignore_errors=True)
    log("  layer sensitivity (dB of SQNR lost, worst first): "
        + ", ".join(f"{n[:48]} {d:.1f}" for n, d in ranked[:5]))
    return ranked
