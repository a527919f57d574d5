"""GPTQ rounding of an int8 ONNX model's weights: the same int8 grid, values chosen against the layer's inputs.

Why: on real architectures most int8 candidates that miss a 1-point budget already miss it with only the
weights rounded to int8 and every activation float (the *weight floor*, :mod:`edgekit.compress.floors`), so no
calibration variant can help them. Rounding each weight to its nearest level minimises the weight's own error,
not the layer's output error; GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers", 2023) rounds a layer's weight one input column at a time and moves each column's
rounding error onto the columns not yet rounded, weighted by the inverse Hessian ``H = XᵀX`` of the layer's
inputs ``X``, so the layer's *output* on real inputs changes least. Measured on four zoo architectures
(docs/gptq-weights.md), weights only: seresnext26d -3.1 → -0.2 points, vit_tiny -1.7 → +0.1, resnet50
-3.7 → -1.5, resnet18's top-1 agreement 95.5 → 99.1 %.

How it fits onnxruntime's quantizer: each Conv/Gemm/MatMul weight of a QDQ model is an int8 initializer behind
a DequantizeLinear with onnxruntime's scale and zero point (per output channel). This keeps those scales, zero
points and every node, and only re-chooses the int8 values, clamped to the span the quantizer used (7-bit
weights stay 7-bit): the model is exactly as fast as before. The float weights and ``X`` come from the
pre-processed fp32 model the quantizer read (BatchNorm already folded), on the calibration samples -- for a
convolution, its im2col patches at a few sampled positions per sample, each group of a grouped convolution on
its own. Taken from the float model, neither depends on how the activations were calibrated, so the levels are
computed once per weight grid and reused by every candidate of a search (:data:`_LEVELS`).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

HESSIAN_SAMPLES = 128  # calibration samples whose layer inputs make the Hessians
POSITIONS = 64  # sampled output positions (convolution) or tokens (matrix product) per sample
DAMP = 0.01  # added to H's diagonal, as a fraction of its mean: GPTQ's default
BLOCK = 128  # columns rounded together before their error is pushed to the rest (GPTQ's lazy batch)
MAX_INPUTS = 8192  # a layer with more inputs per output keeps round-to-nearest (its Hessian alone: 256 MiB+)
HESSIAN_BYTES = 1 << 30  # Hessians held at once; more layers are measured in further passes over the samples
COMPUTE = ("Conv", "Gemm", "MatMul")


@dataclass(eq=False)  # compared by identity: it holds arrays
class Layer:
    """One weight of the QDQ model that GPTQ re-rounds, with what it needs to know about the layer."""

    node: str  # the Conv/Gemm/MatMul node
    op: str
    activation: str  # the tensor the node multiplies the weight with (in the float model)
    quantized: str  # the int8 initializer behind the weight's DequantizeLinear
    float_weight: np.ndarray  # the same weight in float, as the quantizer read it
    scale: np.ndarray  # (O,) onnxruntime's scale per output channel
    zero: np.ndarray  # (O,) its zero point
    transposed: bool = False  # the output channel is the weight's last axis (Gemm without transB, MatMul)
    attrs: dict = field(default_factory=dict)  # Conv: groups, kernel, strides, pads, dilations; Gemm: transA


@dataclass
class Summary:
    """What :func:`gptq_onnx` did, for the candidate's record."""

    layers: int = 0  # weights re-rounded
    skipped: dict = field(default_factory=dict)  # node -> why it kept round-to-nearest
    changed: float = 0.0  # fraction of the int8 values that differ from round-to-nearest
    seconds: float = 0.0

    def sentence(self) -> str:
        s = f"GPTQ re-rounded {self.layers} weight(s) ({self.changed * 100:.1f} % of their int8 values moved)"
        if self.skipped:
            s += f"; {len(self.skipped)} kept round-to-nearest ({next(iter(self.skipped.values()))})"
        return s + f", {self.seconds:.1f} s"


