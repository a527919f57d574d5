"""A small synthetic machine-sound set in the style of ToyADMOS / DCASE 2020 task 2, generated in numpy.

No real machine-sound corpus can be had offline here, so tests and the anomaly recipe use this:

* **normal**: a motor hum: a fundamental drawn per clip from 110-130 Hz with six harmonics (amplitude
  1/k, random phases), slow amplitude wobble, and broadband noise at 12-24 dB SNR;
* **anomalous**: the same hum with one fault, drawn per clip: extra inharmonic partials (a loose part
  rattling at 2.4-4.6x the fundamental, 8-20 % of its amplitude), periodic clicks (a damaged bearing,
  every 25-70 ms), or a fundamental just above the normal range (134-146 Hz: a motor under the wrong load).

Training clips are normal only, as in the real task; the validation and test clips are half normal,
half anomalous (each anomalous clip with one fault type, drawn at random). Every clip derives from
``data.seed``, so the set is identical wherever it is generated; 1-second clips at 16 kHz give 26
log-mel windows each.
"""

from __future__ import annotations

import numpy as np

from edgekit.data import Splits, logmel

SAMPLE_RATE = 16_000
CLIP_SECONDS = 1.0
COUNTS = {"train": 240, "val": 60, "test": 120}  # clips; val and test are half anomalous
LABELS = ("normal", "anomaly")
FAULTS = ("partials", "clicks", "shift")


def hum(rng: np.random.Generator, n: int, f0: float) -> np.ndarray:
    """A motor hum of ``n`` samples: harmonics of ``f0`` with 1/k amplitudes and a slow wobble."""
    t = np.arange(n) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 7))
    wobble = 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 2 * np.pi))
    return wave * wobble


def fault(rng: np.random.Generator, wave: np.ndarray, kind: str, f0: float) -> np.ndarray:
    """Add one fault of ``kind`` (partials, clicks; shift is made by the caller) to a hum."""
    n = len(wave)
    t = np.arange(n) / SAMPLE_RATE
    if kind == "partials":
        for _ in range(2):
            ratio = rng.uniform(2.4, 4.6)
            wave = wave + rng.uniform(0.08, 0.2) * np.sin(2 * np.pi * ratio * f0 * t + rng.uniform(0, 2 * np.pi))
    elif kind == "clicks":
        period = int(SAMPLE_RATE * rng.uniform(0.025, 0.07))
        burst = np.exp(-np.arange(160) / 25.0) * rng.standard_normal(160) * rng.uniform(0.4, 0.9)
        for start in range(int(rng.integers(0, period)), n - len(burst), period):
            wave[start: start + len(burst)] += burst
    return wave


def clip(rng: np.random.Generator, anomalous: bool) -> np.ndarray:
    """One clip, float32 in [-1, 1]."""
    n = int(SAMPLE_RATE * CLIP_SECONDS)
    kind = FAULTS[int(rng.integers(len(FAULTS)))] if anomalous else None
    f0 = rng.uniform(134, 146) if kind == "shift" else rng.uniform(110, 130)
    wave = hum(rng, n, f0)
    if kind in ("partials", "clicks"):
        wave = fault(rng, wave, kind, f0)
    snr_db = rng.uniform(12, 24)
    noise = rng.standard_normal(n) * np.sqrt(np.mean(wave ** 2) / 10 ** (snr_db / 10))
    wave = wave + noise
    return (0.5 * wave / np.max(np.abs(wave))).astype(np.float32)


def generate(count: int, *, anomalous_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` clips (float32 (count, samples)) and labels (0 normal, 1 anomaly), shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(count, np.int64)
    labels[: int(round(count * anomalous_fraction))] = 1
    labels = rng.permutation(labels)  # mixed order: every rank's shard of a split holds both classes
    return np.stack([clip(rng, bool(a)) for a in labels]), labels


def load_synthetic(root: str | None = None, spec=None) -> Splits:
    """The ``machine_sounds_synthetic`` data set as Splits of waveforms with a log-mel spec.

    Args:
        root: ignored (nothing is read; the clips are generated).
        spec: the recipe's data section: ``seed`` picks the set; ``limit_train`` / ``limit_test`` cap it.

    Returns:
        Splits: normal-only train, half-anomalous val and test; ``tensors()`` gives (clips, windows, 640).
    """
    seed = getattr(spec, "seed", 0)
    # Distinct streams per split, so changing one split's size leaves the others as they were.
    train_x, train_y = generate(COUNTS["train"], anomalous_fraction=0.0, seed=seed * 1000 + 1)
    val_x, val_y = generate(COUNTS["val"], anomalous_fraction=0.5, seed=seed * 1000 + 2)
    test_x, test_y = generate(COUNTS["test"], anomalous_fraction=0.5, seed=seed * 1000 + 3)
    pre = logmel.spec(sample_rate=SAMPLE_RATE)
    db = logmel.windows(logmel.log_mel(train_x, pre), pre["frames"])
    pre = {**pre, "mean": round(float(db.mean()), 4), "std": round(float(db.std()), 4)}
    return Splits(name="machine_sounds_synthetic", train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
                  test_x=test_x, test_y=test_y, labels=LABELS, preprocess=pre)
