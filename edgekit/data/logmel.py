"""Log-mel frames of machine sounds, in numpy: the front end of the anomaly detector, in training and on the device.

The MLPerf Tiny anomaly-detection reference (DCASE 2020 task 2 baseline) feeds its autoencoder
vectors of 5 consecutive log-mel frames (128 mel bands, 1024-sample FFT, hop 512, 16 kHz):
640 numbers per window, one window per frame step. The spec stored in every artifact::

    {"kind": "log_mel", "sample_rate": 16000, "n_fft": 1024, "hop": 512, "n_mels": 128, "frames": 5,
     "fmin": 0.0, "fmax": 8000.0, "mean": m, "std": s}

``mean`` and ``std`` (scalars, measured on the training clips) standardize the dB values so SGD
sees inputs of unit scale; the device applies them the same way.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-10  # added to mel power before log10: silence becomes -100 dB rather than -inf
CHUNK = 256  # clips framed at a time


def spec(*, sample_rate: int = 16000, n_fft: int = 1024, hop: int = 512, n_mels: int = 128, frames: int = 5,
         fmin: float = 0.0, fmax: float | None = None, mean: float = 0.0, std: float = 1.0) -> dict:
    """A log-mel pre-processing spec (see the module docstring)."""
    return {"kind": "log_mel", "sample_rate": sample_rate, "n_fft": n_fft, "hop": hop, "n_mels": n_mels,
            "frames": frames, "fmin": float(fmin), "fmax": float(fmax or sample_rate / 2), "mean": float(mean),
            "std": float(std)}


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
                   ) -> np.ndarray:
    """Triangular filters (n_mels, n_fft // 2 + 1) on the HTK mel scale, each with unit area (Slaney norm)."""
    fmax = fmax or sample_rate / 2
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - freqs[None]) / np.maximum(hi - mid, 1e-9)
    fb = np.maximum(0.0, np.minimum(up, down))
    fb *= (2.0 / (hi - lo))  # equal area: a band's energy does not grow with its width
    return fb.astype(np.float32)


def log_mel(waves: np.ndarray, s: dict) -> np.ndarray:
    """Log-mel power in dB, (N, frames_in_clip, n_mels) float32, of float waveforms (N, samples) in [-1, 1].

    Raises:
        ValueError: clips shorter than one FFT window.
    """
    x = np.asarray(waves, np.float32)
    if x.ndim == 1:
        x = x[None]
    n_fft, hop = s["n_fft"], s["hop"]
    if x.shape[1] < n_fft:
        raise ValueError(f"clips of {x.shape[1]} samples are shorter than one FFT window ({n_fft})")
    n_frames = 1 + (x.shape[1] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann, as in librosa and scipy
    fb = mel_filterbank(s["sample_rate"], n_fft, s["n_mels"], s["fmin"], s["fmax"]).T
    out = np.empty((len(x), n_frames, s["n_mels"]), np.float32)
    for i in range(0, len(x), CHUNK):  # the framed copy is n_fft / hop times the audio: bound it
        spectrum = np.fft.rfft(x[i: i + CHUNK, idx] * window, axis=-1)
        power = spectrum.real ** 2 + spectrum.imag ** 2
        out[i: i + CHUNK] = 10.0 * np.log10(power @ fb + EPS)
    return out


def windows(mel: np.ndarray, frames: int) -> np.ndarray:
    """Consecutive ``frames`` frames concatenated: (N, T, M) -> (N, T - frames + 1, frames * M)."""
    n, t, m = mel.shape
    count = t - frames + 1
    if count < 1:
        raise ValueError(f"{t} frames per clip, fewer than the {frames} one window needs")
    idx = np.arange(frames)[None, :] + np.arange(count)[:, None]
    return np.ascontiguousarray(mel[:, idx].reshape(n, count, frames * m))


def apply(s: dict, waves: np.ndarray) -> np.ndarray:
    """Model inputs of clips: standardized log-mel windows, float32 (N clips, windows per clip, frames * n_mels).

    Example:
        >>> apply(spec(), np.zeros((2, 16000), np.float32)).shape
        (2, 26, 640)
    """
    x = windows(log_mel(waves, s), s["frames"])
    return ((x - np.float32(s["mean"])) / np.float32(s["std"])).astype(np.float32)
