"""From a spoken word to a 1 s clip: rooms (image-method impulse responses), noise (generated, or recorded
ambience), placement, gain, voice warps and spectral tilt."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgekit.data.kws_spec import AMBIENCE_DIR, CLIP, PARTIAL, SAMPLE_RATE, SILENCE, SPLITS, UNKNOWN, Mix
from edgekit.data.kws_speech import _run
from edgekit.errors import DataError


def coloured_noise(rng: np.random.Generator, n: int, colour: str) -> np.ndarray:
    """Unit-RMS white, pink (1/f) or brown (1/f^2) noise of ``n`` samples."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    spec *= {"white": 1.0, "pink": f ** -0.5, "brown": f ** -1.0}[colour]
    x = np.fft.irfft(spec, n)
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


def place(rng: np.random.Generator, word: np.ndarray, *, gain: float) -> np.ndarray:
    """The word at a random offset inside a 1 s clip (cut to 1 s if longer), peak scaled to ``gain``."""
    clip = np.zeros(CLIP, np.float32)
    w = word[:CLIP]
    start = int(rng.integers(0, CLIP - len(w) + 1))
    clip[start: start + len(w)] = w * (gain / (np.abs(w).max() + 1e-9))
    return clip




# --- from words to clips: rooms, noises, mixing --------------------------------------------------------------------


@lru_cache(maxsize=1)
def _recordings() -> tuple[np.ndarray, ...]:
    """Every sonic-pi recording as 16 kHz mono float32, sorted by file name (decoded once per process)."""
    files = sorted(AMBIENCE_DIR.glob("*.flac")) if AMBIENCE_DIR.is_dir() else []
    if not files or shutil.which("sox") is None:
        raise DataError(f"the keywords data set mixes in recordings from {AMBIENCE_DIR} with sox: sudo apt-get "
                        "install sonic-pi-samples sox (or run scripts/setup-system.sh)")

    def read(path: Path) -> np.ndarray:
        # float output: sox dithers integer output with random noise, and the corpus would differ every time
        raw = _run(["sox", "-R", str(path), "-t", "raw", "-e", "floating-point", "-b", "32", "-L", "-c", "1",
                    "-r", str(SAMPLE_RATE), "-"]).stdout
        return np.frombuffer(raw, "<f4").astype(np.float32)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return tuple(pool.map(read, files))


def ambience(seed: int, mix: Mix) -> dict[str, list[np.ndarray]]:
    """The sonic-pi recordings (16 kHz mono float32) of each split: disjoint sets of files drawn by ``seed``.

    Raises:
        DataError: Debian sonic-pi-samples or sox missing.
    """
    sounds = _recordings()
    order = np.random.default_rng([seed, 7]).permutation(len(sounds))
    n = max(1, int(round(len(sounds) * mix.held_out_ambience)))
    return {"val": [sounds[i] for i in order[:n]], "test": [sounds[i] for i in order[n: 2 * n]],
            "train": [sounds[i] for i in order[2 * n:]]}


def rooms(seed: int, split: str, mix: Mix) -> list[np.ndarray]:
    """Room impulse responses of one split (image method, pyroomacoustics), from the direct path on, peak 1.

    At the full image order a split's 40 rooms take ~12 s on a 2-core x86, so a process computes them once.

    Raises:
        MissingDependency: pyroomacoustics not installed.
    """
    return list(_rooms(seed, split, mix))


@lru_cache(maxsize=6)
def _rooms(seed: int, split: str, mix: Mix) -> tuple[np.ndarray, ...]:
    from edgekit.errors import require

    pra = require("pyroomacoustics", extra="train", why="room reverb for the keywords data set")
    rng = np.random.default_rng([seed, SPLITS.index(split), 11])
    out = []
    while len(out) < mix.rooms:
        dims = rng.uniform([3.0, 3.0, 2.4], [8.0, 6.0, 3.2])
        try:
            absorption, max_order = pra.inverse_sabine(float(rng.uniform(*mix.rt60_s)), dims)
        except ValueError:  # a reverberation time this room cannot have (too short for its size): draw again
            continue
        mic = rng.uniform(0.4, dims - 0.4)
        d, angle = rng.uniform(*mix.distance_m), rng.uniform(0, 2 * np.pi)
        src = mic + np.array([d * np.cos(angle), d * np.sin(angle), rng.uniform(-0.3, 0.5)])
        if np.any(src < 0.3) or np.any(src > dims - 0.3):
            continue
        # The image order inverse_sabine asks for (median 75 over these draws), as pyroomacoustics documents it: a cap
        # (30 here once) stops the image sources after ~0.2 s, short of the RT60 drawn.
        room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=max_order)
        room.add_source(src)
        room.add_microphone(mic)
        room.compute_rir()
        h = np.asarray(room.rir[0][0], np.float32)
        h = h[max(0, int(np.argmax(np.abs(h))) - 40):]  # the propagation delay would only shift the word
        h = h / np.abs(h).max()
        h.setflags(write=False)  # shared by every caller of this process
        out.append(h)
    return tuple(out)


