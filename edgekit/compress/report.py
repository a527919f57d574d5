"""report.md of ``edgekit compress``: the recipe report's artifact table, plus what the search tried and why
each artifact is (or is not) smaller and faster."""

from __future__ import annotations


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:.2f} %"


def markdown(res: dict, *, plot: bool = False) -> str:
    from edgekit.report import skipped_section, speed_section, table

    o = res["models"]["original"]
    d = res["data"]
    metric = "accuracy" if d["evaluation"]["labelled"] else "top-1 agreement with the original"
    lines = [
        f"# {res['recipe']} — edgekit compress report",
        "",
        f"Output `{res['run_dir']}`, {res['created']}, edgekit {res['edgekit_version']}. Every number below was "
        f"measured in this run on {res['environment']['machine']['platform']} "
        f"({res['environment']['machine']['cpus']} CPUs), in {res['seconds']:.0f} s.",
        "",
        f"**Result: {'PASSED' if res['passed'] else 'FAILED'}** — budget: {res['budget'] * 100:.2f} points of "
        f"{metric} on the evaluation data.",
        "",
        "## Model and data",
        "",
        f"- model: `{o['spec']}` ({o['kind']}), input {o['input_shape']}, accuracy "
        f"{_pct(o['accuracy']) if o['accuracy'] is not None else 'n/a (no labels)'}",
        f"- calibration: `{d['calibration']['source']}`, {d['calibration']['samples']} samples. {d['calibration']['note']}",
        f"- evaluation: `{d['evaluation']['source']}`, {d['evaluation']['samples']} samples"
        f"{', labelled' if d['evaluation']['labelled'] else ', no labels'}. {d['evaluation']['note']}",
        "",
    ]
    if res.get("calibration_warnings"):
        lines += ["## Calibration warnings", ""] + [f"- {w}" for w in res["calibration_warnings"]] + [""]
    prune = res["stages"].get("prune")
    if prune:
        lines += ["## Pruning", ""]
        if "skipped" in prune:
            lines.append(f"- not done: {prune['skipped']}")
        else:
            lines.append(f"- MACs {prune['macs_dense']:,} → {prune['macs']:,} ({prune['macs_ratio']:.2f}x), params "
                         f"{prune['params_dense']:,} → {prune['params']:,}; after distillation: {prune['verdict']} — "
                         f"{'kept' if prune['kept'] else 'not kept (over budget)'}")
        lines.append("")
    lines += ["## Artifacts", "",
              "Agreement and max abs diff are against the original model on the evaluation data; ratios against the "
              "fp32 artifact of the same format. Latency: batch 1, median, timed interleaved in this run.", "",
              table(res), ""]
    lines += search_section(res)
    lines += inc_section(res)
    lines += diagnostics_section(res)
    lines += speed_section(res)
    lines += skipped_section(res)
    failed = [e for e in res["artifacts"] if not e["passed"]]
    if failed:
        lines += ["## Over budget (not shipped, kept under rejected/)", ""]
        lines += [f"- {e['name']}: {e['verdict']}" for e in failed] + [""]
    if plot:
        lines += ["## Accuracy against latency and size", "", "![pareto](pareto.png)", ""]
    v = res["environment"]["versions"]
    lines += ["## Versions", "", ", ".join(f"{k} {val}" for k, val in v.items() if val), ""]
    return "\n".join(lines)


