"""TensorRT-ready int8 ONNX: symmetric int8 Q/DQ where TensorRT fuses it, and the rules that say so.

edgekit's ``onnx:int8`` is tuned for onnxruntime on CPUs (uint8 activations with zero points, 7-bit weights).
TensorRT's explicit quantization takes only symmetric int8 Q/DQ (zero point 0) and fuses a DequantizeLinear
into the layer it feeds; a Q/DQ pair before an operator it cannot fuse costs a conversion and runs the operator
in float. So the ``onnx:int8_tensorrt`` target quantizes with onnxruntime's quantizer (the same calibration)
under TensorRT's rules, as NVIDIA's ModelOpt places them by default:

- activations and weights int8, symmetric, zero points 0; full 8-bit weights (no reduce_range);
- per-channel weight scales on the output-channel axis;
- Q/DQ only on the inputs of Conv, ConvTranspose, Gemm and MatMul, and on both inputs of an Add (a residual
  join), not around every elementwise operator.

:func:`check` names every node that breaks those rules (``edgekit verify --rules tensorrt``), on any ONNX file,
so a model quantized elsewhere can be checked before a Jetson spends minutes building an engine from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.device.artifact import Artifact
from edgekit.errors import DataError

PRECISION = "int8_tensorrt"
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Operators TensorRT fuses a DequantizeLinear into, or moves Q/DQ across without a float round trip.
FUSES_DQ = (*WEIGHTED, "Add", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Reshape",
            "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Relu", "Pad", "Slice", "Split", "Resize",
            "QuantizeLinear")


def quantize_onnx_tensorrt(fp32_path: str | Path, path: str | Path, calib: np.ndarray, *,
                           metadata: dict | None = None, method: str = "minmax") -> Artifact:
    """Static symmetric int8 QDQ quantization of an ONNX file for TensorRT, calibrated on ``calib``."""
    from edgekit.export.onnx import quantize_onnx

    art = quantize_onnx(fp32_path, path, calib, metadata=metadata, per_channel=True, activation="int8",
                        method=method, reduce_range=False, op_types=list(QUANTIZED_OPS),
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
                        precision=PRECISION)
    return art


def export_onnx_int8_tensorrt(model, example: np.ndarray, path: str | Path, *, metadata: dict,
                              calib: np.ndarray | None = None) -> Artifact:
    """Export ``model`` to float ONNX, then quantize it for TensorRT (symmetric int8 Q/DQ) on ``calib``."""
    from edgekit.export.onnx import save_onnx, scratch, to_onnx_proto

    path = Path(path)
    with scratch(path) as work:
        save_onnx(to_onnx_proto(model, example), work / "fp32.onnx", {**metadata, "precision": "fp32"})
        return quantize_onnx_tensorrt(work / "fp32.onnx", path, calib, metadata={**metadata, "precision": PRECISION})


@dataclass(frozen=True)
class Violation:
    node: str
    op: str
    rule: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op}): {self.rule}"


def check(path: str | Path) -> list[Violation]:
    """Every node of an ONNX file that breaks TensorRT's explicit-quantization rules (empty: none).

    Raises:
        DataError: the file is not a readable ONNX model.
    """
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load(str(path))
    except Exception as exc:
        raise DataError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    g = proto.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR}
    values = {**inits, **consts}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out: list[Violation] = []

    def name(n) -> str:
        return n.name or f"{n.op_type}->{n.output[0] if n.output else '?'}"

    def from_dq(tensor: str) -> bool:
        p = producer.get(tensor)
        return p is not None and p.op_type == "DequantizeLinear"

    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node):
        return [Violation(g.name or Path(path).name, "graph", "no Q/DQ nodes: this is a float model")]
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = values.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            if zp is not None and zp.dtype != np.int8:
                out.append(Violation(name(n), n.op_type, f"{zp.dtype} zero point: TensorRT takes int8 only"))
            elif zp is not None and np.any(zp != 0):
                out.append(Violation(name(n), n.op_type, f"zero point {int(np.max(np.abs(zp)))} != 0: "
                                                         "TensorRT takes symmetric quantization only"))
        if n.op_type == "DequantizeLinear":
            bad = sorted({c.op_type for c in consumers.get(n.output[0], []) if c.op_type not in FUSES_DQ})
            if bad:
                out.append(Violation(name(n), n.op_type, f"Q/DQ before {', '.join(bad)}: TensorRT does not fuse "
                                                         "it, so the operator runs in float after a conversion"))
        if n.op_type in WEIGHTED:
            data, weight = n.input[0], n.input[1] if len(n.input) > 1 else ""
            if not from_dq(data):
                out.append(Violation(name(n), n.op_type, f"input {data} is not quantized: the layer runs in float"))
            wdq = producer.get(weight)
            if wdq is None or wdq.op_type != "DequantizeLinear":
                if weight in values or (wdq is not None and wdq.op_type != "DequantizeLinear"):
                    out.append(Violation(name(n), n.op_type, f"weight {weight} is not quantized"))
            else:
                out += _weight_rule(n, wdq, values, name)
        if n.op_type == "Add":
            data = [i for i in n.input if i not in values]
            q = [from_dq(i) for i in data]
            if len(data) == 2 and any(q) and not all(q):
                plain = data[q.index(False)]
                out.append(Violation(name(n), n.op_type, f"residual Add with one quantized input: {plain} is "
                                                         "float, so TensorRT cannot fuse the join in int8"))
    return out


def _weight_rule(node, wdq, values, name) -> list[Violation]:
    """Per-channel weight scales on the output-channel axis."""
    scale = values.get(wdq.input[1])
    weight = values.get(wdq.input[0])
    if scale is None:
        return []
    axis = next((a.i for a in wdq.attribute if a.name == "axis"), 1)
    if node.op_type == "Conv":
        want = 0
    elif node.op_type == "ConvTranspose":
        want = 1
    elif node.op_type == "Gemm":
        want = 0 if next((a.i for a in node.attribute if a.name == "transB"), 0) else 1
    else:  # MatMul: [K, N] weights, one scale per output column
        want = (weight.ndim - 1) if weight is not None else 1
    if scale.size <= 1:
        channels = weight.shape[want] if weight is not None and weight.ndim > want else "?"
        if channels == 1:
            return []
        return [Violation(name(node), node.op_type, f"per-tensor weight scale: TensorRT wants one per output "
                                                    f"channel ({channels}, axis {want})")]
    if weight is not None and weight.ndim:
        axis = axis % weight.ndim
    if axis != want:
        return [Violation(name(node), node.op_type, f"weight scales on axis {axis}, the output channels are "
                                                    f"axis {want}")]
    return []
