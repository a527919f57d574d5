"""Log-mel frames of machine sounds, in numpy: the front end of the anomaly detector, in training and on the device.

The MLPerf Tiny anomaly-detection reference (DCASE 2020 task 2 baseline, ``common.py``) feeds its autoencoder
vectors of 5 consecutive log-mel frames: ``librosa.feature.melspectrogram(n_fft=1024, hop_length=512,
n_mels=128, power=2.0)`` at 16 kHz, then ``10 * log10(mel + sys.float_info.epsilon)``; 640 numbers per window,
one window per frame step. librosa's defaults there are what this module does in numpy: a centred STFT
(``n_fft // 2`` samples of reflection padding on each side), a periodic Hann window, Slaney's mel scale (linear
below 1 kHz, logarithmic above) and Slaney's area normalisation. Against librosa 0.11 itself
(``tests/golden/logmel_librosa.npz``, made by ``scripts/logmel_golden.py``) the largest difference is given in
the test. The spec stored in every artifact::

    {"kind": "log_mel", "sample_rate": 16000, "n_fft": 1024, "hop": 512, "n_mels": 128, "frames": 5,
     "fmin": 0.0, "fmax": 8000.0, "center": true, "mel_scale": "slaney", "eps": 2.2e-16, "mean": m, "std": s}

An artifact whose spec lacks ``center``/``mel_scale``/``eps`` was made before 2026-12 with an uncentred STFT,
the HTK mel scale and ``eps`` 1e-10, and keeps reading exactly those features.

``mean`` and ``std`` (scalars, measured on the training clips) standardize the dB values so SGD
sees inputs of unit scale; the device applies them the same way.
"""

from __future__ import annotations

import sys

import numpy as np

EPS = sys.float_info.epsilon  # added to mel power before log10, as the reference does: silence is -157 dB, not -inf
OLD = {"center": False, "mel_scale": "htk", "eps": 1e-10}  # what a spec without these keys was made with
CHUNK = 256  # clips framed at a time


def spec(*, sample_rate: int = 16000, n_fft: int = 1024, hop: int = 512, n_mels: int = 128, frames: int = 5,
         fmin: float = 0.0, fmax: float | None = None, mean: float = 0.0, std: float = 1.0) -> dict:
    """A log-mel pre-processing spec (see the module docstring)."""
    return {"kind": "log_mel", "sample_rate": sample_rate, "n_fft": n_fft, "hop": hop, "n_mels": n_mels,
            "frames": frames, "fmin": float(fmin), "fmax": float(fmax or sample_rate / 2), "center": True,
            "mel_scale": "slaney", "eps": EPS, "mean": float(mean), "std": float(std)}


_F_SP, _MIN_LOG_HZ = 200.0 / 3, 1000.0  # Slaney's scale: 3 mels per 200 Hz up to 1 kHz, then logarithmic
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(f, scale: str = "slaney"):
    f = np.asarray(f, np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    lin = f / _F_SP
    return np.where(f >= _MIN_LOG_HZ, _MIN_LOG_HZ / _F_SP + np.log(np.maximum(f, 1e-12) / _MIN_LOG_HZ) / _LOGSTEP,
                    lin)


def _mel_to_hz(m, scale: str = "slaney"):
    m = np.asarray(m, np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    min_log_mel = _MIN_LOG_HZ / _F_SP
    return np.where(m >= min_log_mel, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - min_log_mel)), _F_SP * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None,
                   scale: str = "slaney") -> np.ndarray:
    """Triangular filters (n_mels, n_fft // 2 + 1) on Slaney's (or the HTK) mel scale, each with unit area
    (Slaney's normalisation): librosa.filters.mel's construction."""
    fmax = fmax or sample_rate / 2
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin, scale), _hz_to_mel(fmax, scale), n_mels + 2), scale)
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
    center, scale, eps = (s.get(k, OLD[k]) for k in ("center", "mel_scale", "eps"))
    if x.shape[1] < n_fft:
        raise ValueError(f"clips of {x.shape[1]} samples are shorter than one FFT window ({n_fft})")
    if center:  # frame t is centred on sample t * hop, the clip mirrored at both ends (librosa's centred STFT)
        x = np.pad(x, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    n_frames = 1 + (x.shape[1] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann, as in librosa and scipy
    fb = mel_filterbank(s["sample_rate"], n_fft, s["n_mels"], s["fmin"], s["fmax"], scale).T
    out = np.empty((len(x), n_frames, s["n_mels"]), np.float32)
    for i in range(0, len(x), CHUNK):  # the framed copy is n_fft / hop times the audio: bound it
        spectrum = np.fft.rfft(x[i: i + CHUNK, idx] * window, axis=-1)
        power = spectrum.real ** 2 + spectrum.imag ** 2
        out[i: i + CHUNK] = 10.0 * np.log10(power @ fb + eps)
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
        (2, 28, 640)
    """
    x = windows(log_mel(waves, s), s["frames"])
    return ((x - np.float32(s["mean"])) / np.float32(s["std"])).astype(np.float32)
