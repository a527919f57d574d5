"""ai-edge-quantizer on a float .tflite: static int8 with chosen operators left in float, and the per-operator
sensitivity ranking its validator measures. The TFLite int8 search (:mod:`edgekit.compress.search`) and the
several-input path (:mod:`edgekit.compress.several_io`) both quantize through here."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def aeq_static_int8(flatbuffer: bytes, calib: np.ndarray, *, float_ops=(), op_types=None) -> bytes:
    """ai-edge-quantizer static int8 (int8 weights per channel, int8 activations), calibrated on ``calib``;
    operators whose output tensor is named in ``float_ops`` stay float, and with ``op_types`` (LiteRT names,
    e.g. CONV_2D) only operators of those types are quantized."""
    import re

    from ai_edge_quantizer import qtyping, recipe

    q = _aeq(flatbuffer)
    if op_types is None:
        q.load_quantization_recipe(recipe.static_wi8_ai8())
    else:
        for op in op_types:
            name = _aeq_op_name(op)
            if name is None:
                continue
            q.add_static_config(regex=".*", operation_name=name, activation_num_bits=8, weight_num_bits=8)
    for name in float_ops:
        q.update_quantization_recipe(regex=f"^{re.escape(name)};?$", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                     algorithm_key="no_quantize")
    key, input_name = _signature(flatbuffer)
    with _calibration_bar_on_terminals_only():
        result = q.calibrate({key: [{input_name: calib[i: i + 1]} for i in range(len(calib))]}, num_threads=2)
    return bytes(q.quantize(result, enable_progress_report=False).quantized_model)


def aeq_dynamic_int8(flatbuffer: bytes, op_types=("FULLY_CONNECTED",)) -> bytes:
    """ai-edge-quantizer dynamic int8: int8 weights per channel on the operators of ``op_types``, their inputs
    quantized at run time from each input's own range (XNNPACK's qd8 kernels). No calibration. Measured on
    vit_tiny at 128 px (Xeon, VNNI, 1 thread): 0.43x fp32's latency, every decision kept; on resnet18 with its
    convolutions dynamic as well, 1.4x slower than fp32 — so fully-connected layers only by default."""
    q = _aeq(flatbuffer)
    for op in op_types:
        name = _aeq_op_name(op)
        if name is not None:
            q.add_dynamic_config(regex=".*", operation_name=name, num_bits=8)
    return bytes(q.quantize().quantized_model)


@contextlib.contextmanager
def _calibration_bar_on_terminals_only() -> Iterator[None]:
    """ai-edge-quantizer draws a tqdm bar for every calibration and has no switch for it. On a terminal it
    disappears when done; in a log file its carriage-return updates left ~6 KB per candidate. So when
    stderr is not a terminal the bar is turned off for the duration of the call."""
    from ai_edge_quantizer.utils import progress_utils

    if sys.stderr.isatty():
        yield
        return
    cls = progress_utils.ProgressBar
    original = cls.__init__

    def quiet(self, total_steps, description="", disappear_on_finish=False, enable=None):
        original(self, total_steps, description, disappear_on_finish, enable=False)

    cls.__init__ = quiet
    try:
        yield
    finally:
        cls.__init__ = original


def _aeq_op_name(op: str):
    """ai-edge-quantizer's name for a LiteRT operator (TRANSPOSE_CONV → CONV_2D_TRANSPOSE), or None when it
    cannot quantize that operator."""
    from ai_edge_quantizer import qtyping

    name = {"TRANSPOSE_CONV": "CONV_2D_TRANSPOSE"}.get(op, op)
    return next((m for m in qtyping.TFLOperationName if m.name == name), None)


def _aeq(flatbuffer: bytes):
    from ai_edge_quantizer import quantizer

    return quantizer.Quantizer(bytearray(flatbuffer))


def _signature(flatbuffer: bytes) -> tuple[str, str]:
    from ai_edge_litert.interpreter import Interpreter

    sigs = Interpreter(model_content=flatbuffer).get_signature_list()
    (key, sig), = sigs.items()
    (name,) = sig["inputs"]
    return key, name


def snr_db(power_ratio: float) -> float:
    """ai-edge-quantizer's SNR is a power ratio (mean signal² / mean noise²), not decibels: in dB, as onnxruntime's
    ``qdq_loss_debug`` gives them. Read as dB, every tensor above a ratio of 60 (17.8 dB) hit the 60 dB cap and
    tied at 0 dB lost: the ranking found only the output layer (measured on resmlp_12_224 and convnext_atto)."""
    return 10.0 * float(np.log10(max(power_ratio, 1e-12)))


def tflite_sensitivity(fp32_tflite: Path, calib: np.ndarray) -> list[tuple[str, float]]:
    """Operators of a float .tflite ranked by the SNR (dB) they lose when the model is quantized to int8.

    ai-edge-quantizer quantizes the model and its validator compares every tensor of the int8 model with the
    float one on ``calib``; an operator's loss is its inputs' SNR minus its output's, in dB (:func:`snr_db`).
    Returns (output tensor name, dB lost), worst first, for operators with weights (convolutions, fully connected).
    """
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import recipe
    from ai_edge_quantizer.utils import validation_utils

    fb = fp32_tflite.read_bytes()
    q = _aeq(fb)
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    key, input_name = _signature(fb)
    data = {key: [{input_name: calib[i: i + 1]} for i in range(len(calib))]}
    with _calibration_bar_on_terminals_only():
        q.quantize(q.calibrate(data, num_threads=2), enable_progress_report=False)
    results = q.validate(data, error_metrics=[validation_utils.ValidationErrorMetric.SNR], num_threads=2)
    snr = {}
    for name, value in results.get_all_tensor_results().items():
        v = value.get("snr") if isinstance(value, dict) else value
        if v is not None and np.isfinite(v) and v >= 0:
            snr[name] = snr_db(float(v))
    it = Interpreter(model_content=fb)
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    ops = it._get_ops_details()  # noqa: SLF001 — operators with their tensors
    # Only computed inputs count upstream: a weight or bias tensor has an SNR of its own (a zero bias: none to
    # speak of, -120 dB), which would make every layer after it look as if it gained 50 dB.
    computed = {int(o) for op in ops for o in op["outputs"]} | {d["index"] for d in it.get_input_details()}
    ranked = []
    for op in ops:
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL"):
            continue
        out = names.get(int(op["outputs"][0]))
        if out not in snr:
            continue
        ins = [snr[names[int(i)]] for i in op["inputs"] if int(i) in computed and names.get(int(i)) in snr]
        upstream = min(ins) if ins else 60.0
        ranked.append((out, min(upstream, 60.0) - min(snr[out], 60.0)))
    ranked.sort(key=lambda t: -t[1])
    return ranked
