"""Where an ONNX model's time goes: per-operator times measured with onnxruntime's own profiler.

``SessionOptions.enable_profiling`` writes a Chrome trace with one event per node run; the kernels are those of
the graph onnxruntime optimised (QDQ groups fused into QLinearConv, Conv+Relu into FusedConv). To compare an
int8 model with its float original, each kernel is charged to the float operator type it stands for
(:func:`base_type`), and the Quantize/Dequantize conversions to the operator they feed.
"""

from __future__ import annotations

import collections
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CONVERSIONS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")


def base_type(op: str) -> str:
    """The float operator an onnxruntime kernel implements: QLinearConv → Conv, FusedConv → Conv, QGemm → Gemm."""
    for prefix in ("QLinear", "Fused", "NhwcFused", "Nhwc"):
        if op.startswith(prefix) and len(op) > len(prefix):
            op = op[len(prefix):]
    return {"QGemm": "Gemm", "MatMulIntegerToFloat": "MatMul", "MatMulInteger": "MatMul", "ConvInteger": "Conv",
            "DynamicQuantizeMatMul": "MatMul", "QAttention": "Attention", "Gelu": "Erf", "BiasGelu": "Erf",
            "FastGelu": "Erf", "QuickGelu": "Sigmoid", "HardSigmoid": "HardSigmoid"}.get(op, op)


@dataclass
class OpTimes:
    """Milliseconds per inference by kernel, as measured; ``nodes`` keeps (name, kernel, ms) for the report."""

    by_kernel: dict[str, float]
    nodes: list[tuple[str, str, float]] = field(default_factory=list)
    total_ms: float = 0.0
    runs: int = 0

    def by_base_type(self) -> dict[str, float]:
        """Time per float operator type; conversions are charged to the kernel each one feeds."""
        out: dict[str, float] = collections.defaultdict(float)
        for kernel, ms in self.by_kernel.items():
            if kernel not in CONVERSIONS:
                out[base_type(kernel)] += ms
        conversion_ms = sum(ms for k, ms in self.by_kernel.items() if k in CONVERSIONS)
        if conversion_ms and out:
            fed = self._fed_by_conversions()
            total = sum(fed.values()) or 1.0
            for op, n in fed.items():
                out[op] += conversion_ms * n / total
        return dict(out)

    def _fed_by_conversions(self) -> dict[str, int]:
        counts: dict[str, int] = collections.Counter()
        names = [n for n in self.nodes]
        for i, (_, kernel, _) in enumerate(names):
            if kernel in CONVERSIONS:
                nxt = next((k for _, k, _ in names[i + 1:] if k not in CONVERSIONS), None)
                if nxt:
                    counts[base_type(nxt)] += 1
        return counts


def onnx_op_times(path: str | Path, sample: np.ndarray, *, runs: int = 20, threads: int = 1) -> OpTimes:
    """Run ``path`` ``runs`` times on ``sample`` with onnxruntime's profiler on; the mean time of each kernel."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "profile")
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: np.ascontiguousarray(sample[:1], np.float32)}
        for _ in range(3):
            sess.run(None, feed)
        for _ in range(runs):
            sess.run(None, feed)
        trace = Path(sess.end_profiling())
        events = json.loads(trace.read_text())
    return parse_trace(events, runs=runs, warmup=3)


def parse_trace(events: list[dict], *, runs: int, warmup: int = 0) -> OpTimes:
    """Kernel times per inference from onnxruntime's profile events (the last ``runs`` model runs)."""
    node_events = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    runs_seen = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    per_run = max(1, len(node_events) // max(1, len(runs_seen)))
    tail = node_events[-per_run * runs:] if runs_seen else node_events
    by_kernel: dict[str, float] = collections.defaultdict(float)
    by_node: dict[str, list] = {}
    for e in tail:
        op = e.get("args", {}).get("op_name", "?")
        ms = e.get("dur", 0) / 1000.0 / runs
        by_kernel[op] += ms
        name = e["name"][: -len("_kernel_time")]
        if name in by_node:
            by_node[name][2] += ms
        else:
            by_node[name] = [name, op, ms]
    total = sum(e.get("dur", 0) for e in runs_seen[-runs:]) / 1000.0 / max(1, min(runs, len(runs_seen)))
    return OpTimes(dict(by_kernel), [tuple(v) for v in by_node.values()], total, runs)
