"""The ONNX model a conversion starts from, and the checks every ONNX → TFLite route shares: its single float
input at batch 1, its reference outputs on onnxruntime, and the parity of a written .tflite with them."""


from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.device.artifact import METADATA_KEY
from edgekit.errors import (
    DataError,
    EdgekitError,
    first_line,
    require,
)

FP32_TOLERANCE = 1e-3  # max abs diff / output range vs onnxruntime; a correct conversion gives ~1e-6
FP16_TOLERANCE = 3e-2  # the same for fp16 weights (float16 rounding of each weight, ~1e-3 measured)
CHECK_SAMPLES = 8  # inputs the parity check runs
ONNX2TORCH_MAX_OPSET = 17  # newest default-domain opset onnx2torch 1.5 converts (no ReduceMean-18)
# onnxruntime rewrites that _static_onnx turns off: with them on, litert-torch miscompiled edgekit's KWT converted
# through onnx2torch (the second attention block's output off by 0.85; export itself matched to 4e-7).
_ORT_DISABLED = ["TransposeOptimizer", "MatMulAddFusion"]


@dataclass(frozen=True)
class _Source:
    """The ONNX model being converted: its file, single float input and the batch-1 shape used."""

    path: Path
    input_name: str
    input_shape: tuple[int, ...]  # batch 1, every dimension fixed
    opset: int
    metadata: dict



class _RouteFailed(Exception):
    """A route could not convert this model; the message is the one-line reason kept in the notes."""


# --- the source model ----------------------------------------------------------------------------------------


def _load_source(path: Path, input_shape: Sequence[int] | None) -> _Source:
    onnx = require("onnx", extra="train", why="ONNX → TFLite conversion")
    if not path.is_file():
        raise DataError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
        onnx.checker.check_model(proto)
    except Exception as exc:  # protobuf DecodeError, onnx ValidationError, ...: all mean "not a usable model"
        raise DataError(f"{path}: not a readable ONNX model ({first_line(exc)[:160]})") from None
    g = proto.graph
    if not len(g.node) or not len(g.output):
        raise DataError(f"{path}: not a readable ONNX model (empty graph)")
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise DataError(f"{path}: the model has {len(inputs)} inputs; ONNX → TFLite conversion takes one")
    inp = inputs[0]
    if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise DataError(f"{path}: input '{inp.name}' is not float32; ONNX → TFLite conversion takes a float input")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    if input_shape is not None:
        shape = tuple(int(d) for d in input_shape)
        if len(shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shape, strict=False)):
            raise DataError(f"{path}: input_shape {list(shape)} does not fit the model input "
                            f"{['?' if d is None else d for d in dims]}")
        shape = (1, *shape[1:])
    else:
        if any(d is None for d in dims[1:]) or not dims:
            raise DataError(f"{path}: input '{inp.name}' has dynamic dimensions "
                            f"{['?' if d is None else d for d in dims]}; pass input_shape=[1, ...]")
        shape = (1, *dims[1:])
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    meta = next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), None)
    try:
        meta = json.loads(meta) if meta else {}
    except ValueError:
        meta = {}
    return _Source(path, inp.name, shape, opset, meta if isinstance(meta, dict) else {})


def _input_metadata(source: _Source) -> dict:
    return {"schema": 1, "source": f"onnx:{source.path.name}",
            "input": {"name": source.input_name, "shape": list(source.input_shape), "dtype": "float32"}}


def _check_inputs(source: _Source, calib: np.ndarray | None) -> np.ndarray:
    if calib is not None and len(calib):
        return calib[:CHECK_SAMPLES]
    return np.random.default_rng(0).normal(size=(CHECK_SAMPLES, *source.input_shape[1:])).astype(np.float32)


def _reference(source: _Source, x: np.ndarray) -> np.ndarray:
    ort = require("onnxruntime", extra="onnx", why="the ONNX → TFLite parity check")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(source.path), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {source.input_name: x[i : i + 1]})[0] for i in range(len(x))])


def _compare(source: _Source, got: np.ndarray, x: np.ndarray, tolerance: float, what: str) -> None:
    ref = _reference(source, x)
    if got.shape != ref.shape:
        raise _RouteFailed(f"{what} output shape {list(got.shape)} differs from ONNX {list(ref.shape)}")
    scale = max(float(ref.max() - ref.min()), 1e-6)
    rel = float(np.abs(got.astype(np.float64) - ref).max()) / scale
    if not rel <= tolerance:  # NaN fails too
        raise _RouteFailed(f"{what} differs from onnxruntime by {rel:.1e} of the output range "
                           f"(tolerance {tolerance:.0e})")


def _check_tflite(source: _Source, tflite: Path, x: np.ndarray, tolerance: float) -> None:
    from edgekit.device.runtime import open_session

    try:
        with open_session(tflite, runtime="litert") as s:
            got = s.run(x)
    except EdgekitError as exc:
        raise _RouteFailed(f"the .tflite does not run ({exc})") from None
    _compare(source, got, x, tolerance, "the .tflite")