def tilt(x: np.ndarray, db_per_octave: float) -> np.ndarray:
    """``x`` with its spectrum tilted by ``db_per_octave`` around 1 kHz (flat below 100 Hz)."""
    n = len(x)
    f = np.fft.rfftfreq(2 * n, 1 / SAMPLE_RATE)  # zero-padded: no circular wrap-around
    gain = 10 ** (db_per_octave * np.log2(np.maximum(f, 100.0) / 1000.0) / 20)
    return np.fft.irfft(np.fft.rfft(x, 2 * n) * gain, 2 * n)[:n].astype(np.float32)


def background(rng: np.random.Generator, sounds: list[np.ndarray], mix: Mix) -> np.ndarray:
    """1 s of unit-RMS background: generated coloured noise, or a sonic-pi recording (a random second of it)."""
    if sounds and rng.random() < mix.ambience_fraction:
        s = sounds[int(rng.integers(len(sounds)))]
        if len(s) >= CLIP:
            k = int(rng.integers(0, len(s) - CLIP + 1))
            x = s[k: k + CLIP].copy()
        else:  # a short sound (a drum hit, a click) somewhere in the second
            x = np.zeros(CLIP, np.float32)
            k = int(rng.integers(0, CLIP - len(s) + 1))
            x[k: k + len(s)] = s
        rms = float(np.sqrt(np.mean(x ** 2)))
        if rms > 1e-5:
            return x / rms
    return coloured_noise(rng, CLIP, str(rng.choice(["white", "pink", "brown"])))


def mix_clip(rng: np.random.Generator, word: np.ndarray, label: int, *, mix: Mix, rirs: list[np.ndarray],
             sounds: list[np.ndarray], new_voice: bool = True) -> tuple[np.ndarray, int]:
    """One 1 s clip of a spoken word (see the module docstring): (float32 samples in [-1, 1], class).

    ``new_voice``: shift formants and tilt the spectrum (training); otherwise the voice stays as spoken.
    """
    if label == SILENCE:
        level = 10 ** rng.uniform(-4, -1.3)  # from near-digital silence to a noisy room
        return np.clip(background(rng, sounds, mix) * level, -1, 1).astype(np.float32), SILENCE
    if new_voice and rng.random() < mix.warp_fraction:  # formant shift: a longer or shorter vocal tract
        from edgekit.device.audio import resample

        word = resample(word, SAMPLE_RATE, int(SAMPLE_RATE * rng.uniform(*mix.warp)))
    if new_voice and rng.random() < mix.tilt_fraction:
        word = tilt(word, float(rng.uniform(*mix.tilt_db)))
    if label == PARTIAL:  # the first or last 25-45 % of a keyword: what a sliding window sees at its edges
        k = max(1, int(len(word) * rng.uniform(0.25, 0.45)))
        word, label = (word[:k] if rng.random() < 0.5 else word[-k:]), UNKNOWN
    if rirs and rng.random() < mix.reverb_fraction:
        from scipy.signal import fftconvolve

        word = fftconvolve(word, rirs[int(rng.integers(len(rirs)))])[: CLIP].astype(np.float32)
    clip = place(rng, word, gain=float(10 ** rng.uniform(-1.2, -0.05)))
    if rng.random() < mix.clean_fraction:
        return clip, label
    rms = float(np.sqrt(np.mean(clip ** 2))) or 0.01
    noise = background(rng, sounds, mix) * rms / 10 ** (rng.uniform(*mix.snr_db) / 20)
    if mix.gapped_fraction and rng.random() < mix.gapped_fraction:  # noise between words, clean words
        noise *= around(clip)
    return np.clip(clip + noise, -1, 1).astype(np.float32), label


def around(clip: np.ndarray, ramp: int = 320) -> np.ndarray:
    """1 outside the sound of ``clip`` (its first to last non-zero sample), 0 on it, with ``ramp``-sample fades."""
    on = np.flatnonzero(clip)
    if len(on) == 0:
        return np.ones(len(clip), np.float32)
    t = np.arange(len(clip))
    outside = np.maximum(on[0] - t, t - on[-1])  # samples to the sound, <= 0 on it
    return np.clip(outside / (ramp + 1), 0, 1).astype(np.float32)
