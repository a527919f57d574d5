"""The "on the device" section of ``edgekit report``: deploy reports beside the host's numbers.

``edgekit deploy`` saves its report into ``<run>/deploy/<device>.json`` when the bundle's run folder
is on the machine that deploys; this module turns those files into a table per device with the
device's latency next to the host's (same runtime, same thread count) as a ratio.
"""

from __future__ import annotations

import json
from pathlib import Path


def load_reports(run_dir: str | Path) -> list[dict]:
    """The deploy reports saved in a run folder, oldest device name first; unreadable files are skipped."""
    out = []
    for path in sorted((Path(run_dir) / "deploy").glob("*.json")):
        try:
            rep = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rep, dict) and rep.get("kind") == "edgekit-deploy":
            out.append(rep)
    return out


def _host_p50(rep: dict, artifact: str, runtime: str, threads: int) -> float | None:
    lat = (rep.get("host", {}).get(artifact, {}).get("expected") or {}).get("latency") or {}
    by_threads = lat.get(runtime.split(" ")[0]) or {}
    value = by_threads.get(str(threads))
    return value.get("p50_ms") if value else None


def section(run_dir: str | Path) -> str:
    """Markdown for every deploy report in the run folder; "" when there is none."""
    reps = load_reports(run_dir)
    if not reps:
        return ""
    lines = ["## On the device", ""]
    for rep in reps:
        env = (rep.get("smoke") or {}).get("environment") or rep.get("probe") or {}
        where = ", ".join(str(v) for v in (env.get("machine"), f"Python {env['python']}" if env.get("python") else None,
                                           f"{env['cpus']} CPUs" if env.get("cpus") else None) if v)
        lines += [f"### {rep['device']} ({rep['target']}{', ' + where if where else ''})", "",
                  f"Deployed {rep['created']} over {rep['transport']} in {rep['seconds']:.0f} s; smoke test "
                  f"**{'PASSED' if rep.get('passed') else 'FAILED'}**. Agreement and max abs diff are against the "
                  f"host runtime's outputs on the bundle's golden inputs; ratios are device / host.", ""]
        rows = [["artifact", "runtime", "agreement", "max abs diff", "golden accuracy", "device p50 ms",
                 "host p50 ms", "ratio", "verdict"]]
        for r in (rep.get("smoke") or {}).get("results", []):
            if r.get("runtime") is None:
                rows.append([r["artifact"], "-", "", "", "", "", "", "", "FAIL: " + r["verdict"]])
                continue
            # a browser's row is compared with the native runtime it stands for (onnxruntime-web -> onnxruntime)
            host = _host_p50(rep, r["artifact"], r.get("native_runtime") or r["runtime"], r.get("threads", 1))
            acc = f"{r['accuracy']:.4f}" if r.get("accuracy") is not None else "n/a"
            rows.append([r["artifact"], f"{r['runtime']} {r.get('threads', 1)}T", f"{r['top1_agreement']:.4f}",
                         f"{r['max_abs_diff']:.1e}", acc, f"{r['p50_ms']:.3f}",
                         f"{host:.3f}" if host else "n/a", f"{r['p50_ms'] / host:.2f}x" if host else "",
                         "ok" if r["passed"] else "FAIL"])
        for r in rep.get("benchmark", []):
            host = _host_p50(rep, r["artifact"], "litert", 1)
            mean = r.get("mean_ms")
            rows.append([r["artifact"], r["runtime"], "not checked", "", "", f"{mean:.3f} (mean)" if mean else "n/a",
                         f"{host:.3f}" if host else "n/a", f"{mean / host:.2f}x" if mean and host else "",
                         "ok" if r["passed"] else f"FAIL: {r.get('error')}"])
        for r in rep.get("tensorrt", []):
            med = r.get("latency_ms", {}).get("median")
            rows.append([r["artifact"], f"tensorrt {r['mode']}", "not checked", "", "",
                         f"{med:.3f}" if med else "n/a", "", "", "ok" if r["passed"] else f"FAIL: {r.get('error')}"])
        lines += ["| " + " | ".join(rows[0]) + " |", "| " + " | ".join("---" for _ in rows[0]) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        lines.append("")
    return "\n".join(lines)
