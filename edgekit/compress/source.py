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

from edgekit.artifact import METADATA_KEY
from edgekit.errors import ConfigError, DataError, describe, first_line, require


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
    """

    spec: str
    kind: str
    onnx_path: Path | None
    input_name: str
    input_shape: list[int]
    torch_model: object = None
    metadata: dict = field(default_factory=dict)
    labels: list[str] | None = None

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
    if len(inputs) != 1:
        raise DataError(f"{path}: edgekit compresses models with one input; this one has {len(inputs)} "
                        f"({', '.join(i.name for i in inputs)})")
    inp = inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    metadata = next((json.loads(p.value) for p in proto.metadata_props if p.key == METADATA_KEY), {})
    shape = [1 if (i == 0 and d is None) else d for i, d in enumerate(dims)]
    return Source(spec=str(path), kind="onnx", onnx_path=path, input_name=inp.name, input_shape=shape,
                  metadata=metadata, labels=metadata.get("labels"))


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
        model = _factory(Path(file), factory)(**(args or {}))
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
                  torch_model=model.eval())


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
                                                       for d, w in zip(source.input_shape, want, strict=True)):
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


def _shape(dims) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


