"""The model a user hands to ``edgekit compress``: an ONNX file, a PyTorch factory with weights, or a registry name.

Every kind ends as a :class:`Source`: a float ONNX file edgekit can run (the reference every artifact is
compared with), its input name and shape, and — when the model came as PyTorch — the module itself, which
pruning, distillation, quantization-aware training and the direct TFLite export need.

Bad files are caught here, before any work starts, each with one line that names the file: a truncated or
corrupt ONNX, an operator onnxruntime cannot run, a state_dict that does not fit the factory.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.device.artifact import METADATA_KEY
from edgekit.errors import ConfigError, DataError, describe, first_line, require


@dataclass(frozen=True)
class ModelRef:
    """How to rebuild the user's PyTorch model in another process (pruning and conversion run in children).

    Attributes:
        spec: ``file.py:factory`` or a registry name, as the user typed it.
        args: the factory's keyword arguments.
        weights: the state_dict file.
        pruned: a pruned model written by :func:`edgekit.compress.prune.save_pruned`, applied after loading.
    """

    spec: str
    args: dict
    weights: str
    pruned: str | None = None

    def load(self):
        """The model, in eval mode, with its weights (and pruned structure)."""
        model = load_torch(self.spec, weights=self.weights, args=self.args).torch_model
        if self.pruned:
            from edgekit.compress.prune import load_pruned

            load_pruned(model, self.pruned)
        return model.eval()

    def as_dict(self) -> dict:
        return {"spec": self.spec, "args": self.args, "weights": self.weights, "pruned": self.pruned}


@dataclass
class Source:
    """A model to compress.

    Attributes:
        spec: what the user typed (a path, ``file.py:factory`` or a registry name).
        kind: "onnx" or "torch".
        onnx_path: a float ONNX file of the model (the user's own file for kind "onnx", never modified).
        input_name: the graph input's name.
        input_shape: the input shape with batch 1, e.g. [1, 3, 32, 32].
        torch_model: the PyTorch module (kind "torch" only).
        metadata: the edgekit metadata the file carries, or {} for a foreign model.
        labels: class names, when known.
        ref: how a child process rebuilds ``torch_model`` (kind "torch" only).
    """

    spec: str
    kind: str
    onnx_path: Path | None
    input_name: str
    input_shape: list[int]
    torch_model: object = None
    metadata: dict = field(default_factory=dict)
    labels: list[str] | None = None
    ref: ModelRef | None = None
    declared_shape: list[int | None] | None = None  # the ONNX input as the file declares it (None: dynamic)
    inputs: list[tuple[str, list, str]] = field(default_factory=list)  # every input: (name, dims, numpy dtype)
    outputs: list[str] = field(default_factory=list)  # every output's name, in order

    @property
    def several_io(self) -> bool:
        """Whether the model has several inputs or outputs (judged and fed per input/output, by name)."""
        return len(self.inputs) > 1 or len(self.outputs) > 1

    @property
    def dynamic_dims(self) -> bool:
        """Whether the file leaves input dimensions other than the batch open (the data fixed them)."""
        return bool(self.declared_shape) and any(d is None for d in self.declared_shape[1:])

    @property
    def name(self) -> str:
        tail = self.spec.rsplit(":", 1)[-1] if self.kind == "torch" and ":" in self.spec else Path(self.spec).stem
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", tail) or "model"


def open_onnx(path: str | Path) -> Source:
    """Check an ONNX file end to end (parses, is valid, onnxruntime can run it) and describe its input.

    Raises:
        DataError: missing, truncated or corrupt file; a graph onnxruntime rejects; an unsupported operator.
    """
    onnx = require("onnx", extra="train", why="reading ONNX models")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: ONNX file not found")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, or an external-data file that is missing
        raise DataError(f"{path}: not a readable ONNX model, truncated or corrupt ({first_line(exc)})") from None
    if not proto.graph.node:
        raise DataError(f"{path}: not a readable ONNX model, truncated or corrupt (the graph has no nodes)")
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise DataError(f"{path}: invalid ONNX model ({first_line(exc)})") from None
    _check_runs(path)
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    described = []
    for i in inputs:
        d = input_dims(i)
        if d is None:
            raise DataError(f"{path}: input '{i.name}' declares no shape; edgekit needs at least its rank")
        elem = onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
        described.append((i.name, d, np.dtype(elem).name))
    inp = inputs[0]
    dims = described[0][1]
    try:
        metadata = next((json.loads(p.value) for p in proto.metadata_props if p.key == METADATA_KEY), {})
    except ValueError:
        metadata = {}
    shape = [1 if (i == 0 and d is None) else d for i, d in enumerate(dims)]
    return Source(spec=str(path), kind="onnx", onnx_path=path, input_name=inp.name, input_shape=shape,
                  metadata=metadata if isinstance(metadata, dict) else {}, labels=(metadata or {}).get("labels")
                  if isinstance(metadata, dict) else None, declared_shape=dims, inputs=described,
                  outputs=[o.name for o in proto.graph.output])


def input_dims(value_info) -> list[int | None] | None:
    """An ONNX input's dimensions, None for each dynamic one (a symbol such as "height", an empty dimension,
    or -1 / 0, which some exporters write for "any"); None when the input has no shape at all."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]


