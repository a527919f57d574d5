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

import json
import time
from pathlib import Path

import numpy as np

from edgekit.log import get

log = get("compress").info  # printed as "[edgekit compress] ..." (edgekit.log)


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
    from edgekit.export.onnx_rebuild import onnx_to_torch

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
                             speed_remedies=speed_remedies, journal=Path(work) / search.JOURNAL)
    search.time_candidates(found, onnx, "onnxruntime", d.x, threads=threads)
    return {"candidates": [c.as_dict() for c in found], **_floors(found, onnx, onnx, d, gate, work)}


def _floors(found, fp32: str | Path, fp32_onnx: str | Path | None, d: Data, gate: dict, work: str) -> dict:
    """The float model's floors (:mod:`edgekit.compress.floors`), measured only when no int8 candidate passed:
    they explain that failure, and cost an evaluation pass each. ``noise_floor`` on ``fp32`` (the format
    searched), ``weight_floor`` on ``fp32_onnx`` (weights are rounded in the ONNX graph)."""
    from edgekit.compress import floors, search
    from edgekit.errors import describe

    if any(c.passed for c in found):
        return {}
    out = {}
    measures = {"noise_floor": (fp32, "inputs moved by half an int8 step", lambda: floors.noise_floor(
                    fp32, d.x, d.y, d.reference, _gate(gate), d.calib[:search.DEFAULT_CALIB])),
                "weight_floor": (fp32_onnx, "weights rounded to int8, activations float", lambda: floors.weight_floor(
                    fp32_onnx, d.x, d.y, d.reference, _gate(gate), work))}
    for key, (path, what, measure) in measures.items():
        if not path or not Path(path).is_file():
            continue
        try:
            out[key] = measure()
        except Exception as exc:  # an explanation that cannot be measured is left out, never fatal
            log(f"  {key.replace('_', ' ')} not measured: {describe(exc)}")
            continue
        log(f"  {key.replace('_', ' ')} (fp32, {what}): {out[key]['reason']}")
    return out


def tflite_float(*, precision: str, ref: dict | None, onnx: str | None, data: str, out: str, metadata: dict) -> dict:
    """fp32 or fp16 TFLite: litert-torch on the PyTorch model, or the ONNX → TFLite routes for an ONNX file —
    and for a PyTorch model litert-torch cannot convert (``onnx``: its float ONNX file), with a note saying so."""
    d = Data(data)
    if ref is not None:
        from edgekit.export.tflite import export_tflite

        try:
            export_tflite(_model(ref, None), d.calib[:1], out, precision=precision, metadata=metadata,
                          calib=d.calib[:256])
            return {"path": out, "route": None}
        except Exception as exc:  # noqa: BLE001 - a converter's failure on one model; the ONNX routes may take it
            if not onnx:
                raise
            from edgekit.compress.tflite_search import litert_torch_failed

            why = litert_torch_failed(exc)
            log(why)
        made = fastest_route(onnx, out, precision=precision, calib=d.calib, metadata=metadata, x=d.x)
        return {**made, "notes": [why, *(made.get("notes") or [])]}
    return fastest_route(onnx, out, precision=precision, calib=d.calib, metadata=metadata, x=d.x)


def fastest_route(onnx: str, out: str, *, precision: str, calib: np.ndarray, metadata: dict, x: np.ndarray) -> dict:
    """An ONNX file to TFLite by every installed route; the one whose file runs fastest (1 thread, timed side by
    side) is kept. onnx2torch + litert-torch keeps PyTorch's NCHW and adds Transposes around the layers
    litert-torch's layout pass cannot fold (seen: 7 against 1 on MLPerf's ResNet); onnx2tf writes NHWC."""
    import collections
    import shutil

    from edgekit.device.bench import compare
    from edgekit.errors import DataError, MissingDependency
    from edgekit.export.onnx_tflite import ROUTES, onnx_to_tflite

    made, notes = {}, []
    for name, route in ROUTES.items():
        why = route.missing(precision)
        if why:
            notes.append(f"{name} skipped: {why}")
            continue
        path = Path(out).with_name(f".{Path(out).stem}.{name}.tflite")
        try:
            onnx_to_tflite(onnx, path, precision=precision, calib=calib[:256], metadata=metadata, route=name)
        except (DataError, MissingDependency) as exc:
            notes.append(f"{name} failed: {exc}")
            continue
        from ai_edge_litert.interpreter import Interpreter

        ops = collections.Counter(o["op_name"] for o in Interpreter(model_path=str(path))._get_ops_details())
        made[name] = {"path": str(path), "transposes": ops["TRANSPOSE"], "ops": sum(ops.values())}
    if not made:
        raise DataError(f"{onnx}: no route converted it to TFLite: {'; '.join(notes)}")
    if len(made) > 1:
        t = compare({k: (v["path"], "litert") for k, v in made.items()}, threads=1, rounds=4, iterations=20,
                    sample=x[:1])
        for k, v in made.items():
            v["p50_ms"] = t[k]["p50_ms"]
    fastest = min(v.get("p50_ms", 0.0) for v in made.values())
    close = [k for k, v in made.items() if v.get("p50_ms", 0.0) <= fastest * 1.03]  # within timing noise
    best = min(close, key=lambda k: made[k]["transposes"])
    shutil.move(made[best]["path"], out)
    for v in made.values():
        Path(v["path"]).unlink(missing_ok=True)
        v.pop("path")
    log(f"TFLite {precision}: routes " + ", ".join(
        f"{k} {v['transposes']} Transposes" + (f" {v['p50_ms']:.3f} ms" if "p50_ms" in v else "")
        for k, v in made.items()) + f" -> {best}")
    return {"path": out, "route": best, "routes": made, "notes": notes}


