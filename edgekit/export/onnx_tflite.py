"""A third-party ONNX model to TFLite (fp32, fp16, int8), by one of two routes, checked against onnxruntime.

Routes (``ROUTES``, tried in this order by ``route="auto"``):

- ``onnx2torch``: onnx2torch turns the ONNX graph into a torch.fx GraphModule, then
  :func:`edgekit.export.tflite.export_tflite` converts it exactly as it converts edgekit's own models (fp16
  weights by ai-edge-quantizer, int8 by litert-torch's PT2E quantizer). In-process, no extra environment.
  Before onnx2torch, onnxruntime's basic optimizer folds the shape sub-graphs to constants (the batch is fixed
  to 1 only when a shape still depends on it), and the opset is lowered to 17 (onnx2torch 1.5 has no
  ReduceMean-18). After it, modules that read shapes, axes or slice bounds from tensors get them as Python
  values (torch.export cannot trace those reads), and GRU/LSTM, which onnx2torch lacks, become torch.nn ones.
- ``onnx2tf``: onnx2tf 1.29 in its own venv (``scripts/onnx2tf_env.py``; it pins tensorflow 2.19 and numpy
  1.26), run as a subprocess on a private copy of the file (its onnxsim step rewrites its input in place), with
  the input shape overwritten to batch 1 (``overwrite_input_shape``: forcing the batch with ``-b`` converts
  stride-2 convolutions wrongly), the ONNX input layout kept (``keep_shape_absolutely_input_names``), RNNs
  unrolled to builtin ops, no quantization in onnx2tf, the sample-image file it otherwise downloads for 4-D
  3-channel inputs written into its working folder, and every host lookup and internet connection refused
  inside the subprocess. fp16 and int8 are made from its fp32 file by ai-edge-quantizer (float casting;
  static int8, min-max, calibrated on ``calib``).

Both keep the ONNX input's shape and layout (NCHW stays NCHW), so the .tflite takes what the .onnx takes.
Every result is checked: the float model must match onnxruntime on 8 inputs (``calib`` rows, else seeded
normal ones) within ``FP32_TOLERANCE`` of the output range (fp16 files: ``FP16_TOLERANCE``); a route that
fails, is not installed, or misses the tolerance is noted and the next one is tried.

Choice of the default order, measured by ``bench/onnx_tflite_routes.py`` (14 ONNX files: edgekit's 6
registered models from torch.export at opset 18, and 8 torch-built ones from the legacy exporter at opsets
13-17 with a dynamic batch; random weights and BatchNorm statistics; 2 cores shared with other jobs, so the
times are loose):

    ==================== ============= ================================ ====================================
    model (exporter)     onnx2torch    onnx2tf                          notes
                         fp32 / int8   fp32 / int8
    ==================== ============= ================================ ====================================
    resnet8 (dyn 18)     3e-7 / 1.000  3e-7 / 1.000
    mobilenet_v1 (dyn)   8e-7 / 1.000  8e-7 / 1.000
    ds_cnn (dyn)         2e-7 / 1.000  2e-7 / 1.000
    gru_kws (dyn)        1e-7 / 1.000  1e-7 / 0.984                     onnx2tf int8 rel. diff 0.34
    kwt (dyn)            4e-7 / 0.984  no: FlexErf (GELU), not LiteRT
    fc_autoencoder (dyn) 2e-7 / 4e-3   2e-7 / 4e-3                      int8 column: rel. diff
    mbv2_style (leg 13)  3e-7 / 0.922  3e-7 / 0.969
    resnet18_style (13)  9e-7 / 0.922  9e-7 / 0.828                     onnx2tf int8 below 0.9
    mbv3_se_hswish (14)  4e-7 / 1.000  5e-7 / 1.000
    nhwc_input_cnn (13)  2e-7 / 0.969  2e-7 / 0.984                     NHWC input kept by both
    gru (leg 14)         1e-7 / 0.969  1e-7 / 0.922
    lstm (leg 14)        3e-7 / 1.000  2e-7 / no: quantizer ValueError
    layernorm_attn (17)  7e-8 / 1.000  no: FlexErf (GELU), not LiteRT
    resnet8_legacy (17)  2e-7 / 1.000  2e-7 / 1.000                     dynamic batch, stride-2 convs
    ==================== ============= ================================ ====================================

fp32: max abs diff / output range vs onnxruntime; int8: top-1 agreement with onnxruntime fp32 (64 seeded normal
inputs, 128 for calibration; random nets have close logits, so these are lower bounds). onnx2torch: 14/14 models
with parity at every precision, median 19.6 s a conversion; onnx2tf: 10/14 (fp32 on 12/14), median 34.6 s (a
TensorFlow start each run). Hence ``onnx2torch`` first; ``onnx2tf`` is the fallback for what onnx2torch or
litert-torch cannot take. Not measured on real third-party files (none can be had offline): ops outside this
zoo (Resize, Pad, NMS, ...) are the likeliest failures of either route.

Example:
    >>> art = onnx_to_tflite("model.onnx", "model_int8.tflite", precision="int8", calib=x_train[:256])
    >>> art.notes
    ('route: onnx2torch',)
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.artifact import METADATA_KEY, PRECISIONS, Artifact, metadata_json
from edgekit.errors import (
    ConfigError,
    DataError,
    EdgekitError,
    MissingDependency,
    close_matches,
    describe,
    first_line,
    require,
)
from edgekit.rundir import atomic_path, scratch, sha256

ONNX2TF_REQUIREMENTS = ("onnx2tf==1.29.24",)  # pins tensorflow 2.19.0, numpy 1.26.4, onnx 1.19.1, onnxsim 0.4.36
ONNX2TF_TIMEOUT = 900  # seconds for one onnx2tf run; a ResNet-8 takes ~10 s, TensorFlow's import ~5 s of it
FP32_TOLERANCE = 1e-3  # max abs diff / output range vs onnxruntime; a correct conversion gives ~1e-6
FP16_TOLERANCE = 3e-2  # the same for fp16 weights (float16 rounding of each weight, ~1e-3 measured)
CHECK_SAMPLES = 8  # inputs the parity check runs
ONNX2TORCH_MAX_OPSET = 17  # newest default-domain opset onnx2torch 1.5 converts (no ReduceMean-18)
# onnxruntime rewrites that _static_onnx turns off: with them on, litert-torch miscompiled edgekit's KWT converted
# through onnx2torch (the second attention block's output off by 0.85; export itself matched to 4e-7).
_ORT_DISABLED = ["TransposeOptimizer", "MatMulAddFusion"]
_ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"  # onnx2tf downloads it when absent


@dataclass(frozen=True)
class _Source:
    """The ONNX model being converted: its file, single float input and the batch-1 shape used."""

    path: Path
    input_name: str
    input_shape: tuple[int, ...]  # batch 1, every dimension fixed
    opset: int
    metadata: dict


@dataclass(frozen=True)
class Route:
    """One way from ONNX to TFLite.

    Attributes:
        name: what users pass as ``route=``.
        missing: returns why the route cannot run here (a missing package or environment), or None.
        convert: ``(source, precision, calib, metadata, out, check_x, work) -> None``: writes ``out`` (a .tflite
            with the metadata embedded), using the scratch folder ``work``; ``check_x`` is None or inputs on
            which its float model must match onnxruntime. Raises ``_RouteFailed`` with a one-line reason.
    """

    name: str
    missing: Callable[[str], str | None]
    convert: Callable[..., None]


class _RouteFailed(Exception):
    """A route could not convert this model; the message is the one-line reason kept in the notes."""


def onnx_to_tflite(
    onnx_path: str | Path,
    path: str | Path,
    *,
    precision: str,
    calib: np.ndarray | None = None,
    metadata: dict | None = None,
    route: str = "auto",
    input_shape: Sequence[int] | None = None,
    check: bool = True,
) -> Artifact:
    """Convert an ONNX file to a .tflite file, trying the routes in order until one converts with parity.

    Args:
        onnx_path: the .onnx file; it is never modified (each route works on a private copy).
        path: the .tflite file to write (atomically: a failure leaves no file).
        precision: "fp32", "fp16" (float16 weights, float compute) or "int8" (static, needs ``calib``).
        calib: float32 samples shaped like the model input (batch first), pre-processed as the model expects;
            used for int8 calibration and, when given, as the parity-check inputs.
        metadata: the "edgekit" metadata to embed; None reuses the ONNX file's own "edgekit" metadata_props
            entry, or records just the input. "precision" and "converted_from" are set here.
        route: "auto" (``ROUTES`` in order, falling back on failure) or one route's name.
        input_shape: the full input shape when the ONNX input has dynamic dimensions other than the batch.
        check: compare the float model with onnxruntime and treat a mismatch as a failed route.

    Returns:
        ``Artifact(path, "tflite", precision, notes=...)``; ``notes[0]`` is ``"route: NAME"``, later notes say
        why earlier routes were skipped or failed.

    Raises:
        ConfigError: an unknown precision or route, or int8 without ``calib``.
        DataError: the ONNX file is missing, unreadable or has an unsupported input; ``calib`` does not fit;
            or no route converted it (the message gives each route's reason).
        MissingDependency: the named route (or, for "auto", every route) is not installed.

    Example:
        >>> art = onnx_to_tflite("vendor.onnx", "out/vendor_fp32.tflite", precision="fp32")
        >>> art.notes[0]
        'route: onnx2torch'
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown TFLite precision '{precision}'.{close_matches(precision, PRECISIONS)}"
                          f" Choices: {', '.join(PRECISIONS)}")
    if route != "auto" and route not in ROUTES:
        raise ConfigError(f"unknown ONNX → TFLite route '{route}'.{close_matches(route, ROUTES)}"
                          f" Choices: auto, {', '.join(ROUTES)}")
    onnx_path, path = Path(onnx_path), Path(path)
    source = _load_source(onnx_path, input_shape)
    if precision == "int8" and (calib is None or len(calib) == 0):
        raise ConfigError(f"{onnx_path}: TFLite int8 conversion needs calibration samples (calib=...)")
    if calib is not None:
        calib = np.ascontiguousarray(calib, dtype=np.float32)
        if calib.shape[1:] != source.input_shape[1:]:
            raise DataError(f"{onnx_path}: calibration samples have shape {list(calib.shape)}, "
                            f"the model input is {list(source.input_shape)}")
    check_x = _check_inputs(source, calib) if check else None
    before = sha256(onnx_path)
    base = dict(metadata) if metadata is not None else (source.metadata or _input_metadata(source))
    names = list(ROUTES) if route == "auto" else [route]
    notes: list[str] = []
    for name in names:
        spec = ROUTES[name]
        why = spec.missing(precision)
        if why:
            if route != "auto":
                raise MissingDependency(f"{onnx_path}: route '{name}' is not available: {why}")
            notes.append(f"{name} skipped: {why}")
            continue
        meta = {**base, "precision": precision,
                "converted_from": {"format": "onnx", "file": onnx_path.name, "sha256": before, "route": name}}
        try:
            with scratch(path) as work:
                out = work / "model.tflite"
                spec.convert(source, precision, calib, meta, out, check_x, work)
                if check_x is not None and precision != "int8":
                    _check_tflite(source, out, check_x, FP32_TOLERANCE if precision == "fp32" else FP16_TOLERANCE)
                with atomic_path(path) as tmp:
                    shutil.copyfile(out, tmp)
        except _RouteFailed as exc:
            notes.append(f"{name} failed: {exc}")
            continue
        finally:
            if sha256(onnx_path) != before:  # never expected: every route reads a private copy
                raise DataError(f"{onnx_path}: the file changed during conversion (route {name})")
        return Artifact(path, "tflite", precision, notes=(f"route: {name}", *notes))
    if all(" skipped: " in n for n in notes):
        raise MissingDependency(f"{onnx_path}: no ONNX → TFLite route is installed: {'; '.join(notes)}")
    raise DataError(f"{onnx_path}: no route converted it to TFLite: {'; '.join(notes)}")


