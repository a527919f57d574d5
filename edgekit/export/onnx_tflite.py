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

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.device.artifact import PRECISIONS, Artifact
from edgekit.errors import (
    ConfigError,
    DataError,
    MissingDependency,
    close_matches,
)
from edgekit.export.onnx_rebuild import _onnx2torch_missing
from edgekit.export.onnx_source import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    _check_inputs,
    _check_tflite,
    _input_metadata,
    _load_source,
    _RouteFailed,
)
from edgekit.export.route_onnx2tf import _onnx2tf_convert, _onnx2tf_missing
from edgekit.export.route_onnx2torch import _onnx2torch_convert
from edgekit.rundir import atomic_path, scratch, sha256


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



ROUTES: dict[str, Route] = {
    "onnx2torch": Route("onnx2torch", _onnx2torch_missing, _onnx2torch_convert),
    "onnx2tf": Route("onnx2tf", _onnx2tf_missing, _onnx2tf_convert),
}
