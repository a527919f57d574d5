"""Which artifact to use on each runtime: the fastest within the budget, never slower than fp32."""

from __future__ import annotations

from pathlib import Path


def recommend(entries: list[dict]) -> dict:
    """Per runtime, the artifact to use: the fastest within the budget (1 thread, p50), the smaller one when two
    are within 3 % of each other. Never slower than that runtime's fp32 artifact, which is always a candidate."""
    out = {}
    runtimes = sorted({rt for e in entries for rt in e.get("latency", {})})
    for rt in runtimes:
        ok = [e for e in entries if e["passed"] and rt in e.get("latency", {}) and Path(e["path"]).exists()]
        timed = [(min(v["p50_ms"] for v in e["latency"][rt].values()), e) for e in ok]
        if not timed:
            continue
        fastest = min(t for t, _ in timed)
        close = [(t, e) for t, e in timed if t <= fastest * 1.03]
        t, best = min(close, key=lambda te: (te[1]["size_bytes"], te[0]))
        fp32 = next(((tt, e) for tt, e in timed if e["precision"] == "fp32" and e["format"] == best["format"]), None)
        speed = fp32[0] / t if fp32 else None
        if best["precision"] == "fp32":
            why = "no smaller precision is faster here" + (
                "" if len(timed) > 1 else " (it is the only artifact within budget on this runtime)")
        else:
            why = f"{speed:.2f}x the speed of fp32" if speed else "fastest within budget"
        out[rt] = {"artifact": best["name"], "p50_ms": t, "speedup_vs_fp32": speed, "why": why}
    return out


def recommendation_lines(recommended: dict) -> list[str]:
    return [f"recommended on {rt}: {r['artifact']} ({r['p50_ms']:.3f} ms, {r['why']})" for rt, r in recommended.items()]