def conversion_route(artifact: Artifact) -> str | None:
    """The route that made an artifact of :func:`onnx_to_tflite` (from its notes), or None."""
    return next((n.split(": ", 1)[1] for n in artifact.notes if n.startswith("route: ")), None)


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
    from edgekit.runtime import open_session

    try:
        with open_session(tflite, runtime="litert") as s:
            got = s.run(x)
    except EdgekitError as exc:
        raise _RouteFailed(f"the .tflite does not run ({exc})") from None
    _compare(source, got, x, tolerance, "the .tflite")


# --- route onnx2torch: ONNX -> torch.fx (onnx2torch) -> TFLite (litert-torch) ---------------------------------


def _onnx2torch_missing(precision: str) -> str | None:
    for module, hint in (("onnx2torch", "pip install --no-deps onnx2torch==1.5.15"),
                         ("litert_torch", 'pip install "edgekit[convert]"'),
                         ("onnxruntime", 'pip install "edgekit[onnx]"')):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed ({hint})"
    return None


@contextlib.contextmanager
def _torchvision_stub() -> Iterator[None]:
    """Let ``import onnx2torch`` succeed without torchvision.

    onnx2torch imports torchvision at module level, for its NonMaxSuppression and RoiAlign converters only.
    torchvision cannot be installed here: its PyPI wheels are built for the CUDA torch and fail to import
    with the CPU build (measured: 0.28.0 with torch 2.13.0+cpu raises "operator torchvision::nms does not
    exist"); a newer one pulls the multi-GB CUDA torch. With this stub those two ops fail to convert, with
    a clear message, and nothing else changes.
    """
    if importlib.util.find_spec("torchvision") is not None or "onnx2torch" in sys.modules:
        yield
        return

    def unavailable(*args, **kwargs):
        raise NotImplementedError("NonMaxSuppression/RoiAlign need torchvision, which edgekit does not install")

    tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.roi_align = ops.nms = ops.box_convert = unavailable
    tv.ops = ops
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops
    try:
        yield
    finally:
        sys.modules.pop("torchvision", None)
        sys.modules.pop("torchvision.ops", None)


