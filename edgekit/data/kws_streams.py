"""Continuous recordings for the streaming tests and benchmarks: words spoken one after another with gaps and
noise, and how many keywords a spotter found in order."""

from __future__ import annotations

import numpy as np

from edgekit.data.kws_mixing import coloured_noise
from edgekit.data.kws_spec import SAMPLE_RATE
from edgekit.data.kws_speech import speak, trim

STREAM_WORDS = ("yes", "stop", "house", "go", "left", "right", "seven", "up", "down", "off", "on", "no")
"""The streaming checks' script: every keyword once, and two other words that must not fire."""


def in_order(expected: list[str], found: list[str]) -> int:
    """How many expected keywords the detections contain in order (their longest common subsequence).

    A stream's false detections are ``len(found) - in_order(expected, found)``: a keyword heard as another counts
    as one miss and one false detection.
    """
    t = [[0] * (len(found) + 1) for _ in range(len(expected) + 1)]
    for i, a in enumerate(expected):
        for j, b in enumerate(found):
            t[i + 1][j + 1] = t[i][j] + 1 if a == b else max(t[i][j + 1], t[i + 1][j])
    return t[-1][-1]


STREAM_NOISE = ("bed", "gaps", "none")  # where utterance_stream puts its pink noise


def utterance_stream(words: list[str], voice: tuple[str, str], *, seed: int = 0, gap_s: tuple = (1.0, 1.6),
                     snr_db: float = 20.0, noise: str = "bed") -> tuple[np.ndarray, list[tuple[str, float]]]:
    """A continuous recording for the streaming demo: ``words`` spoken by ``voice`` with gaps between them.

    Each word gets its own level (peak 0.16-0.63), so with a noise bed the quiet words hear more noise than
    ``snr_db`` says: the bed is the harder test. The words, gaps and levels drawn depend on ``seed`` only, so
    the three noise modes of one seed hold the same speech.

    Args:
        words: the words in order (keywords or others).
        voice: (engine, voice), e.g. ("espeak", "en-us+f3") or ("flite", "rms"); pick held-out ones.
        seed: draws gaps, speed, pitch and noise.
        gap_s: range of the gap before each word, seconds.
        snr_db: pink noise level relative to the speech's RMS.
        noise: "bed": pink noise under the whole recording; "gaps": only between the words (each stretch
            faded in and out over 20 ms; the words stay clean); "none": digital silence between the words.

    Returns:
        (float32 16 kHz samples, [(word, onset seconds)]).
    """
    if noise not in STREAM_NOISE:
        raise ValueError(f"noise must be one of {', '.join(STREAM_NOISE)}, not {noise!r}")
    rng = np.random.default_rng(seed)
    parts, onsets, t = [], [], 0
    for w in words:
        gap = np.zeros(int(rng.uniform(*gap_s) * SAMPLE_RATE), np.float32)
        x = trim(speak(voice[0], voice[1], w, speed=float(rng.uniform(0.9, 1.1)), pitch=float(rng.uniform(0.9, 1.1))))
        x = x * (float(10 ** rng.uniform(-0.8, -0.2)) / (np.abs(x).max() + 1e-9))
        t += len(gap)
        onsets.append((w, t / SAMPLE_RATE))
        parts += [gap, x.astype(np.float32)]
        t += len(x)
    parts.append(np.zeros(SAMPLE_RATE, np.float32))
    audio = np.concatenate(parts)
    speech_rms = float(np.sqrt(np.mean(np.concatenate(parts[1::2]) ** 2)))
    bed = coloured_noise(rng, len(audio), "pink") * speech_rms / 10 ** (snr_db / 20)
    if noise != "bed":  # keep the gaps' noise (faded in and out over 20 ms) or none of it; the words stay clean
        ramp = int(0.02 * SAMPLE_RATE)

        def kept(i: int, n: int) -> np.ndarray:  # the share of the bed kept over parts[i] (n samples)
            if i % 2 or noise == "none" or n <= 2 * ramp:  # odd parts are the words
                return np.zeros(n, np.float32)
            return np.concatenate([np.linspace(0, 1, ramp), np.ones(n - 2 * ramp), np.linspace(1, 0, ramp)])

        bed = bed * np.concatenate([kept(i, len(part)) for i, part in enumerate(parts)]).astype(np.float32)
    return np.clip(audio + bed, -1, 1).astype(np.float32), onsets
