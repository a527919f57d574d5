"""Keyword spotting: the mic demo's real-time factor per artifact and runtime, and the MLPerf Tiny KWS reference model
on the same held-out clips.

    python bench/kws_rtf.py [BUNDLE|RUN] [--wav FILE] [--threads 1]

Without an argument it takes the newest run of recipes/kws_dscnn.yaml (runs/kws_dscnn/*), bundled for this host.

Real-time factor = processing time (MFCC + inference + decisions, per 200 ms hop) / audio time, measured on the
streaming path of ``edgekit demo mic --wav`` (target: below 0.05 at 1 thread). Without --wav, a 12-word recording
by a held-out voice of the synthesized corpus is made first. The reference model (MLPerf Tiny DS-CNN, int8,
49x10 MFCC from the same tf.signal front end that edgekit.device.features reproduces) is run on the held-out test split
of the ``keywords`` corpus, next to the bundle's artifacts, so the numbers compare like with like.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REFERENCE = ROOT.parent / "shared" / "reference-models" / "mlperf-tiny" / "kws_ref_model.tflite"
# The reference model's output order (MLPerf Tiny KWS, word_labels in its get_dataset.py).
REFERENCE_LABELS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "_silence_", "_unknown_")


def reference_accuracy(x_raw: np.ndarray, y: np.ndarray, labels: list[str]) -> tuple[float, float] | None:
    """Accuracy and batch-1 p50 ms of the MLPerf reference model on raw (unstandardized) MFCCs."""
    import time

    if not REFERENCE.is_file():
        return None
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(REFERENCE), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zero = inp["quantization"]
    to_ours = np.asarray([labels.index(lab) for lab in REFERENCE_LABELS])
    preds, times = [], []
    for clip in x_raw:
        q = np.clip(np.round(clip / scale + zero), -128, 127).astype(np.int8).reshape(inp["shape"])
        t0 = time.perf_counter()
        it.set_tensor(inp["index"], q)
        it.invoke()
        times.append(time.perf_counter() - t0)
        preds.append(to_ours[int(np.argmax(it.get_tensor(out["index"])[0]))])
    return float(np.mean(np.asarray(preds) == y)), float(np.median(times) * 1e3)


def host_bundle(arg: str | None):
    """The bundle to measure: a bundle folder, a run folder bundled for this host (over-budget artifacts too), or
    the newest runs/kws_dscnn run; None when there is none."""
    from edgekit.device.bundle import load_bundle
    from edgekit.pack import bundle

    src = Path(arg) if arg else None
    if src is None:
        runs = sorted((ROOT / "runs" / "kws_dscnn").glob("*/results.json"))
        if not runs:
            return None
        src = runs[-1].parent
    if (src / "results.json").is_file():
        return bundle(src, "x86_64_linux", Path(tempfile.mkdtemp()) / "bundle", include_failed=True)
    return load_bundle(src)


def main() -> int:
    from edgekit.data import keywords
    from edgekit.device.audio import write_wav
    from edgekit.device.demos.mic import spot_wav
    from edgekit.device.features import apply, mfcc, mfcc_spec
    from edgekit.device.runtime import RUNTIMES, open_session

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", help="a bundle or run folder (default: the newest runs/kws_dscnn run)")
    ap.add_argument("--wav")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    b = host_bundle(args.bundle)
    if b is None:
        print("kws: no run of recipes/kws_dscnn.yaml yet (edgekit run recipes/kws_dscnn.yaml): nothing to measure")
        return 0
    wav = args.wav
    if wav is None:
        audio, _ = keywords.utterance_stream(keywords.STREAM_WORDS, keywords.voices(keywords.Config())["test"][0], seed=1)
        wav = str(write_wav(Path(tempfile.mkdtemp()) / "commands.wav", audio))
    print(f"| artifact | runtime | real-time factor ({args.threads} thread) | detections |")
    print("| --- | --- | --- | --- |")
    for a in b.artifacts:
        for rt in a.runtimes:
            if rt not in RUNTIMES or not RUNTIMES.get(rt).installed():
                continue
            dets, st = spot_wav(b, wav, artifact=a.name, runtime=rt, threads=args.threads)
            print(f"| {a.name} | {rt} | {st.rtf:.4f} | {' '.join(d.keyword for d in dets)} |")
    _, _, test = keywords.load_corpus(ROOT / ".cache" / "keywords").values()
    x, y, _ = test
    print(f"\nheld-out test clips of the keywords corpus: {len(y)}")
    print("| model | accuracy | p50 ms (1 thread) |")
    print("| --- | --- | --- |")
    for a in b.artifacts:
        rt = next((r for r in a.runtimes if r in RUNTIMES and RUNTIMES.get(r).installed()), None)
        if rt is None:
            continue
        with open_session(a.path, runtime=rt, threads=1) as s:
            acc = float(np.mean(s.run(apply(b.preprocess, x)).argmax(1) == y))
        lat = ((a.expected.get("latency") or {}).get(rt) or {}).get("1", {}).get("p50_ms")
        print(f"| {a.name} ({rt}) | {acc:.4f} | {lat if lat is None else f'{lat:.3f}'} |")
    # MLPerf's own front end (20-4000 Hz, 40 bands, 10 coefficients), whatever the bundle's spec says
    ref = reference_accuracy(mfcc(x, mfcc_spec()), y, b.labels)
    if ref is None:
        print(f"| MLPerf Tiny reference | not measured: {REFERENCE} missing | |")
    else:
        print(f"| MLPerf Tiny reference kws_ref_model.tflite (int8, trained on real speech) | {ref[0]:.4f} | "
              f"{ref[1]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