def _static_onnx(source: _Source, work: Path):
    """The model as onnx2torch can take it: shape sub-graphs folded to constants, opset <= 17.

    The batch axis stays dynamic when the folded graph no longer computes shapes (edgekit's own exports:
    int8 calibration then runs in batches); otherwise (legacy ``x.view(x.size(0), -1)``) it is fixed to 1
    and folded again, and calibration runs one sample at a time.
    """
    onnx = require("onnx", extra="train", why="ONNX → TFLite conversion")
    from onnx import version_converter

    proto = _fold(onnx, source, work, keep_batch=True)
    if proto is None or _computes_shapes(proto):
        proto = _fold(onnx, source, work, keep_batch=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset > ONNX2TORCH_MAX_OPSET:
        try:
            proto = version_converter.convert_version(proto, ONNX2TORCH_MAX_OPSET)
        except Exception as exc:
            raise _RouteFailed(f"cannot lower opset {opset} to {ONNX2TORCH_MAX_OPSET}: {describe(exc)}") from None
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Reshape":
            shape = consts.get(node.input[1]) if len(node.input) > 1 else None
            # allowzero=1 differs from 0 only when the target shape holds a 0; onnx2torch refuses it outright.
            for a in node.attribute:
                if a.name == "allowzero" and a.i == 1 and shape is not None and not (shape == 0).any():
                    a.i = 0
    return proto


def _fold(onnx, source: _Source, work: Path, *, keep_batch: bool):
    """onnxruntime's basic-level constant folding with the input's other dimensions fixed (and the batch too,
    unless ``keep_batch``); None when keeping the batch is not possible (the file fixes it already)."""
    ort = require("onnxruntime", extra="onnx", why="ONNX → TFLite conversion")
    proto = onnx.load_model(str(source.path))
    inits = {i.name for i in proto.graph.initializer}
    inp = next(i for i in proto.graph.input if i.name not in inits)
    dims = inp.type.tensor_type.shape.dim
    if keep_batch and dims[0].HasField("dim_value"):
        return None
    for i, (d, size) in enumerate(zip(dims, source.input_shape, strict=True)):
        if i == 0 and keep_batch:
            continue
        d.Clear()
        d.dim_value = size
    fixed, folded = work / "static.onnx", work / "folded.onnx"
    onnx.save_model(proto, str(fixed))
    # The basic level folds constants (Shape of a static tensor included) and removes identities, writing
    # standard ONNX ops only: legacy `x.view(x.size(0), -1)` becomes a Reshape to a constant shape.
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(fixed), options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=_ORT_DISABLED)
    except Exception as exc:
        raise _RouteFailed(f"onnxruntime cannot load it: {describe(exc)}") from None
    return onnx.load_model(str(folded))


# Inputs (by position) that onnx2torch reads as values, not as tensors to compute on.
_SHAPE_INPUTS = {"Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "Squeeze": (1,),
                 "Unsqueeze": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2), "ReduceSum": (1,), "Pad": (1,),
                 "Resize": (1, 2, 3), "Split": (1,), "TopK": (1,)}