def gptq_levels(w: np.ndarray, h: np.ndarray, scale: np.ndarray, zero: np.ndarray, lo: int, hi: int,
                damp: float = DAMP, block: int = BLOCK) -> np.ndarray | None:
    """Integer levels for weights ``w`` (G, R, D) -- G independent groups of R output rows over D inputs -- on the
    grid ``(level - zero) * scale`` (``scale``, ``zero``: (G, R)), chosen by GPTQ against the inputs' Hessians
    ``h`` (G, D, D). Returns int64 levels (G, R, D) in [lo, hi], or None when a Hessian stays singular.

    With ``h`` the identity this is round-to-nearest exactly (no error is pushed anywhere).
    """
    w = np.array(w, np.float64)
    h = np.array(h, np.float64)
    g, r, d = w.shape
    # Inputs that were always zero on the calibration samples: a unit diagonal keeps them out of everyone's error
    # and rounds their own weights to nearest (GPTQ's reference zeroes them, which a rarely active channel of the
    # evaluation data would then miss).
    dead = np.einsum("gii->gi", h) <= 0
    for k in range(g):
        h[k, dead[k], dead[k]] = 1.0
    diag = np.einsum("gii->gi", h)
    u = None
    for attempt in range(4):
        hd = h + (damp * 10 ** attempt) * diag.mean(1)[:, None, None] * np.eye(d)
        try:
            lower = np.linalg.cholesky(hd)
            inv_lower = np.linalg.inv(lower)
            hinv = np.swapaxes(inv_lower, 1, 2) @ inv_lower
            u = np.swapaxes(np.linalg.cholesky(hinv), 1, 2)  # upper: H^-1 = UᵀU
            break
        except np.linalg.LinAlgError:
            continue
    if u is None:
        return None
    s = np.asarray(scale, np.float64).reshape(g, r)
    z = np.asarray(zero, np.float64).reshape(g, r)
    s = np.where(s > 0, s, 1.0)
    q = np.empty((g, r, d), np.int64)
    for i1 in range(0, d, block):
        i2 = min(i1 + block, d)
        w1 = w[:, :, i1:i2].copy()
        err = np.zeros_like(w1)
        u1 = u[:, i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = w1[:, :, i]
            level = np.clip(np.round(col / s) + z, lo, hi)
            q[:, :, i1 + i] = level
            e = (col - (level - z) * s) / u1[:, i, i][:, None]
            w1[:, :, i:] -= e[:, :, None] * u1[:, i, i:][:, None, :]
            err[:, :, i] = e
        w[:, :, i2:] -= err @ u[:, i1:i2, i2:]
    return q


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's BLAS/LAPACK on one thread. OpenBLAS's threads spin while they wait: on a 2-core machine where
    anything else runs (onnxruntime's pool, a second process), a batched Cholesky measured 10.6 s on 2 threads
    against 0.04 s on one (32 matrices of 288x288); GPTQ's small matrices gain nothing from more."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without it, as numpy was set up
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# --- the layers of a QDQ model --------------------------------------------------------------------------------


def find_layers(qdq, pre) -> tuple[list[Layer], dict]:
    """The weights of ``qdq`` (an onnxruntime QDQ ModelProto) GPTQ can re-round, matched by node name to the float
    weights of ``pre`` (the model the quantizer read); and the layers left as they are, with why."""
    from onnx import numpy_helper

    inits = {i.name: i for i in qdq.graph.initializer}
    f_inits = {i.name: i for i in pre.graph.initializer}
    producer = {o: n for n in qdq.graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in qdq.graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    f_nodes = {n.name: n for n in pre.graph.node if n.name}
    layers, skipped = [], {}
    for node in qdq.graph.node:
        if node.op_type == "MatMulInteger":
            lay = _dynamic_layer(node, inits, f_inits, pre, readers, skipped)
            if lay is not None:
                layers.append(lay)
            continue
        if node.op_type not in COMPUTE or len(node.input) < 2:
            continue
        dq = producer.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue  # a float weight (layer left in float) or an activation-by-activation product
        why = None
        f_node = f_nodes.get(node.name)
        f_name = f_node.input[1] if f_node is not None and len(f_node.input) > 1 else None
        if f_node is None or f_node.op_type != node.op_type or f_name not in f_inits:
            why = "its float layer was not found"
        elif readers.get(node.input[1], 0) != 1 or readers.get(dq.input[0], 0) != 1:
            why = "the weight is shared"
        elif len(dq.input) < 2 or dq.input[1] not in inits:
            why = "its scale is not a constant"
        if why:
            skipped[node.name] = why
            continue
        wq = numpy_helper.to_array(inits[dq.input[0]])
        wf = numpy_helper.to_array(f_inits[f_name]).astype(np.float64)
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
        zero = (numpy_helper.to_array(inits[dq.input[2]]).astype(np.float64) if len(dq.input) > 2 and dq.input[2]
                else np.zeros_like(scale))
        attrs = {a.name: a for a in node.attribute}
        transposed = node.op_type == "MatMul" or (node.op_type == "Gemm" and not _int(attrs, "transB", 0))
        out_axis = wq.ndim - 1 if transposed else 0
        axis = _int({a.name: a for a in dq.attribute}, "axis", 1) % max(wq.ndim, 1)
        if wq.shape != wf.shape or wq.dtype not in (np.int8, np.uint8) or wq.ndim < 2:
            why = f"weight {wq.dtype}{list(wq.shape)} against float {list(wf.shape)}"
        elif node.op_type == "MatMul" and wq.ndim != 2:
            why = "a batched weight"
        elif node.op_type == "Conv" and wq.ndim not in (3, 4):
            why = f"a {wq.ndim - 2}-D convolution"
        elif node.op_type == "Conv" and _str(attrs, "auto_pad", "NOTSET") not in ("NOTSET", "VALID", "SAME_UPPER",
                                                                                  "SAME_LOWER"):
            why = "its padding mode"
        elif scale.size > 1 and axis != out_axis:
            why = f"its scales run along axis {axis}, not the output channels"
        if why:
            skipped[node.name] = why
            continue
        o = wq.shape[out_axis]
        layers.append(Layer(
            node=node.name, op=node.op_type, activation=f_node.input[0], quantized=dq.input[0], float_weight=wf,
            scale=np.broadcast_to(scale.reshape(-1), (o,)).copy() if scale.size in (1, o) else scale,
            zero=np.broadcast_to(zero.reshape(-1), (o,)).copy() if zero.size in (1, o) else zero,
            transposed=transposed, attrs=_conv_attrs(attrs, wq.shape) if node.op_type == "Conv" else
            {"transA": _int(attrs, "transA", 0)}))
    return layers, skipped


def _dynamic_layer(node, inits: dict, f_inits: dict, pre, readers: dict, skipped: dict) -> Layer | None:
    """A MatMul of onnxruntime's dynamic quantization (``MatMulInteger`` of the run-time quantized input and the
    int8 weight ``W_quantized``, its scale ``W_scale`` multiplied in afterwards), matched to the float MatMul of
    ``pre`` that reads ``W``; None (and the reason in ``skipped``) when it cannot be re-rounded."""
    from onnx import numpy_helper

    wq_name = node.input[1] if len(node.input) > 1 else ""
    base = wq_name[: -len("_quantized")] if wq_name.endswith("_quantized") else None
    f_node = next((n for n in pre.graph.node if n.op_type == "MatMul" and base and len(n.input) > 1
                   and n.input[1] == base), None)
    why = None
    if base is None or wq_name not in inits or f_node is None or base not in f_inits:
        why = "its float layer was not found"
    elif f"{base}_scale" not in inits:
        why = "its scale is not a constant"
    elif readers.get(wq_name, 0) != 1:
        why = "the weight is shared"
    if why:
        skipped[node.name] = why
        return None
    wq = numpy_helper.to_array(inits[wq_name])
    wf = numpy_helper.to_array(f_inits[base]).astype(np.float64)
    scale = numpy_helper.to_array(inits[f"{base}_scale"]).astype(np.float64).reshape(-1)
    zp = node.input[3] if len(node.input) > 3 and node.input[3] in inits else None
    zero = numpy_helper.to_array(inits[zp]).astype(np.float64).reshape(-1) if zp else np.zeros_like(scale)
    o = wq.shape[-1] if wq.ndim == 2 else 0
    if wq.ndim != 2 or wq.shape != wf.shape or wq.dtype not in (np.int8, np.uint8) or scale.size not in (1, o) \
            or zero.size not in (1, o):
        skipped[node.name] = f"weight {wq.dtype}{list(wq.shape)} against float {list(wf.shape)}"
        return None
    return Layer(node=f_node.name or node.name, op="MatMul", activation=f_node.input[0], quantized=wq_name,
                 float_weight=wf, scale=np.broadcast_to(scale, (o,)).copy(), zero=np.broadcast_to(zero, (o,)).copy(),
                 transposed=True, attrs={"transA": 0})


def _int(attrs: dict, name: str, default: int) -> int:
    return attrs[name].i if name in attrs else default


def _str(attrs: dict, name: str, default: str) -> str:
    return attrs[name].s.decode() if name in attrs else default


def _conv_attrs(attrs: dict, shape: tuple) -> dict:
    k = tuple(shape[2:])
    n = len(k)
    return {"group": _int(attrs, "group", 1), "kernel": k,
            "strides": tuple(attrs["strides"].ints) if "strides" in attrs else (1,) * n,
            "dilations": tuple(attrs["dilations"].ints) if "dilations" in attrs else (1,) * n,
            "pads": tuple(attrs["pads"].ints) if "pads" in attrs else (0,) * (2 * n),
            "auto_pad": _str(attrs, "auto_pad", "NOTSET")}


# --- the layers' inputs -----------------------------------------------------------------------------------------


def rows_of(layer: Layer, x: np.ndarray, rng: np.random.Generator, positions: int = POSITIONS) -> np.ndarray:
    """Rows of the layer's input matrix from one call's activation ``x``: (n, G, D) with D in the weight's
    flattened order, G the convolution's groups (1 otherwise)."""
    if layer.op != "Conv":
        if layer.op == "Gemm" and layer.attrs.get("transA"):
            x = x.T
        x = x.reshape(-1, x.shape[-1])
        if len(x) > positions:
            x = x[rng.choice(len(x), positions, replace=False)]
        return x[:, None, :]
    a = layer.attrs
    if len(a["kernel"]) == 1:  # 1-D: a 2-D convolution of height 1
        x = x[:, :, None, :]
        a = {**a, "kernel": (1, *a["kernel"]), "strides": (1, *a["strides"]), "dilations": (1, *a["dilations"]),
             "pads": (0, a["pads"][0], 0, a["pads"][1])}
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["strides"], a["dilations"]
    pt, pl, pb, pr = _pads(a, x.shape[2], x.shape[3])
    ho = (x.shape[2] + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (x.shape[3] + pl + pr - dw * (kw - 1) - 1) // sw + 1
    return patches(x, a, rng.choice(ho * wo, min(positions, ho * wo), replace=False))


def patches(x: np.ndarray, a: dict, pick: np.ndarray) -> np.ndarray:
    """im2col of a 2-D convolution's input ``x`` (N, C, H, W) at the flat output positions ``pick``: (N·P, G, D),
    each row the values the convolution multiplies with one output channel's weights (flattened C/G, kh, kw)."""
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["strides"], a["dilations"]
    n, c, hgt, wid = x.shape
    pt, pl, pb, pr = _pads(a, hgt, wid)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    wo = (wid + pl + pr - dw * (kw - 1) - 1) // sw + 1
    oh, ow = pick // wo, pick % wo
    rows = oh[:, None] * sh + np.arange(kh)[None] * dh  # (P, kh)
    cols = ow[:, None] * sw + np.arange(kw)[None] * dw  # (P, kw)
    out = xp[:, :, rows[:, :, None], cols[:, None, :]]  # (N, C, P, kh, kw)
    out = out.transpose(0, 2, 1, 3, 4).reshape(n * len(pick), c * kh * kw)
    g = a["group"]
    return out.reshape(len(out), g, (c // g) * kh * kw)


def _pads(a: dict, hgt: int, wid: int) -> tuple[int, int, int, int]:
    if a["auto_pad"] == "VALID":
        return 0, 0, 0, 0
    if a["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for size, k, s, dl in zip((hgt, wid), a["kernel"], a["strides"], a["dilations"], strict=True):
            total = max((-(-size // s) - 1) * s + (k - 1) * dl + 1 - size, 0)
            small = total // 2
            out.append((total - small, small) if a["auto_pad"] == "SAME_LOWER" else (small, total - small))
        return out[0][0], out[1][0], out[0][1], out[1][1]
    pt, pl, pb, pr = a["pads"]
    return pt, pl, pb, pr


def hessians(float_path: str, layers: list[Layer], feeds, rng: np.random.Generator) -> dict[str, tuple]:
    """``XᵀX`` of every layer's input over the calibration calls ``feeds`` (each a feed dict), running the float
    model with those inputs as extra outputs; returns node -> (H (G, D, D) float32, rows)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(float_path)
    graph_inputs = {i.name for i in model.graph.input}
    present = {o.name for o in model.graph.output}
    for name in dict.fromkeys(lay.activation for lay in layers):
        if name not in present and name not in graph_inputs:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
            present.add(name)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    acc: dict[str, tuple] = {}
    pending: dict[str, list] = {lay.node: [] for lay in layers}
    batch = 8

    def flush(lay: Layer):
        if pending[lay.node]:
            _accumulate(acc, lay.node, np.concatenate(pending[lay.node]))
            pending[lay.node] = []

    for i, feed in enumerate(feeds):
        values = dict(zip(names, session.run(None, feed), strict=True))
        values.update(feed)
        for lay in layers:
            pending[lay.node].append(rows_of(lay, np.asarray(values[lay.activation], np.float32), rng))
            if (i + 1) % batch == 0:
                flush(lay)
    for lay in layers:
        flush(lay)
    return acc


def _accumulate(acc: dict, key, rows: np.ndarray) -> None:
    """Add rows (n, G, D) of one layer's input to its running (XᵀX, row count) in ``acc``."""
    rows = rows.astype(np.float32, copy=False)
    prev, count = acc.get(key, (0.0, 0))
    acc[key] = (prev + _gram(rows), count + len(rows))


def _levels(lay: Layer, w: np.ndarray, stats: tuple | None, lo: int, hi: int, summary: Summary) -> np.ndarray | None:
    """GPTQ's levels (O, D) of ``lay``'s weight ``w`` (output channels first) from its input statistics
    ``(XᵀX, rows)``; None, with the reason in ``summary``, when no input reached it or its Hessian stayed singular."""
    h, count = stats if stats is not None else (None, 0)
    if h is None or count == 0:
        summary.skipped[lay.node] = "no calibration input reached it"
        return None
    o = w.shape[0]
    g = lay.attrs.get("group", 1) if lay.op == "Conv" else 1
    levels = gptq_levels(w.reshape(g, o // g, -1), h / count, lay.scale.reshape(g, -1), lay.zero.reshape(g, -1),
                         lo, hi)
    if levels is None:
        summary.skipped[lay.node] = "its input Hessian stayed singular"
        return None
    return levels.reshape(o, -1)


def _gram(m: np.ndarray) -> np.ndarray:
    """(G, D, D) = each group's XᵀX from rows ``m`` (n, G, D), as one batched BLAS product (einsum is 10x slower)."""
    g = np.ascontiguousarray(m.transpose(1, 0, 2))
    return np.matmul(g.transpose(0, 2, 1), g)


# --- the pass ---------------------------------------------------------------------------------------------------


_LEVELS: dict[str, np.ndarray] = {}  # weight grid + calibration inputs -> GPTQ's levels, for the next candidate
MEMO_BYTES = 512 << 20  # forgotten beyond this (levels are as large as the int8 weights)


def gptq_onnx(qdq_path: str, pre_path: str, feeds, *, seed: int = 0) -> Summary:
    """Re-round, in place, the int8 weights of the QDQ model at ``qdq_path`` by GPTQ (see the module's docstring).

    Args:
        qdq_path: onnxruntime's QDQ model; overwritten (the caller's atomic write covers it).
        pre_path: the float model the quantizer read (node names shared with the QDQ model).
        feeds: calibration calls, each a feed dict (at most :data:`HESSIAN_SAMPLES` are used).
    """
    import onnx
    from onnx import numpy_helper

    t0 = time.perf_counter()
    qdq = onnx.load(qdq_path)
    layers, skipped = find_layers(qdq, onnx.load(pre_path, load_external_data=True))
    summary = Summary(skipped=skipped)
    feeds = list(feeds)[:HESSIAN_SAMPLES]
    inputs = hashlib.sha1()
    for feed in feeds:
        for k in sorted(feed):
            inputs.update(k.encode() + np.ascontiguousarray(feed[k]).tobytes())
    inits = {i.name: i for i in qdq.graph.initializer}
    todo = []
    for lay in layers:
        old = numpy_helper.to_array(inits[lay.quantized])
        o = lay.scale.size
        rtn = (old.T if lay.transposed else old).reshape(o, -1).astype(np.int64)
        span = int(np.max(np.abs(rtn - lay.zero[:, None]))) or 1  # the quantizer's span: 7-bit stays 7-bit
        info = np.iinfo(old.dtype)
        lo, hi = max(info.min, int(lay.zero.min()) - span), min(info.max, int(lay.zero.max()) + span)
        key = hashlib.sha1(inputs.digest())
        for arr in (lay.float_weight, lay.scale, lay.zero):
            key.update(np.ascontiguousarray(arr).tobytes())
        key.update(repr((lo, hi, lay.op, lay.transposed, sorted(lay.attrs.items()))).encode())
        todo.append((lay, old, rtn, lo, hi, key.hexdigest()))
    missing = [t[0] for t in todo if t[5] not in _LEVELS]
    if missing:
        with one_blas_thread():
            _solve(pre_path, missing, {t[0].node: t for t in todo}, feeds, summary, np.random.default_rng(seed))
    moved = total = 0
    for lay, old, rtn, _, _, key in todo:
        if key not in _LEVELS:
            continue
        new = _LEVELS[key]
        moved += int(np.count_nonzero(new.reshape(rtn.shape) != rtn))
        total += new.size
        new = new.reshape((lay.float_weight.T if lay.transposed else lay.float_weight).shape).astype(old.dtype)
        inits[lay.quantized].CopyFrom(numpy_helper.from_array(new.T if lay.transposed else new, lay.quantized))
        summary.layers += 1
    onnx.save(qdq, qdq_path)
    summary.changed = moved / total if total else 0.0
    summary.seconds = time.perf_counter() - t0
    return summary


def _solve(pre_path: str, layers: list[Layer], todo: dict, feeds: list, summary: Summary, rng) -> None:
    """GPTQ's levels of ``layers`` into :data:`_LEVELS`, their Hessians measured chunk by chunk."""
    for chunk in _chunks(layers, summary):
        stats = hessians(pre_path, chunk, feeds, rng)
        for lay in chunk:
            _, old, _, lo, hi, key = todo[lay.node]
            w = lay.float_weight.T if lay.transposed else lay.float_weight  # (O, ...)
            levels = _levels(lay, w, stats.pop(lay.node, None), lo, hi, summary)
            if levels is None:
                continue
            if sum(v.nbytes for v in _LEVELS.values()) > MEMO_BYTES:
                _LEVELS.clear()
            _LEVELS[key] = levels.astype(old.dtype)


def _chunks(layers: list[Layer], summary: Summary) -> list[list[Layer]]:
    """The layers in groups whose Hessians fit :data:`HESSIAN_BYTES` together (one pass over the samples
    each); a layer with more than :data:`MAX_INPUTS` inputs per output is left out (and said so)."""
    out, cur, size = [], [], 0
    for lay in layers:
        w = lay.float_weight
        g = lay.attrs.get("group", 1) if lay.op == "Conv" else 1
        d = w.size // w.shape[-1 if lay.transposed else 0]  # inputs per output (a convolution: C/G · kernel)
        if d > MAX_INPUTS:
            summary.skipped[lay.node] = f"{d} inputs per output are more than GPTQ's {MAX_INPUTS}"
            continue
        b = g * d * d * 4
        if cur and size + b > HESSIAN_BYTES:
            out.append(cur)
            cur, size = [], 0
        cur.append(lay)
        size += b
    return [*out, cur] if cur else out


# --- the same for a PT2E graph (TFLite int8 through litert-torch) ----------------------------------------------


def gptq_pt2e(graph, calib: np.ndarray, batch: int, *, seed: int = 0) -> Summary:
    """Re-round, in place, the int8 weights of a converted PT2E graph (``convert_pt2e(fold_quantize=False)``).

    Each ``aten.conv2d``/``aten.linear`` weight there is a float parameter behind ``quantize_per_channel`` (or
    per tensor) with the quantizer's scale, zero point and range; the parameter is replaced by the GPTQ-chosen
    points of that same grid, ``(level - zero) · scale``, so the quantize op (and LiteRT's folding of it) gives
    back exactly those levels. The layers' inputs are those of the graph itself (activations already
    fake-quantized) on up to :data:`HESSIAN_SAMPLES` calibration samples.
    """

    t0 = time.perf_counter()
    summary = Summary()
    layers = _pt2e_layers(graph, summary)
    if not layers:
        summary.seconds = time.perf_counter() - t0
        return summary
    rng = np.random.default_rng(seed)
    xs = np.ascontiguousarray(calib[:HESSIAN_SAMPLES])
    totals = [0, 0]  # int8 values moved, int8 values
    for chunk in _chunks(list(layers.values()), summary):
        watched = {n: lay for n, lay in layers.items() if lay in chunk}
        with one_blas_thread():
            acc = _pt2e_hessians(graph, watched, xs, batch, rng)
            _solve_pt2e(watched, acc, summary, totals)
    summary.changed = totals[0] / totals[1] if totals[1] else 0.0
    summary.seconds = time.perf_counter() - t0
    return summary


def _solve_pt2e(watched: dict, acc: dict, summary: Summary, totals: list[int]) -> None:
    """GPTQ's levels of each watched layer, written into its parameter as points of the quantizer's grid."""
    import torch

    for n, lay in watched.items():
        w = lay.float_weight
        o = w.shape[0]
        lo, hi = lay.attrs["range"]
        levels = _levels(lay, w, acc.pop(n, None), lo, hi, summary)
        if levels is None:
            continue
        rtn = np.clip(np.round(w.reshape(o, -1) / lay.scale[:, None]) + lay.zero[:, None], lo, hi)
        totals[0] += int(np.count_nonzero(levels != rtn))
        totals[1] += levels.size
        param = lay.attrs["param"]
        grid = ((levels - lay.zero[:, None]) * lay.scale[:, None]).reshape(w.shape)
        with torch.no_grad():
            param.copy_(torch.from_numpy(grid).to(param.dtype))
        summary.layers += 1


def _pt2e_hessians(graph, watched: dict, xs: np.ndarray, batch: int, rng: np.random.Generator) -> dict:
    """node -> (XᵀX, rows) of each watched layer's input, running ``graph`` on ``xs`` in batches."""
    import torch

    acc: dict = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            if n in watched:
                args, _ = self.fetch_args_kwargs_from_env(n)
                _accumulate(acc, n, rows_of(watched[n], args[0].detach().float().numpy(), rng))
            return super().run_node(n)

    with torch.no_grad():
        for i in range(0, len(xs), batch):
            Recorder(graph).run(torch.from_numpy(xs[i: i + batch]))
    return acc


def _pt2e_layers(graph, summary: Summary) -> dict:
    """node -> Layer for every conv2d/conv1d/linear of ``graph`` whose weight is a parameter behind a
    quantize/dequantize pair along its output channels."""
    import torch

    aten = torch.ops.aten
    qd = torch.ops.quantized_decomposed
    per_channel = (qd.dequantize_per_channel.default,)
    per_tensor = (qd.dequantize_per_tensor.default,)
    out = {}
    for n in graph.graph.nodes:
        if n.op != "call_function" or n.target not in (aten.conv2d.default, aten.conv1d.default, aten.linear.default):
            continue
        if len(n.args) < 2 or not isinstance(n.args[1], torch.fx.Node):
            continue
        dq = n.args[1]
        if dq.op != "call_function" or dq.target not in per_channel + per_tensor:
            continue  # a float weight, or an activation-by-activation product
        q = dq.args[0]
        if not isinstance(q, torch.fx.Node) or q.op != "call_function" or not isinstance(q.args[0], torch.fx.Node) \
                or q.args[0].op != "get_attr":
            summary.skipped[n.name] = "its weight is not a constant behind the quantizer"
            continue
        attr = q.args[0]
        if len(attr.users) != 1:
            summary.skipped[n.name] = "the weight is shared"
            continue
        param = graph.get_parameter(attr.target) if _is_param(graph, attr.target) else getattr_path(graph, attr.target)
        w = param.detach().double().numpy()
        o = w.shape[0]
        if dq.target in per_channel:
            scale = _const(graph, q.args[1]).reshape(-1)
            zero = _const(graph, q.args[2]).reshape(-1)
            axis, lo, hi = q.args[3], q.args[4], q.args[5]
            if axis != 0:
                summary.skipped[n.name] = f"its scales run along axis {axis}, not the output channels"
                continue
        else:
            scale, zero = np.full(o, float(q.args[1])), np.full(o, float(q.args[2]))
            lo, hi = q.args[3], q.args[4]
        is_conv = n.target is not aten.linear.default
        attrs = {"param": param, "range": (int(lo), int(hi))}
        if is_conv:
            k = tuple(w.shape[2:])
            nd = len(k)

            pad = _conv_arg(n.args, 4, 0, nd)
            attrs.update(group=int(n.args[6]) if len(n.args) > 6 else 1, kernel=k, strides=_conv_arg(n.args, 3, 1, nd),
                         dilations=_conv_arg(n.args, 5, 1, nd), pads=(*pad, *pad), auto_pad="NOTSET")
        out[n] = Layer(node=n.name, op="Conv" if is_conv else "Gemm", activation=n.args[0].name, quantized=attr.target,
                       float_weight=w, scale=np.broadcast_to(scale, (o,)).astype(np.float64),
                       zero=np.broadcast_to(zero, (o,)).astype(np.float64), attrs=attrs)
    return out


def _conv_arg(args: tuple, i: int, default: int, nd: int) -> tuple:
    """aten.conv's stride/padding/dilation argument ``i`` as one value per spatial axis."""
    v = args[i] if len(args) > i else default
    return tuple(v) if isinstance(v, list | tuple) else (v,) * nd


def _is_param(graph, target: str) -> bool:
    try:
        graph.get_parameter(target)
        return True
    except AttributeError:
        return False


def getattr_path(obj, target: str):
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _const(graph, node) -> np.ndarray:
    import torch

    v = getattr_path(graph, node.target) if isinstance(node, torch.fx.Node) else node
    return v.detach().double().numpy() if hasattr(v, "detach") else np.asarray(v, np.float64)
