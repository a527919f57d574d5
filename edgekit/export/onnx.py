"""ONNX export (torch.export-based exporter) and static int8 quantization with onnxruntime.

int8 uses QDQ, per-channel weights and **U8S8** (uint8 activations, int8 weights): measured here,
U8S8 ran at 0.104 ms against 0.148 ms for fp32, while S8S8 was slower than fp32 (0.244 ms), and
dynamic quantization of a CNN was 9x slower (ConvInteger). Weights use 7 bits (``reduce_range``), see
:func:`quantize_onnx`. ``make bench`` compares this choice with quantize_static's defaults.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.device.artifact import METADATA_KEY, Artifact, metadata_json
from edgekit.errors import DataError, require
from edgekit.rundir import atomic_path, scratch

OPSET = 18


def to_onnx_proto(model, example: np.ndarray):
    """Trace ``model`` with torch.export into an in-memory ONNX ModelProto with a dynamic batch axis."""
    torch = require("torch", extra="train", why="ONNX export")
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)  # "no torchvision"
    model = model.eval()
    # torch.export specializes a dimension of size 1, so trace with a batch of 2 to keep the batch axis dynamic.
    x = torch.from_numpy(np.ascontiguousarray(np.repeat(example[:1], 2, axis=0)))
    batch = torch.export.Dim("batch", min=1, max=65_536)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (x,), dynamo=True, input_names=["input"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), opset_version=OPSET, verbose=False)
    return program.model_proto


def compact_names(proto) -> None:
    """Give nodes and inner tensors short names (graph inputs and outputs keep theirs).

    Exporter and quantizer names such as ``/stack1/conv1/Conv_output_0_QuantizeLinear_Output`` cost
    ~250 bytes a node: 15 % of an int8 ResNet-8. Graphs with sub-graphs (If, Loop) are left as they are.
    """
    g = proto.graph
    if any(a.type in (5, 10) for n in g.node for a in n.attribute):  # GRAPH, GRAPHS attributes
        return
    keep = {v.name for v in g.input} | {v.name for v in g.output} | {""}
    short: dict[str, str] = {}

    def rename(name: str) -> str:
        if name in keep:
            return name
        return short.setdefault(name, f"t{len(short)}")

    for i, node in enumerate(g.node):
        node.name = f"n{i}"
        node.input[:] = [rename(x) for x in node.input]
        node.output[:] = [rename(x) for x in node.output]
    for init in g.initializer:
        init.name = rename(init.name)
    for vi in g.value_info:
        vi.name = rename(vi.name)


def unshare_initializers(proto):
    """A copy of ``proto`` in which every node has its own copy of each constant it reads.

    :func:`dedupe_initializers` lets equal constants share one tensor (the attention scale of every block of a
    vision transformer, say). onnxruntime's quantizer then quantizes that tensor once per consumer under one name,
    and the model no longer loads ("Duplicate definition of name"). The int8 file is deduplicated again on save.
    """
    import onnx

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    seen: dict[str, int] = {}
    for node in g.node:
        for k, name in enumerate(node.input):
            if name not in inits:
                continue
            seen[name] = seen.get(name, 0) + 1
            if seen[name] == 1:
                continue
            copy = g.initializer.add()
            copy.CopyFrom(inits[name])
            copy.name = f"{name}__{seen[name]}"
            node.input[k] = copy.name
    return proto


def dedupe_initializers(proto) -> None:
    """Let identical constant tensors (e.g. the all-zero per-channel zero points) share one initializer."""
    g = proto.graph
    seen: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    keep = []
    for init in g.initializer:
        key = (init.data_type, tuple(init.dims), init.SerializeToString().replace(init.name.encode(), b""))
        if key in seen:
            alias[init.name] = seen[key]
        else:
            seen[key] = init.name
            keep.append(init)
    if not alias:
        return
    del g.initializer[:]
    g.initializer.extend(keep)
    for node in g.node:
        node.input[:] = [alias.get(x, x) for x in node.input]


def save_onnx(proto, path: Path, metadata: dict) -> None:
    """Write ``proto`` atomically, as one file, with the edgekit metadata in ``metadata_props``."""
    onnx = require("onnx", extra="train", why="ONNX export")
    # The torch.export exporter stores stack traces and module paths on every node: useful when
    # debugging, dead weight on a device (a third of a ResNet-8's int8 file).
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del proto.graph.value_info[:]  # inferred shapes: onnxruntime infers them again when it loads the model
    dedupe_initializers(proto)
    compact_names(proto)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata_json(metadata)
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))


def export_onnx_fp32(model, example: np.ndarray, path: str | Path, *, metadata: dict,
                     calib: np.ndarray | None = None) -> Artifact:
    """Export ``model`` to a float32 ONNX file with its metadata.

    Args:
        model: a PyTorch module in eval mode (CPU).
        example: one float32 input batch (N, C, H, W); only its shape matters.
        path: the .onnx file to write.
        metadata: labels, input spec and pre-processing (edgekit.device.artifact.model_metadata).
        calib: unused; accepted so every exporter has one signature.

    Returns:
        The Artifact.

    Example:
        >>> export_onnx_fp32(model, x[:1], "run/model_fp32.onnx", metadata=meta)
    """
    path = Path(path)
    save_onnx(to_onnx_proto(model, example), path, {**metadata, "precision": "fp32"})
    return Artifact(path, "onnx", "fp32")


class CalibrationReader:
    """onnxruntime CalibrationDataReader over a numpy array, one sample at a time; or over a list of feed dicts
    (a model with several inputs: each dict gives every input of one call, as stored)."""

    def __init__(self, name: str, samples):
        self.name, self.samples, self.i = name, samples, 0

    def get_next(self):
        if self.i >= len(self.samples):
            return None
        self.i += 1
        if isinstance(self.samples, list):
            return self.samples[self.i - 1]
        return {self.name: self.samples[self.i - 1: self.i]}

    def rewind(self):
        self.i = 0

    def __iter__(self):  # onnxruntime's qdq_loss_debug iterates a reader
        self.rewind()
        return iter(self.get_next, None)


def pre_process(src: str | Path, dst: str | Path) -> str:
    """onnxruntime's pre-processing before quantization (symbolic shape inference, then graph optimization), as
    it recommends; returns which shape inference was used.

    Symbolic shape inference gives up on some graphs (seen: efficientformerv2's attention reshapes), and when it
    does it writes ``sym_shape_infer_temp.onnx`` and a data file into the *current* folder before raising: it
    runs from ``dst``'s folder, so the user's folder stays clean, and onnx's own shape inference takes over.
    (The folder change is process-wide: quantization runs in edgekit's single-threaded child jobs.)
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src).resolve(), Path(dst).resolve()
    with contextlib.chdir(dst.parent):
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
            return "symbolic"
        except Exception as exc:
            if not _from_symbolic_shape_inference(exc):
                raise
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    return "onnx"


def _from_symbolic_shape_inference(exc: BaseException) -> bool:
    """Whether onnxruntime's symbolic shape inference raised ``exc``: by its message, or from its own code (on
    timm's edgenext_xx_small its Expand handler hits a shape it cannot compute and raises a bare TypeError, which
    stopped every int8 candidate)."""
    if "symbolic shape inference" in str(exc).lower():
        return True
    tb = exc.__traceback__
    while tb is not None:
        if "symbolic_shape_infer" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def quantize_onnx(fp32_path: str | Path, path: str | Path, calib: np.ndarray, *, metadata: dict | None = None,
                  per_channel: bool = True, activation: str = "uint8", method: str = "minmax",
                  nodes_to_exclude: list[str] | None = None, reduce_range: bool = True,
                  op_types: list[str] | None = None, extra_options: dict | None = None,
                  precision: str = "int8", weight_rounding: str = "nearest",
                  calibration_cache: str | Path | None = None, activations: str = "static",
                  float_activation_products: bool = False) -> Artifact:
    """Static int8 QDQ quantization of an ONNX file, calibrated on ``calib`` (or dynamic: see ``activations``).

    Args:
        fp32_path: the float ONNX model.
        path: where the int8 model goes.
        calib: pre-processed float32 calibration inputs (training data, never the test split).
        metadata: embedded as in fp32; defaults to the fp32 file's own metadata.
        per_channel: per-output-channel weight scales (recommended for convolutions).
        activation: "uint8" (U8S8, fast on x86 and arm64) or "int8" (S8S8).
        method: calibration method: "minmax", "percentile" or "entropy".
        nodes_to_exclude: node names left in float.
        op_types: quantize only these operator types (others stay float); None: every type onnxruntime can.
        extra_options: more of onnxruntime's quantizer options (e.g. symmetric activations for TensorRT).
        precision: the precision the artifact is labelled with ("int8", or "int8_tensorrt").
        weight_rounding: "nearest" (onnxruntime's) or "gptq": the same int8 grid, each weight's values chosen
            against its layer's calibration inputs so the layer's outputs change least (:mod:`edgekit.export.gptq`).
        calibration_cache: a folder where the activation ranges are kept, keyed by everything that decides them
            (the pre-processed model, the samples, the method and its options, the operator types): the next
            candidate of a search that differs only in weights, bit widths or layers left in float skips the
            calibration pass (on a ResNet-class model at 128 px, 20-40 s of each candidate).
        activations: "static" (ranges from ``calib``, fixed in the file) or "dynamic": onnxruntime's dynamic
            quantization of the MatMuls with constant weights (``op_types`` default), int8 weights, each activation
            quantized at run time from its own range: onnxruntime's int8 for transformers. Measured on
            vit_tiny at 128 px (2-core Xeon, VNNI, 1 thread): 0.27x fp32's latency at 98 % agreement, where static
            int8 missed the budget; dynamic convolutions (ConvInteger) ran 9x slower than fp32, so not by default.
        float_activation_products: leave in float every MatMul of two computed tensors (attention scores,
            attention times values, linear attention's products), as LiteRT's compute-only int8 leaves
            BATCH_MATMUL: both inputs get int8 ranges there, and on efficientvit_b0 (timm, 128 px) static int8 with
            them kept 16.6 % accuracy where the float model had 49.2 %.
        reduce_range: 7-bit weights. U8S8 on x86 without VNNI multiplies with ``vpmaddubsw``, whose int16
            sums saturate with full 8-bit weights: measured here, top-1 agreement with fp32 fell to 98.1 %
            (digits) and 98.8 % (Fashion-MNIST) without it, against 100 % and 99.4 % with it, at the same speed.

    Returns:
        The int8 Artifact.

    Raises:
        DataError: when the calibration data does not fit the model's input.
    """
    onnx = require("onnx", extra="train", why="ONNX int8 quantization")
    q = require("onnxruntime.quantization", extra="onnx", why="ONNX int8 quantization")

    fp32_path, path = Path(fp32_path), Path(path)
    if calib is None or len(calib) == 0:
        raise DataError(f"{path}: int8 quantization needs calibration samples, got none")
    if not isinstance(calib, list):
        calib = np.asarray(calib, np.float32)
    if weight_rounding not in ("nearest", "gptq"):
        raise ValueError(f"weight_rounding is 'nearest' or 'gptq', not {weight_rounding!r}")
    if activations not in ("static", "dynamic"):
        raise ValueError(f"activations is 'static' or 'dynamic', not {activations!r}")
    proto = onnx.load(str(fp32_path))
    if metadata is None:
        metadata = next((json.loads(p.value) for p in proto.metadata_props if p.key == METADATA_KEY), {})
    input_name = proto.graph.input[0].name
    with scratch(path) as work, atomic_path(path) as tmp:
        pre, unshared = work / "pre.onnx", work / "unshared.onnx"
        onnx.save_model(unshare_initializers(proto), str(unshared))
        # Shape inference and graph optimization first, as onnxruntime recommends before quantizing.
        pre_process(unshared, pre)
        if activations == "dynamic":
            q.quantize_dynamic(str(pre), str(tmp), op_types_to_quantize=list(op_types or DYNAMIC_OPS),
                               per_channel=per_channel, reduce_range=reduce_range, weight_type=q.QuantType.QInt8,
                               nodes_to_exclude=list(nodes_to_exclude or []),
                               extra_options={"MatMulConstBOnly": True, **(extra_options or {})})
            notes: tuple[str, ...] = ("activations quantized at run time",)
        else:
            if float_activation_products:  # named on the pre-processed graph: the one onnxruntime quantizes
                nodes_to_exclude = [*(nodes_to_exclude or []), *activation_products(pre)]
            kwargs = quantizer_kwargs(per_channel=per_channel, activation=activation, method=method,
                                      reduce_range=reduce_range, nodes_to_exclude=nodes_to_exclude,
                                      op_types=op_types, extra_options=extra_options)
            cache = _calibration_cache(calibration_cache, pre, calib, method, kwargs["extra_options"], op_types)
            q.quantize_static(str(pre), str(tmp), CalibrationReader(input_name, calib),
                              **(cache.kwargs if cache else {}), **kwargs)
            if cache:
                cache.keep()
            notes = ()
        if weight_rounding == "gptq":
            from edgekit.export.gptq import gptq_onnx

            notes += (gptq_onnx(str(tmp), str(pre), CalibrationReader(input_name, calib)).sentence(),)
        qproto = onnx.load(str(tmp))
        save_onnx(qproto, tmp, {**metadata, "precision": precision})
    return Artifact(path, "onnx", precision, notes=notes)


DYNAMIC_OPS = ("MatMul",)  # what dynamic int8 quantizes by default: MatMuls whose weights are constants


def activation_products(path: str | Path) -> list[str]:
    """Names of the MatMul nodes of ``path`` neither of whose inputs is a constant: products of two activations."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    consts = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.name and len(n.input) > 1
            and n.input[0] not in consts and n.input[1] not in consts]


def quantizer_kwargs(*, per_channel: bool = True, activation: str = "uint8", method: str = "minmax",
                     reduce_range: bool = True, nodes_to_exclude: list[str] | None = None,
                     op_types: list[str] | None = None, extra_options: dict | None = None) -> dict:
    """onnxruntime ``quantize_static``'s arguments for edgekit's options (see :func:`quantize_onnx`): QDQ, int8
    weights, and a float bias (fused into QLinearConv exactly like an int32 one, same outputs measured, saving a
    DequantizeLinear and a scale array per layer: 5 % of a small int8 file)."""
    import onnxruntime.quantization as q

    methods = {"minmax": q.CalibrationMethod.MinMax, "percentile": q.CalibrationMethod.Percentile,
               "entropy": q.CalibrationMethod.Entropy}
    return {"quant_format": q.QuantFormat.QDQ, "per_channel": per_channel,
            "activation_type": q.QuantType.QUInt8 if activation == "uint8" else q.QuantType.QInt8,
            "weight_type": q.QuantType.QInt8, "calibrate_method": methods[method], "reduce_range": reduce_range,
            "nodes_to_exclude": list(nodes_to_exclude or []),
            "op_types_to_quantize": list(op_types) if op_types else None,
            "extra_options": {"CalibMovingAverage": False, "QuantizeBias": False, **(extra_options or {})}}


@dataclass
class _CalibrationCache:
    """One entry of a calibration cache: onnxruntime reads ``path`` when it exists, else writes ``tmp``, which
    :meth:`keep` then moves into place (a run killed while writing leaves no half file behind)."""

    path: Path
    tmp: Path

    @property
    def kwargs(self) -> dict:
        return {"calibration_cache_path": str(self.path if self.path.is_file() else self.tmp)}

    def keep(self) -> None:
        if self.tmp.is_file():
            os.replace(self.tmp, self.path)


def _calibration_cache(folder, pre: Path, calib, method: str, extra: dict, op_types) -> _CalibrationCache | None:
    """The cache entry for this calibration, or None without a folder or on an onnxruntime that has no cache."""
    import inspect

    from onnxruntime.quantization import quantize_static

    if folder is None or "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        return None
    key = hashlib.sha256(Path(pre).read_bytes())
    for sample in calib:
        for k, v in (sorted(sample.items()) if isinstance(sample, dict) else (("", sample),)):
            key.update(k.encode() + np.ascontiguousarray(v).tobytes())
    calib_options = {k: v for k, v in extra.items() if k.startswith("Calib")}
    # onnxruntime calibrates only the tensors of the operator types it quantizes, and its default set is not a
    # superset of every explicit list (seen: a list naming Sub and Pow found no cached range): the types are keyed.
    key.update(json.dumps([method, calib_options, sorted(op_types) if op_types else None], sort_keys=True,
                          default=str).encode())
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = key.hexdigest()[:32]
    return _CalibrationCache(folder / f"{name}.json", folder / f"{name}.{os.getpid()}.tmp.json")


def export_onnx_int8(model, example: np.ndarray, path: str | Path, *, metadata: dict,
                     calib: np.ndarray | None = None) -> Artifact:
    """Export ``model`` to float ONNX, then quantize it statically (U8S8, per-channel, QDQ) on ``calib``."""
    path = Path(path)
    with scratch(path) as work:
        save_onnx(to_onnx_proto(model, example), work / "fp32.onnx", {**metadata, "precision": "fp32"})
        return quantize_onnx(work / "fp32.onnx", path, calib, metadata=metadata)
