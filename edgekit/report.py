"""results.json, report.md and pareto.png of a run: what was measured, side by side with fp32."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgekit import __version__, info, rundir

RESULTS_SCHEMA = 1


def results(recipe, run_dir: Path, entries: list[dict], models: dict, stages: dict, cpu_note: str = "") -> dict:
    """The results.json document: one entry per artifact plus the PyTorch models and the environment."""
    return {
        "schema": RESULTS_SCHEMA, "edgekit_version": __version__, "recipe": recipe.name,
        "recipe_digest": recipe.digest(), "recipe_source": recipe.source, "run_dir": str(run_dir),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget": recipe.verify.budget,
        "passed": all(e["passed"] for e in entries) and models["compressed"].get("passed", True),
        "models": models, "stages": stages, "artifacts": entries, "cpu_int8_note": cpu_note,
        "environment": {"machine": info.machine(), "versions": info.versions()},
    }


def write(run_dir: Path, res: dict, render=None) -> None:
    """Write results.json, report.md, report.html and pareto.png atomically into ``run_dir``.

    ``render(res, plot=bool)`` writes the markdown (default :func:`markdown`, a recipe run's; ``edgekit
    compress`` passes its own, which builds on the sections here). report.html is that markdown as one
    self-contained page plus the per-operator audit (edgekit.report_html).
    """
    from edgekit import report_html

    rundir.write_json(run_dir / "results.json", res)
    plotted = plot(res, run_dir / "pareto.png")
    md = (render or markdown)(res, plot=plotted)
    rundir.write_text(run_dir / "report.md", md)
    rundir.write_text(run_dir / "report.html", report_html.render(md, res, run_dir))


def load(run_dir: str | Path) -> dict:
    from edgekit.errors import DataError

    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise DataError(f"{path}: no results.json (is {run_dir} a finished run folder?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def cpu_of(res: dict) -> str:
    """The machine a report's numbers were measured on: CPU model and int8 instructions, cores, OS."""
    m = res["environment"]["machine"]
    return f"{m.get('cpu') or m['platform']}, {m['cpus']} CPUs, {m['platform']}"


def _runtime_columns(res: dict) -> list[tuple[str, str]]:
    cols = []
    for e in res["artifacts"]:
        for rt, by_threads in e["latency"].items():
            for t in by_threads:
                if (rt, t) not in cols:
                    cols.append((rt, t))
    return cols


def _runs(runtime: str, fmt: str) -> bool:
    from edgekit.device.runtime import RUNTIMES

    return runtime in RUNTIMES and RUNTIMES.get(runtime).format == fmt


def _fp32_of(res: dict, fmt: str) -> dict | None:
    return next((e for e in res["artifacts"] if e["format"] == fmt and e["precision"] == "fp32"
                 and e["role"] == "compressed"), None)


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return ""
    return f" ({value / base:.2f}x)"


def table(res: dict) -> str:
    """The one table: artifact, size, accuracy, agreement, latency per runtime, each with its ratio to fp32."""
    cols = _runtime_columns(res)
    head = ["artifact", "size KB", "accuracy", "agreement", "max abs diff"] + [f"{rt} {t}T p50 ms" for rt, t in cols]
    head.append("budget")
    rows = [head, ["---"] * len(head)]
    for e in res["artifacts"]:
        base = _fp32_of(res, e["format"])
        row = [e["name"], f"{e['size_bytes'] / 1024:.1f}{_ratio(e['size_bytes'], base and base['size_bytes'])}",
               f"{e['accuracy']:.4f}" if e["accuracy"] is not None else "n/a",
               f"{e['top1_agreement']:.4f}", f"{e['max_abs_diff']:.1e}"]
        for rt, t in cols:
            lat = e["latency"].get(rt, {}).get(t)
            b = base and base["latency"].get(rt, {}).get(t)
            if lat:
                row.append(f"{lat['p50_ms']:.3f}{_ratio(lat['p50_ms'], b and b['p50_ms'])}")
            else:  # "—": the runtime does not run this format; "missing": it does, but was not measured
                row.append("missing" if _runs(rt, e["format"]) else "—")
        row.append("ok" if e["passed"] else "FAIL")
        rows.append(row)
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def summary(res: dict) -> str:
    """What `edgekit run` prints at the end: the table, then where the bundle was proven."""
    lines = [table(res)]
    targets = res.get("targets") or []
    ok = [t["device"] for t in targets if t["verified"]]
    if ok:
        hows = sorted({t["how"].split(" (")[0] + (" (emulated)" if "emulated" in t["how"] else "")
                       for t in targets if t["verified"]})
        lines.append(f"\nverified on {', '.join(hows)} for {', '.join(ok)}")
    for t in targets:
        if not t["verified"]:
            lines.append(f"{t['device']}: {'FAILED' if t['verified'] is False else 'not verified'}: {t['verdict']}")
    return "\n".join(lines)


