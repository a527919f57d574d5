"""Keyword spotting: per-keyword accuracy against noise level, on clean renditions by training, validation and test
voices, and the pair of keywords the noise confuses most.

    python bench/kws_noise.py [BUNDLE|RUN] [--artifact NAME] [--snr 30,25,20,15] [--train-every 12]

Without an argument it takes the newest run of recipes/kws_dscnn.yaml (runs/kws_dscnn/*), bundled for this host.

Why: the streaming check (``bench/kws_stream.py``) misses keywords, and a miss there mixes three causes: the voice,
the noise, and the window's position. Here every keyword is spoken twice (speed 0.9 and 1.1) by each voice, centred
in a 1 s window, peak-normalized, and heard clean and under pink noise at each SNR relative to the word's own RMS:
the level ``keywords.utterance_stream`` puts under the streams (20 dB). A keyword that is right when clean and wrong
at 20 dB is a noise problem, not a voice the model never learned. Training voices (every ``--train-every``-th
espeak-ng one) show whether the model fits the keyword in noise at all.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SPEEDS = (0.9, 1.1)
PEAK = 0.3


def renditions(voices: list[tuple[str, str]], words: tuple[str, ...]) -> tuple[list[np.ndarray], list[str]]:
    """Every word by every voice at each of SPEEDS: trimmed float32 samples and the word spoken."""
    from edgekit.data import keywords

    xs, ys = [], []
    for engine, voice in voices:
        for w in words:
            for speed in SPEEDS:
                xs.append(keywords.trim(keywords.speak(engine, voice, w, speed=speed, pitch=1.0)))
                ys.append(w)
    return xs, ys


def windows(xs: list[np.ndarray], snr_db: float | None, seed: int = 0) -> np.ndarray:
    """(N, 16000) 1 s windows, each word centred at PEAK, with pink noise ``snr_db`` below the word's RMS."""
    from edgekit.data import keywords

    rng = np.random.default_rng(seed)
    out = np.zeros((len(xs), 16000), np.float32)
    for i, x in enumerate(xs):
        x = x[:16000] / (np.abs(x).max() + 1e-9) * PEAK
        o = (16000 - len(x)) // 2
        out[i, o: o + len(x)] = x
        if snr_db is not None:
            noise = keywords.coloured_noise(rng, 16000, "pink")
            out[i] += noise * np.sqrt(np.mean(x ** 2)) / 10 ** (snr_db / 20)
    return out


def main() -> int:
    from kws_rtf import host_bundle

    from edgekit.data import keywords
    from edgekit.device.features import apply
    from edgekit.device.runtime import open_session

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", help="a bundle or run folder (default: the newest runs/kws_dscnn run)")
    ap.add_argument("--artifact", help="artifact name (default: the bundle's first)")
    ap.add_argument("--snr", default="30,25,20,15", help="pink-noise levels, dB below the word's RMS")
    ap.add_argument("--train-every", type=int, default=12, help="every N-th training espeak-ng voice")
    args = ap.parse_args()
    b = host_bundle(args.bundle)
    if b is None:
        print("kws: no run of recipes/kws_dscnn.yaml yet (edgekit run recipes/kws_dscnn.yaml): nothing to measure")
        return 0
    art = next((a for a in b.artifacts if args.artifact in (None, a.name)), None)
    if art is None:
        print(f"kws_noise: no artifact {args.artifact!r} in the bundle: {', '.join(a.name for a in b.artifacts)}")
        return 2
    snrs = [None] + [float(s) for s in args.snr.split(",")]
    voices = keywords.voices(keywords.Config())
    groups = {"training voices": [v for v in voices["train"] if v[0] == "espeak"][:: args.train_every],
              "validation voices": voices["val"], "test voices": voices["test"]}
    words = keywords.KEYWORDS
    print(f"{art.name} ({art.runtimes[0]}), 1 s windows, words centred, pink noise relative to the word's RMS")
    with open_session(art.path, runtime=art.runtimes[0], threads=1) as s:
        for group, vs in groups.items():
            xs, ys = renditions(vs, words)
            print(f"\n{group} ({len(vs)}, {len(xs)} renditions): accuracy per keyword")
            print("| SNR | all | " + " | ".join(words) + " | most confused |")
            print("| --- " * (len(words) + 3) + "|")
            truth = np.asarray([b.labels.index(w) for w in ys])
            for snr in snrs:
                pred = s.run(apply(b.preprocess, windows(xs, snr))).argmax(1)
                per = [np.mean(pred[truth == b.labels.index(w)] == b.labels.index(w)) for w in words]
                wrong = Counter((ys[i], b.labels[p]) for i, p in enumerate(pred) if p != truth[i])
                top = ", ".join(f"{a} as {c} {n}" for (a, c), n in wrong.most_common(2)) or "none"
                print(f"| {'clean' if snr is None else f'{snr:g} dB'} | {np.mean(pred == truth):.2f} | "
                      + " | ".join(f"{p:.2f}" for p in per) + f" | {top} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
