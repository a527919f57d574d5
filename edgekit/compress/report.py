"""report.md of ``edgekit compress``: the recipe report's artifact table, plus what the search tried and why
each artifact is (or is not) smaller and faster."""

from __future__ import annotations


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:.2f} %"


def markdown(res: dict, *, plot: bool = False) -> str:
    from edgekit.report import cpu_of, skipped_section, speed_section, table

    o = res["models"]["original"]
    d = res["data"]
    metric = "accuracy" if d["evaluation"]["labelled"] else "top-1 agreement with the original"
    lines = [
        f"# {res['recipe']} — edgekit compress report",
        "",
        f"Output `{res['run_dir']}`, {res['created']}, edgekit {res['edgekit_version']}. Every number below was "
        f"measured in this run on {cpu_of(res)}, in {res['seconds']:.0f} s. Where each artifact's time goes, "
        "operator by operator: report.html.",
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
    if res["stages"].get("shapes"):
        lines += ["## Input shapes", "", f"- {res['stages']['shapes']}", ""]
    lines += prune_section(res)
    lines += ["## Artifacts", "",
              "Agreement and max abs diff are against the original model on the evaluation data; ratios against the "
              "fp32 artifact of the same format. Latency: batch 1, median, timed interleaved in this run.", "",
              table(res), ""]
    lines += recommended_section(res)
    lines += routes_section(res)
    lines += search_section(res)
    lines += inc_section(res)
    lines += diagnostics_section(res)
    lines += speed_section(res)
    lines += skipped_section(res)
    lines += spread_section(res)
    failed = [e for e in res["artifacts"] if not e["passed"]]
    if failed:
        lines += ["## Over budget (not shipped, kept under rejected/)", ""]
        lines += [f"- {e['name']}: {e['verdict']}" for e in failed] + [""]
    if plot:
        lines += ["## Accuracy against latency and size", "", "![pareto](pareto.png)", ""]
    v = res["environment"]["versions"]
    lines += ["## Versions", "", ", ".join(f"{k} {val}" for k, val in v.items() if val), ""]
    return "\n".join(lines)


def prune_section(res: dict) -> list[str]:
    """What pruning tried (each strategy in a child process, checked before use), and whether it was kept."""
    prune = res["stages"].get("prune")
    if not prune:
        return []
    lines = ["## Pruning", ""]
    if "skipped" in prune:
        lines.append(f"- not done: {prune['skipped']}")
    else:
        lines.append(f"- MACs {prune['macs_dense']:,} → {prune['macs']:,} ({prune['macs_ratio']:.2f}x), params "
                     f"{prune['params_dense']:,} → {prune['params']:,}, by strategy \"{prune.get('strategy', '')}\"")
        if prune.get("left_alone"):
            lines.append(f"- layers kept at their width (they break when pruned): {', '.join(prune['left_alone'])}")
        d = prune.get("distill") or {}
        if d:
            lines.append(f"- distilled from the original on the calibration inputs for {d['epochs']} epochs "
                         f"({d['seconds']:.0f} s): held-back agreement {d['agreement_before']:.4f} → "
                         f"{d['agreement_after']:.4f}" + (f" ({d['stopped']})" if d.get("stopped") else ""))
        lines.append(f"- on the evaluation data: {prune['verdict']} — "
                     f"{'kept' if prune['kept'] else 'not kept (over budget): the artifacts come from the original'}")
    for a in prune.get("attempts") or []:
        lines.append(f"  - {a['strategy']}: {'worked' if a['passed'] else 'did not work'} — {a['detail']} "
                     f"({a['seconds']:.1f} s)")
    return [*lines, ""]


def spread_section(res: dict) -> list[str]:
    """The fp32 artifacts that passed elementwise parity only within the model's own float spread
    (:mod:`edgekit.compress.fp32_spread`): said apart, so nobody reads them as matching to 1e-3."""
    spread = [e for e in res["artifacts"] if e["passed"] and "own fp32 spread" in e.get("verdict", "")]
    if not spread:
        return []
    return ["## fp32 parity within the model's own float spread", "",
            *[f"- {e['name']}: {e['verdict']}" for e in spread], ""]


def recommended_section(res: dict) -> list[str]:
    """Which artifact to use on each runtime: the fastest within budget, never one slower than fp32."""
    rec = res.get("recommended") or {}
    if not rec:
        return []
    lines = ["## Which one to use", ""]
    for rt, r in rec.items():
        lines.append(f"- **{rt}: {r['artifact']}** — {r['p50_ms']:.3f} ms at 1 thread; {r['why']}")
    return [*lines, ""]


def routes_section(res: dict) -> list[str]:
    """ONNX → TFLite: every route tried, with the Transposes it added and the latency measured."""
    conv = res["stages"].get("onnx_to_tflite") or {}
    lines = []
    for precision, info in conv.items():
        if not isinstance(info, dict) or not info.get("routes"):
            continue
        lines.append(f"- {precision}: " + "; ".join(
            f"{name}: {v['ops']} operators, {v['transposes']} Transposes"
            + (f", {v['p50_ms']:.3f} ms" if v.get("p50_ms") else "") for name, v in info["routes"].items())
            + f" → kept {info['route']}" + (f" ({'; '.join(info['notes'])})" if info.get("notes") else ""))
    return ["## ONNX → TFLite routes", "", *lines, ""] if lines else []


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
