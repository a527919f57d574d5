"""`edgekit compress` on third-party models, beside their publishers' own int8, on real images.

The MLPerf Tiny reference float models (person detection, MobileNetV1 0.25 at 96x96; CIFAR-10 ResNet-8) are
turned into ONNX with tflite2onnx and compressed by edgekit with OpenCV's sample photos and video frames
(Debian opencv-doc) as calibration and evaluation data. The table puts edgekit's int8 ONNX and TFLite next
to MLPerf's own int8 TFLite (quantized by TensorFlow on the real training data), all measured here: top-1
agreement with the float original on the same images, size, and p50 latency against fp32 timed interleaved.

    python bench/compress_third_party.py [--models vww_96_float,pretrainedResnet] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REFERENCE_INT8 = {"vww_96_float": "vww_96_int8", "pretrainedResnet": "pretrainedResnet_quant"}
SCALE = {"vww_96_float": "1/255", "pretrainedResnet": "1"}  # the inputs each model was trained on


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="vww_96_float,pretrainedResnet")
    ap.add_argument("--keep", help="keep the outputs in this folder")
    args = ap.parse_args()
    from tests.third_party import MLPERF, mlperf_onnx, real_images

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="edgekit-compress-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        calib, ev = real_images(work / "images")
    except BaseException as exc:  # pytest.skip's exception when the images are not installed
        print(f"| compress third-party | not measured: {exc} |")
        return 0
    rows = [["model", "artifact", "size KB", "agreement", "runtime", "p50 ms", "vs fp32", "note"],
            ["---"] * 8]
    for name in args.models.split(","):
        model = mlperf_onnx(name, work)
        out = work / f"out_{name}"
        proc = subprocess.run([sys.executable, "-m", "edgekit", "compress", str(model), "--calib", str(calib),
                               "--eval", str(ev), "--precision", "fp32,int8", "--scale", SCALE[name],
                               "--out", str(out)], capture_output=True, text=True)
        if not (out / "results.json").is_file():
            rows.append([name, "—", "", "", "", "", "", f"failed: {proc.stderr.strip().splitlines()[-1][:120]}"])
            continue
        res = json.loads((out / "results.json").read_text())
        for e in res["artifacts"]:
            for rt, by_t in e["latency"].items():
                lat = by_t.get("1")
                ratio = (e.get("speed_vs_fp32") or {}).get(rt, {}).get("1")
                rows.append([name, e["name"], f"{e['size_bytes'] / 1024:.1f}", f"{e['top1_agreement']:.4f}", rt,
                             f"{lat['p50_ms']:.3f}" if lat else "missing", f"{ratio:.2f}x" if ratio else "",
                             "shipped" if e["passed"] else "over budget: not shipped"])
        for k in ("int8_search", "tflite_int8_search"):
            if res["stages"].get(k, {}).get("why"):
                rows.append([name, k, "", "", "", "", "", res["stages"][k]["why"][:160]])
        rows.append(reference_row(name, MLPERF, res, ev))
    print("\n".join("| " + " | ".join(r) + " |" for r in rows))
    return 0


def reference_row(name: str, mlperf: Path, res: dict, ev: Path) -> list[str]:
    """MLPerf's own int8 TFLite on the same evaluation images: agreement with its float model, latency ratio."""
    from edgekit.cli import eval_fraction
    from edgekit.compress import samples
    from edgekit.device.bench import compare
    from edgekit.device.runtime import open_session

    fp32, int8 = mlperf / f"{name}.tflite", mlperf / f"{REFERENCE_INT8[name]}.tflite"
    shape = list(open_session(fp32).input_shape)  # NHWC, as published
    x = samples.load(str(ev), input_shape=shape, pixels=samples.Pixels(scale=eval_fraction(SCALE[name]))).x
    a, b = open_session(fp32).run(x), open_session(int8).run(x)
    agree = float((a.argmax(1) == b.argmax(1)).mean())
    t = compare({"fp32": (fp32, "litert"), "int8": (int8, "litert")}, threads=1, rounds=5, sample=x[:1])
    return [name, f"MLPerf's own {int8.name}", f"{int8.stat().st_size / 1024:.1f}", f"{agree:.4f}", "litert",
            f"{t['int8']['p50_ms']:.3f}", f"{t['int8']['p50_ms'] / t['fp32']['p50_ms']:.2f}x",
            "reference (TensorFlow int8, calibrated on its training data)"]


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    raise SystemExit(main())