def fix_onnx_dims(path: Path, out: Path, shape: list[int], *, keep_batch: bool = True) -> None:
    """A copy of an ONNX file whose single input has ``shape`` (the batch kept dynamic unless ``keep_batch`` is
    False): for converters that need static shapes (TFLite)."""
    import onnx

    from edgekit.rundir import atomic_path

    proto = onnx.load(str(path))
    inits = {i.name for i in proto.graph.initializer}
    inp = next(i for i in proto.graph.input if i.name not in inits)
    for i, (d, size) in enumerate(zip(inp.type.tensor_type.shape.dim, shape, strict=True)):
        if i == 0 and keep_batch:
            if not d.HasField("dim_value") or d.dim_value <= 0:
                d.Clear()
                d.dim_param = "batch"
            continue
        d.Clear()
        d.dim_value = int(size)
    with atomic_path(out) as tmp:
        onnx.save_model(proto, str(tmp))


def _check_runs(path: Path) -> None:
    """Open the model in onnxruntime: an operator it has no kernel for is named in one line."""
    ort = require("onnxruntime", extra="onnx", why="running ONNX models")
    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        text = str(exc)
        op = (re.search(r"No Op registered for (\S+) with domain_version of (\d+)", text)
              or re.search(r"Could not find an implementation for (\S+)\((\d+)\)", text)
              or re.search(r"([\w.]*:?\w+)\((-?\d+)\) is not a registered function", text))
        if op:
            raise DataError(f"{path}: operator '{op.group(1)}' is not supported by "
                            f"onnxruntime {ort.__version__}, so edgekit cannot run, calibrate or verify it") from None
        raise DataError(f"{path}: onnxruntime cannot load this model ({first_line(exc)})") from None


