"""Why isn't it smaller or faster? Facts read off each artifact, and a one-line verdict.

For every artifact: the operator count against the fp32 model's, the Quantize/Dequantize nodes, the
Transpose nodes added (layout conversion between NCHW and NHWC), the weights still stored in float, and
the operators the runtime left in float:

- onnxruntime: the graph after its own optimizations (``optimized_model_filepath``) — QDQ groups it fused
  into integer kernels (QLinearConv, QGemm, ...) against compute nodes still running in float;
- LiteRT: each operator's operand types in the interpreter (an int8 model's float operators run unquantized).
  Which operators XNNPACK took is not exposed by LiteRT's Python API, so it is reported as not known.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from edgekit.errors import first_line

QDQ = ("QuantizeLinear", "DequantizeLinear")
COMPUTE = ("Conv", "Gemm", "MatMul", "ConvTranspose", "Add", "Mul", "AveragePool", "GlobalAveragePool", "MaxPool",
           "Relu", "Clip", "Sigmoid", "HardSwish", "Softmax", "LSTM", "GRU")
INTEGER_KERNELS = ("QLinearConv", "QGemm", "QLinearMatMul", "MatMulIntegerToFloat", "QLinearAdd", "QLinearMul",
                   "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearSigmoid", "QLinearLeakyRelu",
                   "QLinearSoftmax", "QLinearConcat", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul")


def onnx_ops(path: str | Path) -> collections.Counter:
    import onnx

    return collections.Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


def onnx_facts(path: str | Path, reference_ops: collections.Counter) -> dict:
    """Operator, Q/DQ, Transpose and float-weight counts of an ONNX artifact, and what onnxruntime fused."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    float_bytes = total_bytes = 0
    float_weights = []
    for init in proto.graph.initializer:
        arr = numpy_helper.to_array(init)
        total_bytes += arr.nbytes
        if arr.dtype in (np.float32, np.float16, np.float64) and arr.size > 1:
            float_bytes += arr.nbytes
            float_weights.append((init.name, arr.nbytes))
    fused = _ort_fused(path)
    return {
        "ops": sum(ops.values()), "fp32_ops": sum(reference_ops.values()),
        "quantize_dequantize": sum(ops[o] for o in QDQ),
        "transposes": ops["Transpose"], "transposes_added": ops["Transpose"] - reference_ops["Transpose"],
        "float_weight_bytes": float_bytes, "weight_bytes": total_bytes,
        "largest_float_weights": [n for n, _ in sorted(float_weights, key=lambda t: -t[1])[:3]],
        "runtime": "onnxruntime", **fused,
    }


def _ort_fused(path: str | Path) -> dict:
    """Integer kernels onnxruntime made from QDQ groups, and the compute nodes it left in float."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "optimized.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(out)
        try:
            ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            ops = collections.Counter(n.op_type for n in onnx.load(str(out)).graph.node)
        except Exception as exc:  # the facts are a diagnosis: one that cannot be made is said, not raised
            return {"runtime_facts": f"not known ({type(exc).__name__})"}
    integer = {o: n for o, n in ops.items() if o in INTEGER_KERNELS or o.startswith("QLinear")}
    float_ops = {o: n for o, n in ops.items() if o in COMPUTE or o.startswith("Fused")}
    return {"integer_kernels": dict(sorted(integer.items())), "float_compute_ops": dict(sorted(float_ops.items())),
            "remaining_qdq_after_optimization": sum(ops[o] for o in QDQ)}


def tflite_facts(path: str | Path, reference_ops: collections.Counter) -> dict:
    """Operator, Quantize/Dequantize, Transpose and float-weight counts of a TFLite artifact."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    ops = it._get_ops_details()  # noqa: SLF001 — the only API that lists operators with their operand types
    names = collections.Counter(o["op_name"] for o in ops)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    float_ops = collections.Counter()
    for o in ops:
        if o["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        if any(np.dtype(t) == np.float32 for t in o.get("operand_types", [])):
            float_ops[o["op_name"]] += 1
    produced = {int(i) for o in ops for i in o["outputs"]}
    float_bytes = total_bytes = 0
    for idx, t in tensors.items():
        if idx in produced or not t["shape"].size or int(np.prod(t["shape"])) <= 1:
            continue
        try:
            arr = it.get_tensor(idx)
        except ValueError:  # inputs and intermediates hold no data until invoked
            continue
        total_bytes += arr.nbytes
        if arr.dtype in (np.float32, np.float16):
            float_bytes += arr.nbytes
    return {
        "ops": sum(names.values()), "fp32_ops": sum(reference_ops.values()),
        "quantize_dequantize": names["QUANTIZE"] + names["DEQUANTIZE"],
        "transposes": names["TRANSPOSE"], "transposes_added": names["TRANSPOSE"] - reference_ops["Transpose"],
        "float_weight_bytes": float_bytes, "weight_bytes": total_bytes,
        "float_compute_ops": dict(sorted(float_ops.items())),
        "runtime": "litert", "runtime_facts": "which operators XNNPACK took is not exposed by LiteRT's Python API",
    }


def facts(path: str | Path, fmt: str, reference_ops: collections.Counter) -> dict:
    try:
        return onnx_facts(path, reference_ops) if fmt == "onnx" else tflite_facts(path, reference_ops)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {first_line(exc)[:160]}"}


def verdict(entry: dict, fp32: dict | None, cpu_note: str) -> str:
    """One line: did this artifact get smaller and faster than fp32 on this machine, and if not, why."""
    if fp32 is None or entry is fp32:
        return ""
    f = entry.get("diagnostics", {})
    size = entry["size_bytes"] / fp32["size_bytes"]
    ratios = [r for by_t in (entry.get("speed_vs_fp32") or {}).values() for r in by_t.values()]
    parts = [f"{size:.2f}x the fp32 size"]
    if f.get("float_weight_bytes"):
        parts.append(f"{f['float_weight_bytes'] / 1024:.1f} KB of weights still float")
    if not ratios:
        return "; ".join(parts) + "; latency not measured"
    worst = max(ratios)
    if worst <= 1.0:
        return "; ".join(parts) + f"; {worst:.2f}x the fp32 latency (faster)"
    reasons = []
    if entry["precision"] == "int8":
        reasons.append(cpu_note)
        fl = f.get("float_compute_ops") or {}
        if fl:
            reasons.append("still float: " + ", ".join(f"{n} {op}" for op, n in fl.items()))
        if f.get("remaining_qdq_after_optimization"):
            reasons.append(f"{f['remaining_qdq_after_optimization']} Quantize/Dequantize nodes left after the "
                           f"runtime's optimization (conversions between layers)")
        if f.get("transposes_added", 0) > 0:
            reasons.append(f"{f['transposes_added']} Transpose nodes added")
        return (f"int8 did not reduce latency on this machine ({worst:.2f}x fp32): " + "; ".join(reasons)
                + f" ({'; '.join(parts)})")
    if entry["precision"] == "fp16":
        return (f"fp16 weights are converted back to float32 at load or run time, so latency is not lower "
                f"({worst:.2f}x fp32); it saves size only ({'; '.join(parts)})")
    return "; ".join(parts) + f"; {worst:.2f}x the fp32 latency"
