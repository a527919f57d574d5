"""The ONNX files of a compress: the original at a usable opset, its fp32 and fp16 copies, and the int8
search's winner shipped into the output folder (or its best attempt kept under rejected/)."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgekit import rundir
from edgekit.compress import search
from edgekit.device.artifact import Artifact
from edgekit.errors import DataError, first_line
from edgekit.log import get

log = get("compress").info  # printed as "[edgekit compress] ..." (edgekit.log)


def opset_at_least(path: Path, opset: int, work: Path, stages: dict) -> Path:
    """A copy of the model at ``opset`` or newer: per-channel QDQ (DequantizeLinear's axis) needs opset 13.
    The fp32 artifact is made from this copy, so its parity with the original is verified like any other."""
    import onnx
    from onnx import version_converter

    proto = onnx.load(str(path))
    current = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current >= opset:
        return path
    out = work / "original_opset.onnx"
    if out.is_file():
        stages["opset"] = f"opset {current} -> {opset} (per-channel int8 needs 13)"
        return out
    try:
        converted = version_converter.convert_version(proto, opset)
        onnx.checker.check_model(converted)
    except Exception as exc:
        stages["opset"] = f"kept opset {current}: converting to {opset} failed ({first_line(exc)})"
        log(stages["opset"])
        return path
    with rundir.atomic_path(out) as tmp:
        onnx.save_model(converted, str(tmp))
    stages["opset"] = f"opset {current} -> {opset} (per-channel int8 needs 13)"
    log(stages["opset"])
    return out


def onnx_fp32(fp32_onnx: Path, path: Path, meta: dict) -> Artifact:
    import onnx

    from edgekit.export.onnx import save_onnx

    save_onnx(onnx.load(str(fp32_onnx)), path, {**meta, "precision": "fp32"})
    return Artifact(path, "onnx", "fp32")


def onnx_fp16(fp32_onnx: Path, path: Path, meta: dict) -> Artifact:
    """float16 weights and compute with float32 inputs and outputs (onnxruntime's own float16 converter)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edgekit.export.onnx import save_onnx

    proto = convert_float_to_float16(onnx.load(str(fp32_onnx)), keep_io_types=True, disable_shape_infer=True)
    topological_sort(proto.graph)  # the converter appends its input/output Casts at the end of the node list
    save_onnx(proto, path, {**meta, "precision": "fp16"})
    return Artifact(path, "onnx", "fp16")


def topological_sort(graph) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (ONNX requires it)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        progress = [n for n in pending if all(i in ready for i in n.input)]
        if not progress:
            raise DataError("the ONNX graph has a cycle or an input no node produces")
        for n in progress:
            ready.update(n.output)
        ids = {id(n) for n in progress}
        ordered += progress
        pending = [n for n in pending if id(n) not in ids]
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered, strict=True):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


def ship(found: list[dict], path: Path, out: Path, budget: float, fmt: str, floor: dict | None = None,
         weights: dict | None = None) -> dict:
    """Copy the winning int8 candidate to ``path``; with no winner keep the best attempt under rejected/ and
    say, with the fp32 model's floors when they explain it (:mod:`edgekit.compress.floors`: input noise
    ``floor``, int8 ``weights``), why none passed."""
    from edgekit.compress.floors import floor_sentence

    cands = [search.Candidate(**c) for c in found]
    winner = search.choose(cands)
    key = "int8_search" if fmt == "onnx" else "tflite_int8_search"
    why = search.why(winner, cands, budget) + ("" if winner else floor_sentence(floor, weights))
    stage = {key: {"shipped": winner.name if winner else None, "why": why}}
    if floor and winner is None:
        stage[key]["noise_floor"] = floor
    if weights and winner is None:
        stage[key]["weight_floor"] = weights
    log(f"int8 {fmt}: {stage[key]['why']}")
    record = {"candidates": found, "stages": stage, "winner": winner.name if winner else None}
    if winner is None:
        best = max((c for c in cands if c.path and Path(c.path).is_file()), key=search.score, default=None)
        if best is not None:
            (out / "rejected").mkdir(exist_ok=True)
            shutil.copyfile(best.path, out / "rejected" / path.name)
        return record
    with rundir.atomic_path(path) as tmp:
        shutil.copyfile(winner.path, tmp)
    return {**record, "path": str(path)}


def ship_stopped(work: Path, path: Path, out: Path, budget: float, fmt: str, stop: str) -> dict | None:
    """A search its parent stopped (time limit, native crash): the candidates it had measured (its journal in
    ``work``, :class:`edgekit.compress.search.Journal`) ship as a finished search's would, untimed against
    each other (the benchmark times what ships), with the stop named. None when it measured none."""
    found = search.read_journal(work / search.JOURNAL)
    if not any(c.get("path") for c in found):
        return None
    rec = ship(found, path, out, budget, fmt)
    note = (f"the search was {stop} after {len(found)} candidate(s); the winner is chosen among those it had "
            "measured")
    next(iter(rec["stages"].values()))["note"] = note
    log(f"int8 {fmt}: {note}")
    return rec


def reject(path: Path, out: Path) -> None:
    if path.parent == out and path.exists():
        (out / "rejected").mkdir(exist_ok=True)
        path.replace(out / "rejected" / path.name)