def markdown(res: dict, *, plot: bool = False) -> str:
    """report.md of a recipe run (``edgekit compress`` results render with edgekit.compress.report)."""
    m = res["models"]
    d, c = m["dense"], m["compressed"]
    lines = [
        f"# {res['recipe']} — edgekit report",
        "",
        f"Run `{res['run_dir']}`, {res['created']}, edgekit {res['edgekit_version']}, recipe digest "
        f"`{res['recipe_digest']}`. Every number below was measured in this run on "
        f"{cpu_of(res)}. Where each artifact's time goes, operator by operator: report.html.",
        "",
        f"**Result: {'PASSED' if res['passed'] else 'FAILED'}** — accuracy budget: at most "
        f"{res['budget'] * 100:.2f} points below the dense fp32 model, on the held-out test split.",
        "",
        "## PyTorch models",
        "",
        "| model | params | MACs | test accuracy |",
        "| --- | --- | --- | --- |",
        f"| dense fp32 (teacher) | {d['params']:,} | {d['macs']:,} | {d['accuracy']:.4f} |",
        f"| compressed (pruned + distilled) | {c['params']:,} ({c['params_ratio']:.2f}x) | {c['macs']:,} "
        f"({c['macs_ratio']:.2f}x) | {c['accuracy']:.4f} ({-c['accuracy_drop'] * 100:+.2f} pts) |",
        "",
        "## Artifacts",
        "",
        "Ratios in parentheses are against the compressed fp32 artifact of the same format; agreement and max abs "
        "diff are against the PyTorch model the artifact was exported from. Latency: batch 1, median after warm-up.",
        "",
        table(res),
        "",
    ]
    lines += speed_section(res)
    lines += skipped_section(res)
    lines += targets_section(res)
    failed = [e for e in res["artifacts"] if not e["passed"]]
    if failed or not c.get("passed", True):
        lines += ["## Over budget", ""]
        lines += [f"- {e['name']}: {e['verdict']}" for e in failed]
        if not c.get("passed", True):
            lines.append(f"- PyTorch compressed model: {c['verdict']}")
        lines.append("")
    if plot:
        lines += ["## Accuracy against latency and size", "", "![pareto](pareto.png)", ""]
    v = res["environment"]["versions"]
    lines += ["## Versions", "", ", ".join(f"{k} {val}" for k, val in v.items() if val), ""]
    return "\n".join(lines)


def skipped_section(res: dict) -> list[str]:
    """Export targets the run could not produce, each with the converter's reason (never hidden)."""
    if not res.get("skipped"):
        return []
    lines = ["## Not exported", ""]
    lines += [f"- {s['target']} ({s['name']}): {s['skipped']}" for s in res["skipped"]]
    return [*lines, ""]


def speed_section(res: dict) -> list[str]:
    """Where int8 is offered: on each runtime, int8 latency against fp32 as measured side by side in this run."""
    rows = [e for e in res["artifacts"] if e.get("offered") is not None]
    if not rows:
        return []
    lines = ["## int8 speed on this host", "",
             "int8 is offered on a runtime only where it is no slower than the fp32 artifact of the same format "
             "(p50 ratio ≤ 1.05 at every thread count, timed interleaved in this run).", ""]
    for e in rows:
        for rt, ok in e["offered"].items():
            ratios = ", ".join(f"{r:.2f}x at {t}T" for t, r in e["speed_vs_fp32"][rt].items())
            verdict = "offered" if ok else f"not offered: slower than fp32 here ({res.get('cpu_int8_note', '')})"
            lines.append(f"- {e['name']} on {rt}: {ratios} the fp32 latency — {verdict}")
    return [*lines, ""]


def targets_section(res: dict) -> list[str]:
    """Where the run's bundle was proven: each target device, how, and the verdict."""
    if not res.get("targets"):
        return []
    lines = ["## Target devices", ""]
    for t in res["targets"]:
        state = {True: "verified", False: "FAILED", None: "not verified"}[t["verified"]]
        lines.append(f"- {t['device']}: {state} on {t['how']} — {t['verdict']}")
    lines.append("")
    lines.append("Emulation proves that the runtimes install for the device's platform and compute the same numbers "
                 "on its instruction set; latency under emulation is not the device's.")
    return [*lines, ""]


def plot(res: dict, path: Path) -> bool:
    """Accuracy against latency (1 thread) and against size: a colour per artifact, a marker per runtime."""
    labelled = any(a["accuracy"] is not None for a in res["artifacts"])
    metric = "accuracy" if labelled else "top1_agreement"  # without labels, agreement with the original
    if not any(a[metric] is not None for a in res["artifacts"]):
        return False  # nothing was shipped or measured: no plot rather than an empty one
    try:  # a Figure of its own with the Agg canvas: the caller's pyplot backend and state are left alone
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    markers = {"onnxruntime": "o", "litert": "s", "tflite-runtime": "^"}
    colors = colormaps["tab10"]
    fig = Figure(figsize=(12, 4.8))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    for i, e in enumerate(a for a in res["artifacts"] if a[metric] is not None):
        acc, color = e[metric] * 100, colors(i % 10)
        for rt, by_threads in e["latency"].items():
            t = "1" if "1" in by_threads else next(iter(by_threads))
            ax1.scatter(by_threads[t]["p50_ms"], acc, color=color, marker=markers.get(rt, "D"), s=60)
        ax2.scatter(e["size_bytes"] / 1024, acc, color=color, marker="o", s=60, label=e["name"])
    base = res["models"].get("dense", res["models"].get("original", {})).get("accuracy") if labelled else 1.0
    for ax in (ax1, ax2):
        if base is not None:
            ax.axhline(base * 100, color="gray", ls="--", lw=0.8)
            ax.axhline((base - res["budget"]) * 100, color="red", ls=":", lw=0.8)
        ax.set_ylabel("test accuracy (%)" if labelled else "top-1 agreement with the original (%)")
        ax.grid(alpha=0.3)
    for rt, m in markers.items():
        if any(rt in e["latency"] for e in res["artifacts"]):
            ax1.scatter([], [], color="black", marker=m, label=rt)
    ax1.plot([], [], color="gray", ls="--", label="dense fp32 (PyTorch)" if "dense" in res["models"] else "original")
    ax1.plot([], [], color="red", ls=":", label="accuracy budget")
    ax1.set_xlabel("latency p50, batch 1, 1 thread (ms)")
    ax2.set_xlabel("file size (KB)")
    ax1.legend(fontsize=8, loc="lower right")
    ax2.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{res['recipe']}: accuracy against latency and size (measured {res['created']})")
    fig.tight_layout()
    with rundir.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return True
