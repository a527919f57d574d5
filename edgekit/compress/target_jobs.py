"""The converters of ``edgekit compress``, as child-process jobs (:mod:`edgekit.isolate`).

torch.export, onnxruntime's quantizer, litert-torch, ai-edge-quantizer, onnx2torch and Intel Neural
Compressor all run native code on a graph they may never have seen. Each target is made in its own child
process, with its share of the time limit: a crash or a hang costs that target (reported with its reason),
never the command or the other targets.

Every job reads the same ``data.npz`` the parent wrote (calibration and evaluation inputs, labels, the
original model's outputs) and takes only JSON-able arguments; it writes its files into the folder it is given
and returns what it measured.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def log(msg: str) -> None:
    import sys

    print(f"[edgekit compress] {msg}", file=sys.stderr, flush=True)


class Data:
    """The arrays a job works on: ``calib``, ``x`` and ``y`` (evaluation) and ``reference`` (the original's
    outputs on ``x``)."""

    def __init__(self, path: str):
        with np.load(path) as z:
            self.calib = z["calib"].astype(np.float32)
            self.x = z["x"].astype(np.float32)
            self.y = z["y"].astype(np.int64) if "y" in z.files else None
            self.reference = z["reference"]


def _gate(gate: dict):
    from edgekit.compress.search import Gate

    return Gate(gate["budget"], gate["baseline"])


def _model(ref: dict | None, onnx: str | None):
    """The PyTorch module a TFLite job converts: the user's (or its pruned student), or onnx2torch's rebuild."""
    if ref is not None:
        from edgekit.compress.source import ModelRef

        return ModelRef(**ref).load()
    from edgekit.export.onnx_tflite import onnx_to_torch

    return onnx_to_torch(onnx)


def export_onnx(*, ref: dict, shape: list[int], out: str, source: str) -> dict:
    """torch.export the model to a float ONNX file (dynamic batch)."""
    from edgekit.compress.source import ModelRef
    from edgekit.export.onnx import save_onnx, to_onnx_proto

    model = ModelRef(**ref).load()
    save_onnx(to_onnx_proto(model, np.zeros(shape, np.float32)), Path(out), {"source": source})
    return {"path": out}


def onnx_int8(*, onnx: str, data: str, work: str, gate: dict, metadata: dict, threads: int, deadline: float,
              speed_remedies: bool = True) -> dict:
    """The ONNX int8 search (:func:`edgekit.compress.search.onnx_int8`), every candidate timed against fp32."""
    from edgekit.compress import search

    d = Data(data)
    found = search.onnx_int8(Path(onnx), Path(work), calib=d.calib, x=d.x, y=d.y, reference=d.reference,
                             gate=_gate(gate), metadata=metadata, log=log, deadline=deadline,
                             speed_remedies=speed_remedies)
    search.time_candidates(found, onnx, "onnxruntime", d.x, threads=threads)
    return {"candidates": [c.as_dict() for c in found]}


def tflite_float(*, precision: str, ref: dict | None, onnx: str | None, data: str, out: str, metadata: dict) -> dict:
    """fp32 or fp16 TFLite: litert-torch on the PyTorch model, or the ONNX → TFLite routes for an ONNX file."""
    d = Data(data)
    if ref is not None:
        from edgekit.export.tflite import export_tflite

        export_tflite(_model(ref, None), d.calib[:1], out, precision=precision, metadata=metadata, calib=d.calib[:256])
        return {"path": out, "route": None}
    from edgekit.export.onnx_tflite import conversion_route, onnx_to_tflite

    art = onnx_to_tflite(onnx, out, precision=precision, calib=d.calib[:256], metadata=metadata)
    return {"path": out, "route": conversion_route(art), "notes": list(art.notes)}


def tflite_int8(*, ref: dict | None, onnx: str | None, data: str, work: str, gate: dict, metadata: dict,
                fp32_tflite: str | None, mirror_axis: int | None, threads: int, deadline: float,
                speed_remedies: bool = True) -> dict:
    """The TFLite int8 search (:func:`edgekit.compress.search.tflite_int8`), every candidate timed against fp32."""
    from edgekit.compress import search

    d = Data(data)
    model, note = None, None
    try:
        model = _model(ref, onnx)
    except Exception as exc:  # onnx2torch cannot rebuild it: the ai-edge-quantizer remedies still apply
        from edgekit.errors import describe

        note = f"onnx2torch could not rebuild the model in PyTorch ({describe(exc)}); ai-edge-quantizer only"
        log(note)
    fp32 = Path(fp32_tflite) if fp32_tflite and Path(fp32_tflite).is_file() else None
    if fp32 is None and model is None and onnx:
        from edgekit.export.onnx_tflite import onnx_to_tflite

        fp32 = Path(work) / "fp32.tflite"
        onnx_to_tflite(onnx, fp32, precision="fp32", calib=d.calib[:256], metadata=metadata)
    found = search.tflite_int8(model, Path(work), calib=d.calib, x=d.x, y=d.y, reference=d.reference,
                               gate=_gate(gate), metadata=metadata, fp32_tflite=fp32, log=log, mirror_axis=mirror_axis,
                               deadline=deadline, speed_remedies=speed_remedies)
    baseline = fp32 if fp32 is not None else Path(work) / "fp32.tflite"
    if baseline.is_file():
        search.time_candidates(found, str(baseline), "litert", d.x, threads=threads)
    return {"candidates": [c.as_dict() for c in found], "note": note}


def inc(*, ref: dict, data: str, budget: float, deadline: float) -> dict:
    """Intel Neural Compressor's autotune on the PyTorch model, for the side-by-side in the report."""
    import torch

    from edgekit.compress.inc import inc_autotune

    d = Data(data)
    model = _model(ref, None)
    target = d.y if d.y is not None else d.reference.argmax(1)

    def eval_fn(m) -> float:
        with torch.no_grad():
            out = np.concatenate([m(torch.from_numpy(d.x[i:i + 256])).numpy() for i in range(0, len(d.x), 256)])
        return float((out.argmax(1) == target).mean())

    t0 = time.monotonic()
    trials = max(1, int((deadline - t0) // 30)) if deadline else None
    res = inc_autotune(model, d.calib[:1], d.calib[:256], eval_fn, budget=budget, max_trials=trials)
    ratio = res.latency_ratio
    return {"version": res.inc_version, "accuracy": res.accuracy, "baseline_accuracy": res.baseline, "met": res.met,
            "metric": "accuracy" if d.y is not None else "top-1 agreement with the original",
            "trials": [f"{t.summary}: {t.accuracy:.4f}" for t in res.trials], "best_config": res.best_config,
            "int8_weights": res.int8_weights, "latency": res.latency, "float_p50_ms": res.float_p50_ms,
            "int8_p50_ms": res.int8_p50_ms, "latency_ratio": None if ratio != ratio else ratio,
            "seconds": res.wall_s}