def load_torch(spec: str, *, weights: str | Path | None, args: dict | None = None) -> Source:
    """A PyTorch model from ``file.py:factory`` or a registry name, with its weights loaded strictly.

    ``weights`` is read with ``torch.load(weights_only=True)``: a plain state_dict, a dict holding one under
    "state_dict"/"model", or an edgekit checkpoint. The input shape is not known yet: it comes from the data
    (:func:`fix_input_shape`).

    Raises:
        ConfigError: no such factory, file or registry name.
        DataError: unreadable weights, or weights that do not fit the model (missing, unexpected or
            differently shaped tensors, named).
    """
    from edgekit.models import build, load_weights_only

    torch = require("torch", extra="train", why="compressing a PyTorch model")
    if ":" in spec and spec.split(":", 1)[0].endswith(".py"):
        file, _, factory = spec.rpartition(":")
        fn = _factory(Path(file), factory)
        try:
            model = fn(**(args or {}))
        except Exception as exc:  # noqa: BLE001 - the user's own code: its failure is theirs to read, in one line
            from edgekit.errors import describe

            raise ConfigError(f"{spec}: the factory raised {describe(exc)}"
                              + (f" (with --arg {', '.join(f'{k}={v!r}' for k, v in args.items())})" if args else "")
                              ) from None
    else:
        model = build(spec, args)
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"{spec}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    if weights is None:
        raise ConfigError(f"{spec}: a PyTorch model needs its trained weights: --weights FILE (a state_dict)")
    weights = Path(weights)
    if not weights.is_file():
        raise DataError(f"{weights}: weights file not found")
    payload = load_weights_only(weights, what="state_dict")
    state = payload
    if isinstance(payload, dict):
        for key in ("state_dict", "model"):
            if isinstance(payload.get(key), dict):
                state = payload[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{weights}: not a state_dict (a dict of parameter name -> tensor)")
    check_fits(model, state, weights=weights, spec=spec)
    model.load_state_dict(state, strict=True)
    return Source(spec=spec, kind="torch", onnx_path=None, input_name="input", input_shape=[],
                  torch_model=model.eval(), ref=ModelRef(spec, dict(args or {}), str(weights)))


def check_fits(model, state: dict, *, weights: Path, spec: str) -> None:
    """One line saying how a state_dict and a model disagree: missing, unexpected, or shape-mismatched tensors."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {list(state[k].shape)} vs model {list(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_few(shapes)}")
    if missing:
        problems.append(f"{len(missing)} missing: {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_few(unexpected)}")
    if problems:
        raise DataError(f"{weights}: state_dict does not fit {spec}: " + "; ".join(problems))


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _factory(file: Path, name: str):
    """Import ``name`` from a Python file the user names (their own code, run as they would run it)."""
    if not file.is_file():
        raise ConfigError(f"{file}: model file not found")
    module_name = f"edgekit_user_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"{file}: importing it failed ({describe(exc)})") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        public = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")]
        from edgekit.errors import close_matches

        raise ConfigError(f"{file}: no factory '{name}'.{close_matches(name, public)}")
    return factory


def fix_input_shape(source: Source, sample_shape: tuple[int, ...]) -> None:
    """Check that data samples fit the model's input; give a PyTorch model its input shape from the data.

    Raises:
        DataError: the samples' shape differs from the ONNX input, or the PyTorch model rejects it.
    """
    want = [1, *sample_shape]
    if source.kind == "onnx":
        if len(want) != len(source.input_shape) or any(d is not None and d != w
                                                       for d, w in zip(source.input_shape[1:], want[1:], strict=True)):
            raise DataError(f"{source.spec}: input '{source.input_name}' has shape {_shape(source.input_shape)}, "
                            f"the data gives samples of shape {_shape(want)}")
        source.input_shape = want
        return
    torch = require("torch", extra="train", why="compressing a PyTorch model")
    try:
        with torch.no_grad():
            source.torch_model(torch.zeros(want))
    except Exception as exc:
        raise DataError(f"{source.spec}: the model does not accept inputs of shape {_shape(want)} from the data "
                        f"({describe(exc)})") from None
    source.input_shape = want


def to_onnx(source: Source, work: Path) -> None:
    """Export a PyTorch source to a float ONNX reference file in ``work`` (the ONNX source keeps its own file)."""
    if source.onnx_path is not None:
        return
    from edgekit.export.onnx import save_onnx, to_onnx_proto

    path = work / "reference_fp32.onnx"
    save_onnx(to_onnx_proto(source.torch_model, np.zeros(source.input_shape, np.float32)), path,
              {"source": source.spec})
    source.onnx_path = path


def shape_text(dims) -> str:
    """``[N?, 3, ?, ?]``-style text of a shape whose dynamic dimensions are None."""
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


_shape = shape_text