def tflite_int8(*, ref: dict | None, onnx: str | None, data: str, work: str, gate: dict, metadata: dict,
                fp32_tflite: str | None, mirror_axis: int | None, threads: int, deadline: float,
                speed_remedies: bool = True, fp32_onnx: str | None = None, order: str | None = None,
                litert_torch: bool | None = None) -> dict:
    """The TFLite int8 search (:func:`edgekit.compress.tflite_search.tflite_int8`), every candidate timed against fp32.
    ``fp32_onnx``: the same model in ONNX, for the weight floor when nothing passes (default: ``onnx``).
    ``order``: the ONNX search's :data:`edgekit.compress.search.ORDER` file, when it wrote one.
    ``litert_torch``: False when litert-torch could not convert the PyTorch model ``ref`` to fp32 TFLite (the fp32
    file then came from ``onnx``): its PT2E candidates are not tried, ai-edge-quantizer's are."""
    from edgekit.compress import search, tflite_search

    d = Data(data)
    model, note = None, None
    try:
        model = _model(ref, onnx)
    except Exception as exc:  # onnx2torch cannot rebuild it: the ai-edge-quantizer remedies still apply
        from edgekit.errors import describe

        note = f"onnx2torch could not rebuild the model in PyTorch ({describe(exc)}); ai-edge-quantizer only"
        log(note)
    fp32 = Path(fp32_tflite) if fp32_tflite and Path(fp32_tflite).is_file() else None
    if model is not None and fp32 is None and litert_torch is not False:
        made = Path(work) / "fp32.tflite"
        if tflite_search.float_tflite(model, made, d.calib[:1], metadata, log):
            fp32 = made
        else:
            litert_torch = False
    if onnx and model is not None and litert_torch is False:
        # every PT2E candidate would fail as the fp32 conversion did (the user's model, or onnx2torch's rebuild)
        model, note = None, ("litert-torch could not convert the PyTorch model: ai-edge-quantizer's candidates on "
                             "the TFLite file converted from its ONNX file only")
        log(note)
    if fp32 is None and model is None and onnx:
        from edgekit.export.onnx_tflite import onnx_to_tflite

        fp32 = Path(work) / "fp32.tflite"
        onnx_to_tflite(onnx, fp32, precision="fp32", calib=d.calib[:256], metadata=metadata)
    found = tflite_search.tflite_int8(model, Path(work), calib=d.calib, x=d.x, y=d.y, reference=d.reference,
                               gate=_gate(gate), metadata=metadata, fp32_tflite=fp32, log=log, mirror_axis=mirror_axis,
                               deadline=deadline, speed_remedies=speed_remedies, journal=Path(work) / search.JOURNAL,
                               weights_first=_order(order))
    baseline = fp32 if fp32 is not None else Path(work) / "fp32.tflite"
    if baseline.is_file():
        search.time_candidates(found, str(baseline), "litert", d.x, threads=threads)
    floors_work = str(Path(order).parent) if order else work  # where the ONNX search kept its weight floor
    return {"candidates": [c.as_dict() for c in found], "note": note,
            **_floors(found, baseline, fp32_onnx or onnx, d, gate, floors_work)}


def _order(path: str | None) -> bool | None:
    """The ONNX search's finding that the weights' rounding is most of int8's loss (None: not measured)."""
    try:
        found = json.loads(Path(path).read_text()).get("weights_first") if path else None
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, bool) else None


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
