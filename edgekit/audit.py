"""Where the time goes, per artifact: each operator's measured time and the kernels it ran in.

Whole-model latency says *that* an int8 model is slow; this says *which operators* make it so. Per artifact:

- onnxruntime: every kernel of the graph onnxruntime optimised, timed by its own profiler
  (edgekit.compress.profile), charged to the float operator it stands for, and classed as an integer kernel
  (QLinearConv, QGemm, ...), a float kernel, or a Quantize/Dequantize conversion;
- LiteRT: every operator of the model, with its operand type (int8 or float) and whether the XNNPACK delegate
  took it (the operators a ``DELEGATE`` node replaced, found by walking back from its outputs to its inputs).
  LiteRT's Python interpreter has no per-operator profiler, so LiteRT rows carry counts and kernels but no
  time; the report says so instead of dividing the whole-model latency by a guess.

Both also count the Transposes the artifact has beyond the fp32 ONNX model (NCHW/NHWC layout conversion).
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from edgekit.errors import first_line

TOP = 12  # rows per artifact in the report; the rest are summed into one "other" row


def audit(path: str | Path, fmt: str, sample: np.ndarray, *, reference_ops: collections.Counter | None = None,
          runs: int = 20) -> dict:
    """The audit of one artifact; ``{"error": reason}`` when it cannot be measured (never raises)."""
    try:
        out = onnx_audit(path, sample, runs=runs) if fmt == "onnx" else tflite_audit(path)
    except Exception as exc:  # a diagnosis that cannot be made is said in the report, not raised
        return {"error": f"{type(exc).__name__}: {first_line(exc)[:160]}"}
    if reference_ops is not None:
        out["transposes_added"] = out["transposes"] - reference_ops["Transpose"]
    return out


def _kind(kernel: str) -> str:
    from edgekit.compress.diagnose import INTEGER_KERNELS
    from edgekit.compress.profile import CONVERSIONS

    if kernel in CONVERSIONS:
        return "conversion"
    if kernel in INTEGER_KERNELS or kernel.startswith("QLinear") or kernel.startswith("Q") and kernel[1:2].isupper():
        return "integer"
    return "float"


def onnx_audit(path: str | Path, sample: np.ndarray, *, runs: int = 20) -> dict:
    """Per-kernel measured time of an ONNX artifact on onnxruntime (CPU, one thread, one sample)."""
    import onnx

    from edgekit.compress.profile import base_type, onnx_op_times

    times = onnx_op_times(path, sample, runs=runs, threads=1)
    counts = collections.Counter(kernel for _, kernel, _ in times.nodes)
    rows = [{"kernel": k, "op": base_type(k), "kind": _kind(k), "count": counts[k], "ms": ms}
            for k, ms in times.by_kernel.items()]
    ops = collections.Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    return {"runtime": "onnxruntime", "timed": True, "threads": 1, "runs": runs, "total_ms": times.total_ms,
            "kernel_ms": sum(r["ms"] for r in rows), "rows": _top(rows), "transposes": ops["Transpose"],
            "kinds": _by_kind(rows)}


def tflite_audit(path: str | Path) -> dict:
    """Operators of a TFLite artifact: operand type, and whether XNNPACK took each one."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    ops = it._get_ops_details()  # noqa: SLF001 — the only API that lists operators with their operand types
    delegated = delegated_ops(ops)
    rows: dict[tuple, dict] = {}
    for o in ops:
        if o["op_name"] == "DELEGATE":
            continue
        types = [np.dtype(t) for t in o.get("operand_types", [])] + [np.dtype(t) for t in o.get("result_types", [])]
        if o["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            kind = "conversion"
        elif any(t in (np.float32, np.float16) for t in types):
            kind = "float"
        else:
            kind = "integer"
        key = (o["op_name"], kind)
        r = rows.setdefault(key, {"kernel": o["op_name"], "op": o["op_name"], "kind": kind, "count": 0,
                                  "delegated": 0, "ms": None})
        r["count"] += 1
        r["delegated"] += o["index"] in delegated
    table = sorted(rows.values(), key=lambda r: -r["count"])
    n = sum(r["count"] for r in table)
    return {"runtime": "litert", "timed": False, "rows": table, "operators": n, "delegated": len(delegated),
            "delegate": "XNNPACK", "transposes": sum(r["count"] for r in table if r["op"] == "TRANSPOSE"),
            "kinds": _by_kind(table),
            "why_untimed": "LiteRT's Python interpreter has no per-operator profiler"}


def delegated_ops(ops: list[dict]) -> set[int]:
    """Indices of the operators a DELEGATE node replaced: those between its outputs and its inputs."""
    producer = {}
    for o in ops:
        if o["op_name"] != "DELEGATE":
            for t in o["outputs"]:
                producer[int(t)] = o
    taken: set[int] = set()
    for d in (o for o in ops if o["op_name"] == "DELEGATE"):
        boundary = {int(t) for t in d["inputs"]}
        todo = [int(t) for t in d["outputs"]]
        seen: set[int] = set()
        while todo:
            t = todo.pop()
            if t in seen or t in boundary or t not in producer:
                continue
            seen.add(t)
            o = producer[t]
            taken.add(o["index"])
            todo += [int(i) for i in o["inputs"] if int(i) >= 0]
    return taken


def _by_kind(rows: list[dict]) -> dict:
    out: dict = {}
    for r in rows:
        k = out.setdefault(r["kind"], {"count": 0, "ms": 0.0 if r["ms"] is not None else None})
        k["count"] += r["count"]
        if r["ms"] is not None:
            k["ms"] += r["ms"]
    return out


def _top(rows: list[dict]) -> list[dict]:
    rows = sorted(rows, key=lambda r: -r["ms"])
    if len(rows) <= TOP:
        return rows
    rest = rows[TOP - 1:]
    other = {"kernel": f"{len(rest)} other kernels", "op": "other", "kind": "mixed",
             "count": sum(r["count"] for r in rest), "ms": sum(r["ms"] for r in rest)}
    return [*rows[: TOP - 1], other]


def audit_all(entries: list[dict], sample: np.ndarray, reference_ops: collections.Counter | None = None,
              log=None) -> None:
    """Add ``audit`` to each results entry (the artifacts were verified and timed already).

    ``reference_ops``: the fp32 ONNX model's operator counts (edgekit.compress.diagnose.onnx_ops), for the
    Transposes each artifact added; without them the audit has no "transposes added".
    """
    for e in entries:
        e["audit"] = audit(e["path"], e["format"], sample, reference_ops=reference_ops)
        if log and "error" in e["audit"]:
            log(f"{e['name']}: no per-operator audit ({e['audit']['error']})")
