"""`make bench`: the speed and size claims of edgekit, measured side by side in one run, as tables.

Uses the newest finished run of the default recipe (runs/fashion_mnist_resnet8/*/results.json); when
there is none, it runs the recipe first. Every table compares artifacts interleaved round by round on
this machine, so shared-machine noise hits both sides alike; quote the ratios, not the milliseconds.

Exit code 1 when an int8 artifact is slower than its fp32 twin on a runtime the run offered it for (the run
offers int8 on a runtime only where it measured it no slower than fp32).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference-models" / "mlperf-tiny"
REFERENCE_PAIRS = {"keyword spotting (DS-CNN)": ("kws_ref_model_float32.tflite", "kws_ref_model.tflite"),
                   "image classification (ResNet-8)": ("pretrainedResnet.tflite", "pretrainedResnet_quant.tflite"),
                   "person detection (MobileNetV1 0.25)": ("vww_96_float.tflite", "vww_96_int8.tflite")}


def latest_run(recipe: str) -> Path | None:
    from edgekit.rundir import latest_run as newest

    return newest(ROOT / "runs", recipe)


def table(title: str, head: list[str], rows: list[list[str]]) -> None:
    print(f"\n## {title}\n")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


def main() -> int:
    from edgekit.device.bench import compare
    from edgekit.device.runtime import runtimes_for
    from edgekit.stages import SLOWER_THAN_FP32, cpu_int8_note

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", help="run folder (default: newest run of the recipe)")
    ap.add_argument("--recipe", default="recipes/fashion_mnist_resnet8.yaml")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=50)
    args = ap.parse_args()
    name = Path(args.recipe).stem
    run = Path(args.run) if args.run else latest_run(name)
    if run is None:
        print(f"no finished run of {name}: running it first", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "edgekit", "run", args.recipe], check=False, cwd=ROOT)
        run = latest_run(name)
        if run is None:
            print("the run did not finish; nothing to benchmark", file=sys.stderr)
            return 2
    art = run / "artifacts"
    print(f"# edgekit benchmarks — run {run}")
    print(f"batch 1, {args.rounds} interleaved rounds x {args.iterations} runs per artifact; ratios are what to quote")
    results = json.loads((run / "results.json").read_text())
    offered = {Path(e["path"]).name: e.get("offered", {}) for e in results["artifacts"]}
    print(f"int8 is offered on a runtime only where the run measured it no slower than fp32; {cpu_int8_note()}")
    golden = np.load(run / "golden.npz")
    sample = golden["x"][:1]
    failures = []

    # 1. int8 against fp32, per runtime and thread count
    rows = []
    pairs = [("model_fp32.onnx", "model_int8.onnx"), ("model_fp32.tflite", "model_int8.tflite"),
             ("model_fp32.tflite", "model_fp16.tflite")]
    for fp32, other in pairs:
        if not (art / fp32).exists() or not (art / other).exists():
            continue
        for rt in runtimes_for(art / fp32):
            for threads in (1, 2):
                r = compare({"fp32": (art / fp32, rt), "other": (art / other, rt)}, threads=threads,
                            rounds=args.rounds, iterations=args.iterations, sample=sample)
                ratio = r["other"]["p50_ms"] / r["fp32"]["p50_ms"]
                verdict = ""
                if "int8" in other:
                    on = offered.get(other, {}).get(rt)
                    if not on:
                        verdict = f"not offered on {rt} by the run" + (" (slower here too)" if ratio > 1 else "")
                    elif ratio <= SLOWER_THAN_FP32:
                        verdict = "offered, ok"
                    else:
                        verdict = "offered, but SLOWER"
                        failures.append(f"{other} on {rt} at {threads} threads is {ratio:.2f}x fp32")
                rows.append([rt, threads, other, f"{r['fp32']['p50_ms']:.3f}", f"{r['other']['p50_ms']:.3f}",
                             f"{ratio:.2f}x", f"{r['other']['size_bytes'] / r['fp32']['size_bytes']:.2f}x", verdict])
    table("Reduced precision against fp32 (same model, same runtime)",
          ["runtime", "threads", "artifact", "fp32 p50 ms", "p50 ms", "latency ratio", "size ratio", "int8 check"], rows)

    # 2. pruned against dense (fp32 ONNX on onnxruntime)
    rows = []
    if (art / "dense_fp32.onnx").exists():
        m = results["models"]
        for threads in (1, 2):
            r = compare({"dense": (art / "dense_fp32.onnx", "onnxruntime"),
                         "pruned": (art / "model_fp32.onnx", "onnxruntime")}, threads=threads, rounds=args.rounds,
                        iterations=args.iterations, sample=sample)
            rows.append([threads, f"{r['dense']['p50_ms']:.3f}", f"{r['pruned']['p50_ms']:.3f}",
                         f"{r['pruned']['p50_ms'] / r['dense']['p50_ms']:.2f}x", f"{m['compressed']['macs_ratio']:.2f}x",
                         f"{m['compressed']['params_ratio']:.2f}x"])
    table("Pruned against dense (fp32 ONNX, onnxruntime)",
          ["threads", "dense p50 ms", "pruned p50 ms", "latency ratio", "MACs ratio", "params ratio"], rows)

    # 3. edgekit's int8 ONNX against a plain quantize_static with default settings
    rows = quantize_static_default(run, art, sample, args)
    table("edgekit int8 ONNX against quantize_static defaults (same fp32 model and calibration samples)",
          ["int8 variant", "settings", "test accuracy", "agreement with fp32", "p50 ms (1 thread)", "size KB"], rows)

    # 4. the MLPerf Tiny reference image model, side by side with edgekit's
    rows, measured = [], {}  # measured: the reference pair's timings, which section 5 reuses
    if REFERENCE.is_dir():
        image = "image classification (ResNet-8)"
        ref_fp32, ref_int8 = REFERENCE_PAIRS[image]
        cand = {"edgekit int8 (ResNet-8, 1x28x28, pruned)": (art / "model_int8.tflite", "litert"),
                "edgekit fp32 (ResNet-8, 1x28x28, pruned)": (art / "model_fp32.tflite", "litert"),
                "MLPerf Tiny int8 (ResNet-8, 32x32x3)": (REFERENCE / ref_int8, "litert"),
                "MLPerf Tiny fp32 (ResNet-8, 32x32x3)": (REFERENCE / ref_fp32, "litert")}
        cand = {k: v for k, v in cand.items() if Path(v[0]).exists()}
        r = compare(cand, threads=1, rounds=args.rounds, iterations=args.iterations)
        for k, v in r.items():
            rows.append([k, f"{v['size_bytes'] / 1024:.1f}", f"{v['p50_ms']:.3f}", f"{v['p90_ms']:.3f}"])
        ref = {p: r.get(f"MLPerf Tiny {p} (ResNet-8, 32x32x3)") for p in ("fp32", "int8")}
        if all(ref.values()):
            measured[image] = ref
    table("Image classification against the MLPerf Tiny reference (LiteRT, 1 thread)",
          ["model", "size KB", "p50 ms", "p90 ms"], rows)

    # 5. is int8 faster than fp32 on this host at all? MLPerf's own float/int8 pairs, made by TensorFlow, not edgekit
    rows = []
    for model, (fp32, int8) in REFERENCE_PAIRS.items():
        if model in measured:  # already timed side by side in section 4, in the same rounds
            r = measured[model]
        elif (REFERENCE / fp32).is_file() and (REFERENCE / int8).is_file():
            r = compare({"fp32": (REFERENCE / fp32, "litert"), "int8": (REFERENCE / int8, "litert")}, threads=1,
                        rounds=args.rounds, iterations=args.iterations)
        else:
            continue
        rows.append([model, f"{r['fp32']['p50_ms']:.3f}", f"{r['int8']['p50_ms']:.3f}",
                     f"{r['int8']['p50_ms'] / r['fp32']['p50_ms']:.2f}x"])
    table(f"MLPerf Tiny's own int8 against its fp32 on this host (LiteRT with XNNPACK, 1 thread; {cpu_int8_note()})",
          ["reference model", "fp32 p50 ms", "int8 p50 ms", "int8 / fp32"], rows)

    print()
    if failures:
        print("FAILED: int8 offered but slower than fp32: " + "; ".join(failures))
        return 1
    print("int8 is no slower than fp32 on every runtime it is offered for.")
    return 0


def quantize_static_default(run: Path, art: Path, sample: np.ndarray, args) -> list[list[str]]:
    import tempfile

    from onnxruntime.quantization import quantize_static

    from edgekit import data, recipe
    from edgekit.device.bench import compare
    from edgekit.device.runtime import open_session
    from edgekit.device.verify import parity
    from edgekit.export.onnx import CalibrationReader

    spec = json.loads((run / "recipe.json").read_text())
    r = recipe.from_dict(recipe.Recipe, spec, str(run / "recipe.json"), "")
    splits = data.load(r.data)
    calib = splits.calibration(r.export.calib_samples, seed=r.data.seed)
    x, y = splits.tensors("test")
    with tempfile.TemporaryDirectory() as d:
        plain = Path(d) / "plain_int8.onnx"
        quantize_static(str(art / "model_fp32.onnx"), str(plain), CalibrationReader("input", calib))  # every default
        ref = open_session(art / "model_fp32.onnx").run(x)
        timing = compare({"edgekit": (art / "model_int8.onnx", "onnxruntime"), "plain": (plain, "onnxruntime")},
                         threads=1, rounds=args.rounds, iterations=args.iterations, sample=sample)
        rows = []
        for label, path, settings in (("edgekit", art / "model_int8.onnx", "QDQ, per-channel, U8S8, 7-bit weights, pre-processed"),
                                      ("plain", plain, "quantize_static defaults (QDQ, per-tensor, S8S8)")):
            rep = parity(ref, open_session(path).run(x), y)
            rows.append([label, settings, f"{rep.accuracy:.4f}", f"{rep.top1_agreement:.4f}",
                         f"{timing[label]['p50_ms']:.3f}", f"{timing[label]['size_bytes'] / 1024:.1f}"])
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