def search_section(res: dict) -> list[str]:
    """Every int8 candidate tried, per format, in order of cost, with its numbers; then why the winner won."""
    cands = res.get("int8_candidates") or []
    lines: list[str] = []
    for fmt, key, runtime in (("onnx", "int8_search", "onnxruntime"), ("tflite", "tflite_int8_search", "litert")):
        rows = [c for c in cands if c.get("format", "onnx") == fmt]
        if not rows:
            continue
        lines += [f"## int8 search ({'ONNX' if fmt == 'onnx' else 'TFLite'})", "",
                  f"| candidate | remedy | accuracy | agreement | {runtime} 1T p50 ms | vs fp32 | within budget | "
                  "measured |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for c in rows:
            lat = f"{c['p50_ms']:.3f}" if c.get("p50_ms") else "—"
            ratio = f"{c['speed_vs_fp32']:.2f}x" if c.get("speed_vs_fp32") else "—"
            lines.append(f"| {c['name']} | {c['remedy']} | {_pct(c['accuracy'])} | {_pct(c['top1_agreement'])} | "
                         f"{lat} | {ratio} | {'yes' if c['passed'] else 'no'} | {c['reason']} |")
        why = res["stages"].get(key, {}).get("why")
        if why:
            lines += ["", f"**Chosen:** {why}."]
        lines.append("")
    return lines


def inc_section(res: dict) -> list[str]:
    """Intel Neural Compressor's autotune result beside edgekit's own choice."""
    inc = res.get("inc")
    if not inc:
        return []
    lines = ["## Intel Neural Compressor autotune, side by side", ""]
    if "skipped" in inc:
        return [*lines, f"- not run: {inc['skipped']}", ""]
    ours = next((e for e in res["artifacts"] if e["format"] == "onnx" and e["precision"] == "int8"), None)
    lines.append(f"- INC {inc.get('version', '')}: {inc.get('metric', 'accuracy')} {_pct(inc.get('accuracy'))} against the float model's "
                 f"{_pct(inc.get('baseline_accuracy'))}; budget met: {inc.get('met')}; {len(inc.get('trials') or [])} "
                 f"trial(s) in {inc.get('seconds', 0):.0f} s; latency in PyTorch "
                 + (f"{inc['latency_ratio']:.2f}x the float model ({inc.get('latency')})" if inc.get("latency_ratio")
                    else "not measured"))
    if ours:
        lat = ours["latency"].get("onnxruntime", {})
        t = next(iter(lat.values()), None)
        lines.append(f"- edgekit's choice ({res['stages'].get('int8_search', {}).get('shipped')}): "
                     f"{metric_of(ours)}; onnxruntime p50 " + (f"{t['p50_ms']:.3f} ms" if t else "not measured"))
    for trial in inc.get("trials") or []:
        lines.append(f"  - trial: {trial}")
    lines.append("- INC's quantized model runs in PyTorch (x86 inductor PT2E); edgekit ships ONNX/TFLite, so INC is "
                 "the comparison, not the artifact.")
    return [*lines, ""]


def metric_of(e: dict) -> str:
    if e["accuracy"] is not None:
        return f"accuracy {_pct(e['accuracy'])}"
    return f"agreement {_pct(e['top1_agreement'])}"


def diagnostics_section(res: dict) -> list[str]:
    """Why isn't it smaller or faster: per artifact, the facts and the one-line verdict."""
    rows = [e for e in res["artifacts"] if e.get("diagnostics")]
    if not rows:
        return []
    lines = ["## Why isn't it smaller or faster?", "",
             "| artifact | ops (fp32 model) | Quantize/Dequantize | Transposes added | float weights | still float "
             "after the runtime's optimization |", "| --- | --- | --- | --- | --- | --- |"]
    for e in rows:
        f = e["diagnostics"]
        if "error" in f:
            lines.append(f"| {e['name']} | not measured: {f['error']} | | | | |")
            continue
        fl = ", ".join(f"{n} {op}" for op, n in (f.get("float_compute_ops") or {}).items()) or "none"
        kernels = f.get("integer_kernels")
        if kernels:
            fl += "; integer kernels: " + ", ".join(f"{n} {op}" for op, n in kernels.items())
        if f.get("runtime_facts"):
            fl += f" ({f['runtime_facts']})"
        wb = f["weight_bytes"] or 1
        lines.append(f"| {e['name']} | {f['ops']} ({f['fp32_ops']}) | {f['quantize_dequantize']} | "
                     f"{f['transposes_added']} | {f['float_weight_bytes'] / 1024:.1f} KB of {wb / 1024:.1f} KB | {fl} |")
    lines.append("")
    lines += [f"- {e['name']}: {e['diagnostics']['verdict']}" for e in rows if e["diagnostics"].get("verdict")]
    return [*lines, ""]