def _computes_shapes(proto) -> bool:
    """Whether the graph still computes a shape at run time (a Shape node, or a shape input that is no constant)."""
    consts = {i.name for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type in ("Shape", "Size"):
            return True
        for i in _SHAPE_INPUTS.get(node.op_type, ()):
            if i < len(node.input) and node.input[i] and node.input[i] not in consts:
                return True
    return False


def _freeze_shapes(gm) -> None:
    """Give onnx2torch modules whose shape-like inputs are constants those constants as Python values.

    onnx2torch passes shapes, axes and slice bounds as tensors and reads them inside ``forward``
    (``torch.any(shape == 0)``, ``axes.numpy()``): torch.export, under litert-torch, cannot trace that
    (data-dependent guards, fake tensors). Once the shape sub-graphs are folded to initializers
    (:func:`_static_onnx`) their values are known here, and each such module is replaced by a fixed one.
    """
    from onnx2torch.node_converters import reduce, reshape, slice, squeeze, tile, unsqueeze  # noqa: A004
    from onnx2torch.node_converters.expand import OnnxExpand
    from onnx2torch.node_converters.gather import OnnxGather

    fixed = {reshape.OnnxReshape: _fixed_reshape, slice.OnnxSlice: _fixed_slice,
             squeeze.OnnxSqueezeDynamicAxes: _fixed_squeeze, unsqueeze.OnnxUnsqueezeDynamicAxes: _fixed_unsqueeze,
             OnnxExpand: _fixed_expand, tile.OnnxTile: _fixed_tile,
             reduce.OnnxReduceSumDynamicAxes: _fixed_reduce_sum, OnnxGather: _fixed_gather}
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        module = gm.get_submodule(node.target)
        make = fixed.get(type(module))
        if make is None or not node.args:
            continue
        consts = []
        for arg in node.args[1:]:
            if arg is None:
                consts.append(None)
            elif getattr(arg, "op", None) == "get_attr":
                consts.append(_attr(gm, arg.target).detach().cpu())
            else:
                break
        else:
            replacement = make(module, *consts)
            if replacement is not None:
                gm.add_submodule(node.target, replacement)
                node.args = node.args[:1]
    gm.graph.eliminate_dead_code()
    gm.recompile()


def _attr(gm, target: str):
    value = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _ints(t) -> list[int]:
    return [int(v) for v in t.reshape(-1).tolist()]


def _torch_module(forward: Callable, **attrs):
    """A tiny nn.Module whose forward is ``forward(self, x)`` (the constants live on it as plain attributes)."""
    import torch

    module = type("Fixed", (torch.nn.Module,), {"forward": forward})()
    for k, v in attrs.items():
        setattr(module, k, v)
    return module


def _fixed_reshape(module, shape):
    import torch

    return _torch_module(lambda self, x: torch.reshape(x, [x.shape[i] if s == 0 else s
                                                            for i, s in enumerate(self.shape)]), shape=_ints(shape))


def _fixed_slice(module, starts, ends, axes=None, steps=None):
    starts, ends = _ints(starts), _ints(ends)
    axes = _ints(axes) if axes is not None else list(range(len(starts)))
    steps = _ints(steps) if steps is not None else [1] * len(starts)
    if any(s <= 0 for s in steps):
        return None  # reversed slices: leave them to onnx2torch
    big = 2**62  # ONNX uses INT64_MAX for "to the end"; Python slices clip any large bound

    def forward(self, x):
        index = [slice(None)] * x.dim()
        for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
            index[axis] = slice(start, min(end, big), step)
        return x[tuple(index)]

    return _torch_module(forward)


def _fixed_squeeze(module, axes=None):
    import torch

    if axes is None or not axes.numel():
        return _torch_module(lambda self, x: torch.squeeze(x))
    axes = _ints(axes)
    return _torch_module(lambda self, x: _squeeze(x, axes))


def _squeeze(x, axes: list[int]):
    for a in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(a)
    return x


def _fixed_unsqueeze(module, axes):
    axes = _ints(axes)

    def forward(self, x):
        rank = x.dim() + len(axes)
        for a in sorted(a % rank for a in axes):
            x = x.unsqueeze(a)
        return x

    return _torch_module(forward)


def _fixed_expand(module, shape):
    import torch

    shape = _ints(shape)
    return _torch_module(lambda self, x: x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(shape))))


def _fixed_tile(module, repeats):
    repeats = _ints(repeats)
    return _torch_module(lambda self, x: x.repeat(repeats))


def _fixed_gather(module, indices):
    """A constant Gather index: ``select`` for a scalar (a 0-d tensor index makes litert-torch call .item())."""
    import torch

    axis = int(module._axis)
    if indices.dim() == 0:
        i = int(indices)
        return _torch_module(lambda self, x: x.select(axis, i % x.shape[axis]))
    flat = torch.tensor(_ints(indices))
    shape = list(indices.shape)

    def forward(self, x):
        a = axis % x.dim()
        picked = x.index_select(a, flat % x.shape[a])
        return picked.reshape([*x.shape[:a], *shape, *x.shape[a + 1 :]])

    return _torch_module(forward)


def _fixed_reduce_sum(module, axes=None):
    if axes is None or not axes.numel():
        return None
    axes, keepdim = _ints(axes), bool(getattr(module, "_keepdims", 1))
    return _torch_module(lambda self, x: x.sum(dim=axes, keepdim=keepdim))


_RNN_GATES = {"GRU": (3, [1, 0, 2]), "LSTM": (4, [0, 2, 3, 1])}  # ONNX z,r,h -> torch r,z,n; i,o,f,c -> i,f,g,o


