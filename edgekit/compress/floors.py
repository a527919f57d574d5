"""What the float model itself loses to int8's rounding, before any int8 candidate: the floors of the search.

When no int8 candidate is within the budget, the user needs to know whether a better remedy could exist.
Two measurements on the fp32 model answer it, each one evaluation pass judged by the same gate:

- **input noise**: the inputs moved by ±half a step of an 8-bit grid (the input's own quantization alone);
- **int8 weights**: every convolution and matrix-product weight rounded to 8 bits per output channel
  (symmetric, 127 levels, as the int8 candidates store them) while every activation stays float.

Every int8 candidate that rounds weights to nearest rounds at least that much, then adds the activations'
rounding at every layer. A model that leaves the budget under either has decisions finer than int8 carries
(measured on randomly initialised timm backbones: weights alone changed 4.5 % of resnet18's and 57 % of
mobilenetv2_100's top-1 decisions), so the remedies left are weights rounded by GPTQ on the same grid
(:mod:`edgekit.export.gptq`, against the layers' inputs), layers kept in float, quantization-aware training,
or fp32/fp16 as the artifact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.device.verify import parity

# Where each weight-bearing operator keeps its output channels (ONNX layouts), for per-channel rounding.
MEMO = "weight_floor.json"  # in the work folder: the last weight floor measured, with what it was measured on
WEIGHT_INPUTS = {"Conv": 0, "ConvTranspose": 1, "Gemm": None, "MatMul": -1}  # Gemm: 0 with transB, else 1


def noise_floor(fp32_path: str | Path, x: np.ndarray, y: np.ndarray | None, reference: np.ndarray, gate,
                calib: np.ndarray, seed: int = 0) -> dict:
    """The fp32 model (ONNX or TFLite) on inputs moved by a uniform ±half step of an 8-bit grid over the
    calibration range, judged by ``gate`` like a candidate."""
    from edgekit.device.runtime import open_session

    noise, step = half_step_noise(x.shape, calib, seed)
    with open_session(str(fp32_path), threads=2) as s:
        out = s.run(x + noise)
    return {"input_step": step, **_judged(out, y, reference, gate)}


def weight_floor(fp32_onnx: str | Path, x: np.ndarray, y: np.ndarray | None, reference: np.ndarray, gate,
                 work: str | Path) -> dict:
    """The fp32 ONNX model with its weights rounded to int8 per output channel, activations float, judged by
    ``gate``. The rounded copy is written to ``work`` and removed after; the result is kept there too
    (:data:`MEMO`), so the search that orders its remedies by it and the report that explains a failure with it
    (on ONNX and TFLite) pay for one evaluation pass, not three."""
    import json

    import onnx

    from edgekit.device.runtime import open_session
    from edgekit.rundir import write_json

    st = Path(fp32_onnx).stat()
    key = (f"{Path(fp32_onnx).resolve()}:{st.st_size}:{st.st_mtime_ns}:{len(x)}:{float(np.sum(x[:8]))}:"
           f"{gate.budget}:{gate.baseline_accuracy}")
    memo = Path(work) / MEMO
    try:
        kept = json.loads(memo.read_text())
        if kept.get("key") == key:
            return kept["result"]
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    model = onnx.load(str(fp32_onnx))
    rounded, worst = round_weights(model)
    path = Path(work) / "weights_rounded_to_int8.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    try:
        with open_session(str(path), threads=2) as s:
            out = s.run(x)
    finally:
        path.unlink(missing_ok=True)
    result = {"weights_rounded": rounded, "worst_relative_error": worst, **_judged(out, y, reference, gate)}
    write_json(memo, {"key": key, "result": result})
    return result


def torch_weight_floor(model, x: np.ndarray, y: np.ndarray | None, reference: np.ndarray, gate,
                       batch: int = 50) -> dict:
    """The weight floor of a PyTorch model (the TFLite int8 search's source): a copy with every Conv/Linear
    weight rounded to 8 bits per output channel, activations float, run on ``x`` and judged by ``gate``."""
    import copy

    import torch

    rounded = copy.deepcopy(model).eval()
    n = 0
    with torch.no_grad():
        for m in rounded.modules():
            w = getattr(m, "weight", None)
            if isinstance(m, torch.nn.modules.conv._ConvNd | torch.nn.Linear) and w is not None and w.ndim >= 2:
                w.copy_(torch.from_numpy(per_channel_int8(w.detach().float().numpy(), 0)).to(w.dtype))
                n += 1
        out = np.concatenate([rounded(torch.from_numpy(np.ascontiguousarray(x[i: i + batch]))).float().numpy()
                              for i in range(0, len(x), batch)])
    return {"weights_rounded": n, **_judged(out, y, reference, gate)}


def round_weights(model) -> tuple[int, float]:
    """Round, in place, every float weight initializer of a Conv/ConvTranspose/Gemm/MatMul to 8 bits per output
    channel; returns how many were rounded and the largest relative RMS change of one."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    seen, worst = set(), 0.0
    for node in model.graph.node:
        if node.op_type not in WEIGHT_INPUTS or len(node.input) < 2 or node.input[1] not in inits:
            continue
        name = node.input[1]
        w = numpy_helper.to_array(inits[name])
        if name in seen or w.dtype != np.float32 or w.ndim < 2:
            continue
        axis = WEIGHT_INPUTS[node.op_type]
        if axis is None:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axis = 0 if trans_b else 1
        q = per_channel_int8(w, axis % w.ndim)
        worst = max(worst, float(np.sqrt(np.mean((q - w) ** 2)) / (np.sqrt(np.mean(w ** 2)) + 1e-30)))
        inits[name].CopyFrom(numpy_helper.from_array(q, name))
        seen.add(name)
    return len(seen), worst


def per_channel_int8(w: np.ndarray, axis: int) -> np.ndarray:
    """``w`` rounded to a symmetric 8-bit grid (levels -127..127) with one scale per index of ``axis``."""
    others = tuple(d for d in range(w.ndim) if d != axis)
    scale = np.max(np.abs(w), axis=others, keepdims=True) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


def half_step_noise(shape: tuple[int, ...], span: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float]:
    """Uniform float32 noise of ±half a step of an 8-bit grid over the range of ``span``, and that step."""
    lo, hi = float(np.min(span)), float(np.max(span))
    step = (hi - lo) / 255.0 if hi > lo else 0.0
    return np.random.default_rng(seed).uniform(-step / 2, step / 2, size=shape).astype(np.float32), step


def floor_sentence(noise: dict | None, weights: dict | None = None) -> str:
    """The floors as clauses of the search's verdict, each only when it explains the failure (else "")."""
    out = ""
    if weights and not weights.get("within_budget", True):
        out += (f"; the fp32 model with only its weights rounded to the nearest int8 value (per channel, "
                f"activations float) is already outside the budget ({weights['reason']}): no candidate that rounds "
                f"every weight to nearest can meet it; GPTQ rounding (ptq_gptq, ONNX), layers kept in float, "
                f"quantization-aware training, or fp32/fp16 are what is left")
    if noise and not noise.get("within_budget", True):
        out += (f"; the fp32 model itself is outside the budget under input noise of half an int8 step "
                f"(±{noise['input_step'] / 2:.3g}: {noise['reason']}): its decisions are finer than int8 carries, "
                f"so fp32 or fp16 is the artifact for it")
    return out


def _judged(out: np.ndarray, y: np.ndarray | None, reference: np.ndarray, gate) -> dict:
    rep = parity(reference, out, y)
    ok, reason = gate.check(rep.accuracy, rep.top1_agreement)
    return {"accuracy": rep.accuracy, "top1_agreement": rep.top1_agreement, "within_budget": ok, "reason": reason}
