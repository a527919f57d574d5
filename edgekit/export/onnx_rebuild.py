"""An ONNX model rebuilt in PyTorch by onnx2torch, made convertible: shapes folded and frozen to constants, the
ops onnx2torch reads as values fixed, ONNX GRU/LSTM given torch converters. The onnx2torch route converts the
rebuild with litert-torch; `edgekit compress` prunes and quantizes it."""


from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from edgekit.errors import (
    DataError,
    MissingDependency,
    describe,
    require,
)
from edgekit.export.onnx_source import (
    _ORT_DISABLED,
    FP32_TOLERANCE,
    ONNX2TORCH_MAX_OPSET,
    _check_inputs,
    _compare,
    _load_source,
    _RouteFailed,
    _Source,
)


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


def _onnx2torch_missing(precision: str) -> str | None:
    for module, hint in (("onnx2torch", "pip install --no-deps onnx2torch==1.5.15"),
                         ("litert_torch", 'pip install "edgekit[convert]"'),
                         ("onnxruntime", 'pip install "edgekit[onnx]"')):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed ({hint})"
    return None