def _register_rnn_converters() -> None:
    """Teach onnx2torch the ONNX GRU and LSTM ops (it has no converter for them) as torch.nn.GRU / LSTM."""
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter

    for op, version in (("GRU", 7), ("GRU", 14), ("LSTM", 7), ("LSTM", 14)):
        if OperationDescription("", op, version) not in _CONVERTER_REGISTRY:
            add_converter(operation_type=op, version=version)(_rnn_converter)


def _rnn_converter(node, graph):
    import torch
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    op, attrs = node.operation_type, node.attributes
    gates, order = _RNN_GATES[op]
    inputs = list(node.input_values) + [""] * 8
    hidden = int(attrs["hidden_size"])
    direction = attrs.get("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    defaults = ["Sigmoid", "Tanh"] if op == "GRU" else ["Sigmoid", "Tanh", "Tanh"]
    activations = [a.lower() for a in attrs.get("activations", defaults)]
    unsupported = [k for k in ("activation_alpha", "activation_beta", "clip") if k in attrs]
    if activations not in ([a.lower() for a in defaults], [a.lower() for a in defaults] * 2):
        unsupported.append(f"activations {attrs['activations']}")
    if op == "GRU" and int(attrs.get("linear_before_reset", 0)) != 1:
        unsupported.append("linear_before_reset=0")
    if op == "LSTM" and (int(attrs.get("input_forget", 0)) or inputs[7]):
        unsupported.append("input_forget/peepholes")
    if direction == "reverse":
        unsupported.append("direction=reverse")
    if inputs[4]:
        unsupported.append("sequence_lens")
    if unsupported:
        raise NotImplementedError(f"{op} with {', '.join(unsupported)}")

    def const(name):
        return graph.initializers[name].to_torch() if name in graph.initializers else None

    w, r = const(inputs[1]), const(inputs[2])
    if w is None or r is None:
        raise NotImplementedError(f"{op} with non-constant weights")
    dirs, size = w.shape[0], w.shape[2]
    b = const(inputs[3]) if inputs[3] else torch.zeros(dirs, 2 * gates * hidden)
    rnn = (torch.nn.GRU if op == "GRU" else torch.nn.LSTM)(size, hidden, bidirectional=dirs == 2)

    def reorder(t, cols):
        return t.reshape(gates, hidden, cols)[order].reshape(gates * hidden, cols)

    with torch.no_grad():
        for d in range(dirs):
            suffix = "_reverse" if d else ""
            getattr(rnn, f"weight_ih_l0{suffix}").copy_(reorder(w[d], size))
            getattr(rnn, f"weight_hh_l0{suffix}").copy_(reorder(r[d], hidden))
            getattr(rnn, f"bias_ih_l0{suffix}").copy_(reorder(b[d, : gates * hidden], 1).reshape(-1))
            getattr(rnn, f"bias_hh_l0{suffix}").copy_(reorder(b[d, gates * hidden :], 1).reshape(-1))
    states = [inputs[5]] + ([inputs[6]] if op == "LSTM" else [])
    dynamic = [s for s in states if s and s not in graph.initializers]
    if dynamic and len(dynamic) != len([s for s in states if s]):
        raise NotImplementedError(f"{op} with a mix of constant and computed initial states")
    module = _onnx_rnn(rnn, int(attrs.get("layout", 0)), [const(s) if s else None for s in states], bool(dynamic))
    mapping = OnnxMapping(inputs=(inputs[0], *dynamic), outputs=node.output_values)
    return OperationConverterResult(torch_module=module, onnx_mapping=mapping)


def _onnx_rnn(rnn, layout: int, constants: list, dynamic: bool):
    import torch

    class OnnxRNN(torch.nn.Module):
        """torch.nn.GRU/LSTM with ONNX's inputs and outputs: Y (seq, dirs, batch, hidden), Y_h[, Y_c]."""

        def __init__(self):
            super().__init__()
            self.rnn, self.layout, self.dynamic = rnn, layout, dynamic
            self.lstm = isinstance(rnn, torch.nn.LSTM)
            for i, c in enumerate(constants):
                self.register_buffer(f"state{i}", c)

        def forward(self, x, *states):
            if self.layout:  # (batch, seq, input) -> (seq, batch, input)
                x = x.transpose(0, 1)
                states = tuple(s.transpose(0, 1) for s in states)
            dirs, hidden = 2 if self.rnn.bidirectional else 1, self.rnn.hidden_size
            if not self.dynamic:
                states = tuple(getattr(self, f"state{i}") for i in range(len(constants)))
            # Initial states as graph nodes, never bare constants: litert-torch's GRU quantizer looks for the state
            # among the GRU's input nodes (a buffer is not one) and fails with an IndexError otherwise.
            zeros = x.new_zeros(dirs, x.shape[1], hidden)
            states = tuple(zeros if s is None else (s if self.dynamic else zeros + s) for s in states)
            if self.lstm:
                y, (h, c) = self.rnn(x, (states[0], states[1] if len(states) == 2 else zeros))
                finals = (h, c)
            else:
                y, h = self.rnn(x, states[0])
                # litert-torch's int8 quantizer annotates a GRU only when both of its outputs are used (IndexError
                # otherwise). With one direction Y's last step is Y_h exactly, and (a + a) / 2 == a in floating
                # point: route Y_h through Y so both are used whatever the ONNX graph reads.
                if dirs == 1:
                    y = torch.cat([y[:-1], 0.5 * (y[-1:] + h)], 0)
                finals = (h,)
            y = y.reshape(x.shape[0], x.shape[1], dirs, hidden).permute(0, 2, 1, 3)  # (seq, dirs, batch, hidden)
            if self.layout:
                y = y.permute(2, 0, 1, 3)
                finals = tuple(f.transpose(0, 1) for f in finals)
            return (y, *finals)

    return OnnxRNN()


def _rebuild_in_torch(source: _Source, work: Path):
    """onnx2torch's GraphModule of the static-shaped model, in eval mode (both onnx2torch users share this)."""
    proto = _static_onnx(source, work)
    with _torchvision_stub():
        import onnx2torch
    _register_rnn_converters()
    try:
        gm = onnx2torch.convert(proto)
        _freeze_shapes(gm)
    except Exception as exc:
        raise _RouteFailed(f"onnx2torch: {describe(exc)}") from None
    return gm.eval()


def _onnx2torch_convert(source: _Source, precision: str, calib, meta: dict, out: Path, check_x, work: Path) -> None:
    import torch

    from edgekit.export.tflite import export_tflite

    gm = _rebuild_in_torch(source, work)
    if check_x is not None:
        try:
            with torch.no_grad():
                got = np.concatenate([_first(gm(torch.from_numpy(check_x[i : i + 1]))).numpy()
                                      for i in range(len(check_x))])
        except Exception as exc:
            raise _RouteFailed(f"the torch model from onnx2torch does not run: {describe(exc)}") from None
        _compare(source, got, check_x, FP32_TOLERANCE, "the torch model from onnx2torch")
    example = np.zeros(source.input_shape, np.float32)
    try:
        export_tflite(_first_output(gm), example, out, precision=precision, metadata=meta, calib=calib)
    except EdgekitError:
        raise
    except Exception as exc:
        raise _RouteFailed(f"litert-torch: {describe(exc)}") from None


def _first(y):
    return y[0] if isinstance(y, list | tuple) else y


def _first_output(gm):
    """Wrap a GraphModule so it returns the ONNX model's first output only (what edgekit's sessions read)."""
    import torch

    class FirstOutput(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return _first(self.inner(x))

    return FirstOutput(gm)


# --- route onnx2tf: onnx2tf in its own venv, then ai-edge-quantizer ------------------------------------------


def onnx2tf_venv() -> Path:
    """Where the onnx2tf environment lives: ``$EDGEKIT_ONNX2TF_VENV`` or ``~/.cache/edgekit/onnx2tf-venv``."""
    env = os.environ.get("EDGEKIT_ONNX2TF_VENV")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "edgekit" / "onnx2tf-venv"


def onnx2tf_env_ready(venv: Path | None = None) -> bool:
    """Whether ``scripts/onnx2tf_env.py`` finished building the environment with the current pins."""
    venv = venv or onnx2tf_venv()
    stamp = venv / "edgekit-stamp.txt"
    return (venv / "bin" / "python").exists() and stamp.is_file() and stamp.read_text().split() == list(
        ONNX2TF_REQUIREMENTS)


def _onnx2tf_missing(precision: str) -> str | None:
    if not onnx2tf_env_ready():
        return f"the onnx2tf environment {onnx2tf_venv()} is not built (python scripts/onnx2tf_env.py)"
    for module in ("ai_edge_quantizer", "ai_edge_litert", "onnxruntime"):
        if importlib.util.find_spec(module) is None:
            return f'{module} is not installed (pip install "edgekit[convert]")'
    return None


# Runs inside the onnx2tf venv. Refuses every host-name lookup and internet socket connection (onnx2tf fetches
# sample images and schema files from GitHub in some code paths) and records the attempts, then converts
# without quantizing.
_DRIVER = r"""
import json, socket, sys
args = json.loads(sys.argv[1])
attempts = []
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
def _refuse(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        attempts.append(repr(address))
        raise ConnectionRefusedError("edgekit: onnx2tf may not use the network")
socket.socket.connect = lambda s, a: (_refuse(s, a), _connect(s, a))[1]
socket.socket.connect_ex = lambda s, a: (_refuse(s, a), _connect_ex(s, a))[1]
_getaddrinfo = socket.getaddrinfo
def _lookup(host, *rest, **kw):
    if host not in (None, "localhost", "127.0.0.1", "::1", b"localhost"):
        attempts.append(repr(host))
        raise socket.gaierror(f"edgekit: onnx2tf may not use the network (looked up {host})")
    return _getaddrinfo(host, *rest, **kw)
socket.getaddrinfo = _lookup
try:
    import onnx2tf
    onnx2tf.convert(**args["convert"])
finally:
    with open(args["report"], "w") as f:
        json.dump({"network_attempts": attempts}, f)
"""


def _run_onnx2tf(source: _Source, work: Path, calib: np.ndarray | None, *, sample_file: bool = True) -> Path:
    """Run onnx2tf on a private copy of the model in ``work``; returns its float32 .tflite.

    Raises:
        _RouteFailed: onnx2tf failed (the message holds its last error line and any refused connection).
    """
    work = work.resolve()  # onnx2tf runs with work as its folder: relative paths would point elsewhere
    private = work / "model.onnx"
    shutil.copyfile(source.path, private)  # onnx2tf runs onnxsim on its input and writes the result over it
    if sample_file:
        np.save(work / _ONNX2TF_SAMPLE, _onnx2tf_samples(source, calib))
    report = work / "onnx2tf-report.json"
    args = {"report": str(report), "convert": {
        "input_onnx_file_path": str(private),
        "output_folder_path": str(work / "out"),
        "overwrite_input_shape": [f"{source.input_name}:{','.join(map(str, source.input_shape))}"],
        "keep_shape_absolutely_input_names": [source.input_name],  # keep NCHW (or whatever the ONNX input is)
        "enable_rnn_unroll": True,  # GRU/LSTM as builtin ops; otherwise Select TF ops that LiteRT cannot run
        "verbosity": "error",
    }}
    python = onnx2tf_venv() / "bin" / "python"
    # onnx2tf runs onnxsim as a command: the venv's bin/ goes first on PATH (without it onnxsim is skipped with
    # a warning only, and conversions fail that it would have made static).
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PYTHONNOUSERSITE": "1",
           "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(key, None)
    try:
        proc = subprocess.run([str(python), "-c", _DRIVER, json.dumps(args)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=ONNX2TF_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise _RouteFailed(f"onnx2tf ran past {ONNX2TF_TIMEOUT} s") from None
    attempts = json.loads(report.read_text())["network_attempts"] if report.is_file() else []
    tflite = work / "out" / "model_float32.tflite"
    if proc.returncode != 0 or not tflite.is_file():
        lines = [s.strip() for s in (proc.stderr + proc.stdout).splitlines() if s.strip()]
        errors = [s for s in lines if "Error" in s or "error" in s.split(":")[0]]
        last = (errors or lines or [f"exit code {proc.returncode}"])[-1]
        refused = f" (refused network connections: {', '.join(attempts)})" if attempts else ""
        raise _RouteFailed(f"onnx2tf: {_strip_ansi(last)[:200]}{refused}")
    if attempts:  # converted, but tried to reach the network: say so rather than hide it
        raise _RouteFailed(f"onnx2tf tried to connect to {', '.join(attempts)}")
    return tflite


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _onnx2tf_samples(source: _Source, calib: np.ndarray | None) -> np.ndarray:
    """What onnx2tf would download: NHWC images it resizes and feeds through the model to check its layouts."""
    if calib is not None and calib.ndim == 4:
        x = calib[:20]
        return np.ascontiguousarray(x if x.shape[-1] == 3 else np.moveaxis(x, 1, -1), dtype=np.float32)
    return np.random.default_rng(0).uniform(0, 1, size=(20, 128, 128, 3)).astype(np.float32)


def _onnx2tf_convert(source: _Source, precision: str, calib, meta: dict, out: Path, check_x, work: Path) -> None:
    from edgekit.export.tflite import embed_metadata

    fp32 = _run_onnx2tf(source, work, calib)
    if check_x is not None:
        _check_tflite(source, fp32, check_x, FP32_TOLERANCE)
    flatbuffer = fp32.read_bytes()
    try:
        flatbuffer = _QUANTIZE[precision](flatbuffer, calib)
    except EdgekitError:
        raise
    except Exception as exc:
        raise _RouteFailed(f"ai-edge-quantizer ({precision}): {describe(exc)}") from None
    text = metadata_json(meta)
    with atomic_path(out) as tmp:
        tmp.write_bytes(embed_metadata(flatbuffer, METADATA_KEY, text.encode("utf-8"), compact=True))


def _keep(flatbuffer: bytes, calib) -> bytes:
    return flatbuffer


def _fp16_weights(flatbuffer: bytes, calib) -> bytes:
    """Conv and fully-connected weights cast to float16, as :mod:`edgekit.export.tflite` does for fp16."""
    quantizer = require("ai_edge_quantizer.quantizer", extra="convert", why="TFLite fp16 conversion")
    from ai_edge_quantizer import qtyping

    q = quantizer.Quantizer(bytearray(flatbuffer))
    q.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                             algorithm_key="float_casting")
    return bytes(q.quantize(enable_progress_report=False).quantized_model)


def _static_int8(flatbuffer: bytes, calib: np.ndarray) -> bytes:
    """Static int8 (int8 weights per channel, int8 activations) calibrated on ``calib``, one sample a call."""
    quantizer = require("ai_edge_quantizer.quantizer", extra="convert", why="TFLite int8 conversion")
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import recipe

    signatures = Interpreter(model_content=flatbuffer).get_signature_list()
    if len(signatures) != 1:
        raise _RouteFailed(f"the onnx2tf model has {len(signatures)} signatures, int8 calibration needs one")
    (key, sig), = signatures.items()
    (name,) = sig["inputs"]
    q = quantizer.Quantizer(bytearray(flatbuffer))
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    samples = [{name: calib[i : i + 1]} for i in range(len(calib))]
    with contextlib.redirect_stderr(io.StringIO()):  # its calibration progress bar
        result = q.calibrate({key: samples}, num_threads=min(2, os.cpu_count() or 1))
    return bytes(q.quantize(result, enable_progress_report=False).quantized_model)


_QUANTIZE: dict[str, Callable[[bytes, np.ndarray | None], bytes]] = {
    "fp32": _keep, "fp16": _fp16_weights, "int8": _static_int8}


ROUTES: dict[str, Route] = {
    "onnx2torch": Route("onnx2torch", _onnx2torch_missing, _onnx2torch_convert),
    "onnx2tf": Route("onnx2tf", _onnx2tf_missing, _onnx2tf_convert),
}


def onnx_to_torch(onnx_path: str | Path, *, input_shape: Sequence[int] | None = None, check: bool = True):
    """The ONNX model rebuilt in PyTorch by onnx2torch (batch 1, first output only), checked against onnxruntime.

    ``edgekit compress`` searches TFLite int8 remedies (per-layer float fallback) on this module: its
    Conv/Linear submodules are the ONNX graph's layers.

    Raises:
        DataError: unreadable file, or the rebuilt model does not match onnxruntime.
        MissingDependency: onnx2torch is not installed.
    """
    import tempfile

    import torch

    why = _onnx2torch_missing("int8")
    if why:
        raise MissingDependency(f"{onnx_path}: {why}")
    source = _load_source(Path(onnx_path), input_shape)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            gm = _rebuild_in_torch(source, Path(tmp))
    except _RouteFailed as exc:
        raise DataError(f"{onnx_path}: {exc}") from None
    model = _first_output(gm).eval()
    if check:
        x = _check_inputs(source, None)
        with torch.no_grad():
            got = np.concatenate([model(torch.from_numpy(x[i : i + 1])).numpy() for i in range(len(x))])
        try:
            _compare(source, got, x, FP32_TOLERANCE, "the torch model from onnx2torch")
        except _RouteFailed as exc:
            raise DataError(f"{onnx_path}: {exc}") from None
    return model


# --- several inputs and outputs (a stateful RNN): onnx2torch + litert-torch ------------------------------------


def onnx_to_tflite_several(onnx_path: str | Path, path: str | Path, *, feeds: list[dict], metadata: dict) -> Path:
    """Convert an ONNX model with several inputs or outputs to an fp32 .tflite through onnx2torch and litert-torch.

    Every input is fixed to the shape ``feeds`` give it (TFLite is static), shape sub-graphs are folded, and the
    rebuilt PyTorch module takes the inputs in the ONNX order and returns every output in the ONNX order. Both
    the PyTorch module and the .tflite are checked against onnxruntime on every output of every feed.

    Raises:
        DataError: a step fails or an output differs (the message says which).
        MissingDependency: onnx2torch or litert-torch is missing.
    """
    import tempfile

    import torch

    why = _onnx2torch_missing("fp32")
    if why:
        raise MissingDependency(f"{onnx_path}: {why}")
    onnx = require("onnx", extra="train", why="ONNX → TFLite conversion")
    ort = require("onnxruntime", extra="onnx", why="ONNX → TFLite conversion")
    from onnx import version_converter

    onnx_path, path = Path(onnx_path), Path(path)
    proto = onnx.load_model(str(onnx_path))
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    names = [i.name for i in inputs]
    first = feeds[0]
    for inp in inputs:
        dims = inp.type.tensor_type.shape.dim
        shape = np.asarray(first[inp.name]).shape
        if len(dims) != len(shape):
            raise DataError(f"{onnx_path}: input '{inp.name}' has rank {len(dims)}, the data's {len(shape)}")
        for d, size in zip(dims, shape, strict=True):
            d.Clear()
            d.dim_value = int(size)
    ref_sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    refs = [ref_sess.run(None, {n: np.asarray(f[n]) for n in names}) for f in feeds]
    with tempfile.TemporaryDirectory() as tmp:
        fixed, folded = Path(tmp) / "static.onnx", Path(tmp) / "folded.onnx"
        onnx.save_model(proto, str(fixed))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        options.log_severity_level = 3
        ort.InferenceSession(str(fixed), options, providers=["CPUExecutionProvider"], disabled_optimizers=_ORT_DISABLED)
        proto = onnx.load_model(str(folded))
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset > ONNX2TORCH_MAX_OPSET:
        proto = version_converter.convert_version(proto, ONNX2TORCH_MAX_OPSET)
    with _torchvision_stub():
        import onnx2torch
    _register_rnn_converters()
    try:
        gm = onnx2torch.convert(proto)
        _freeze_shapes(gm)
    except Exception as exc:
        raise DataError(f"{onnx_path}: onnx2torch: {describe(exc)}") from None
    gm.eval()
    # onnx2torch returns a multi-output module's whole tuple when a graph output is one of its later outputs (the
    # new state Y_h of a GRU, say): pick the element by the position that output has on its ONNX node.
    position = {o: i for n in proto.graph.node for i, o in enumerate(n.output)}
    picks = [position.get(o.name, 0) for o in proto.graph.output]

    class AllOutputs(torch.nn.Module):
        """The ONNX inputs as positional arguments, every output returned as a tuple."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            out = self.inner(*args)
            out = list(out) if isinstance(out, list | tuple) else [out]
            return tuple(o[k] if isinstance(o, list | tuple) else o for o, k in zip(out, picks, strict=True))

    model = AllOutputs(gm).eval()

    def tensors(f):
        return tuple(torch.from_numpy(np.ascontiguousarray(np.asarray(f[n]))) for n in names)

    with torch.no_grad():
        for f, ref in zip(feeds, refs, strict=True):
            _close_all(onnx_path, [o.numpy() for o in model(*tensors(f))], ref, "the torch model from onnx2torch")
    import litert_torch

    from edgekit.export.tflite import _quiet_litert, embed_metadata

    try:
        with _quiet_litert():
            flatbuffer = bytes(litert_torch.convert(model, tensors(first)).model_content())
    except Exception as exc:
        raise DataError(f"{onnx_path}: litert-torch: {describe(exc)}") from None
    data = embed_metadata(flatbuffer, METADATA_KEY, metadata_json(metadata).encode("utf-8"), compact=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    from edgekit.runtime import open_session

    with open_session(path, runtime="litert") as s:
        for f, ref in zip(feeds, refs, strict=True):
            _close_all(onnx_path, s.run_feeds(f), ref, "the .tflite")
    return path


def _close_all(where: Path, got: list, ref: list, what: str) -> None:
    if len(got) != len(ref):
        raise DataError(f"{where}: {what} gives {len(got)} outputs, onnxruntime {len(ref)}")
    for i, (g, r) in enumerate(zip(got, ref, strict=True)):
        g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
        if g.shape != r.shape and g.size == r.size:
            g = g.reshape(r.shape)
        if g.shape != r.shape:
            raise DataError(f"{where}: {what}: output {i} has shape {list(g.shape)}, onnxruntime's {list(r.shape)}")
        scale = max(float(np.ptp(r)) if r.size else 0.0, 1e-6)
        rel = float(np.abs(g - r).max()) / scale if r.size else 0.0
        if not rel <= FP32_TOLERANCE:
            raise DataError(f"{where}: {what}: output {i} differs from onnxruntime by {rel:.1e} of its range")
