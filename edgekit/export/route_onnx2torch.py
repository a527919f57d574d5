"""Route onnx2torch: ONNX -> torch.fx (onnx2torch, edgekit.export.onnx_rebuild) -> TFLite (litert-torch), for
one input and for several (a stateful RNN)."""


from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.device.artifact import METADATA_KEY, metadata_json
from edgekit.errors import (
    DataError,
    EdgekitError,
    MissingDependency,
    describe,
    require,
)
from edgekit.export.onnx_rebuild import (
    _first,
    _first_output,
    _freeze_shapes,
    _onnx2torch_missing,
    _rebuild_in_torch,
    _register_rnn_converters,
    _torchvision_stub,
)
from edgekit.export.onnx_source import (
    _ORT_DISABLED,
    FP32_TOLERANCE,
    ONNX2TORCH_MAX_OPSET,
    _compare,
    _RouteFailed,
    _Source,
)
from edgekit.rundir import atomic_path


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
    from edgekit.device.runtime import open_session

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
