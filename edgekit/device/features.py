"""MFCC features of speech, in numpy: the keyword-spotting front end for training, verification and the device.

The MLPerf Tiny KWS reference (DS-CNN, 49x10 MFCC input; mlcommons/tiny ``get_dataset.py``) computes its
features with TensorFlow's ``tf.signal``: 30 ms periodic-Hann windows (480 samples at 16 kHz) every 20 ms
(320 samples), ``fft_length=None`` (the next power of two: a 512-point FFT) of the magnitude spectrum, 40
triangular HTK-mel bands over 20–4000 Hz (so 8 kHz TTS voices fit inside the band), ``log(mel + 1e-6)``, and
the first 10 DCT-II coefficients scaled by ``1/sqrt(2 * n_mels)``. This module does the same in numpy, so a
bundle's model and the MLPerf reference model read the same features: against TensorFlow 2.19's own
``tf.signal`` on keyword clips (``tests/golden/mfcc_tf_signal.npz``, made by ``scripts/mfcc_golden.py``) the
largest difference is 2e-7 of the largest coefficient. The spec stored in every artifact::

    {"kind": "mfcc", "sample_rate": 16000, "clip_samples": 16000, "window": 480, "hop": 320, "n_fft": 512,
     "n_mels": 40, "n_mfcc": 10, "fmin": 20.0, "fmax": 4000.0, "mean": [10 floats], "std": [10 floats]}

The window, hop and FFT length travel in the spec, so an artifact made with other ones (edgekit before
2026-12 used 40 ms windows and a 1024-point FFT, whose c0 sits ~7 units above the reference's) keeps
reading the features it was trained on.

``mean``/``std`` (per coefficient, measured on the training clips) standardize the coefficients; c0
alone spans ~100 units, the others a few. Model input: float32 (N, 1, frames, n_mfcc), frames =
1 + (clip_samples - window) // hop = 49.

Device side: numpy only, never torch.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

LOG_OFFSET = 1e-6  # added to mel magnitudes before log, as in the MLPerf Tiny KWS front end
CHUNK = 512  # clips framed at a time (the framed copy is window / hop = 2x the audio)


def mfcc_spec(*, sample_rate: int = 16000, clip_samples: int = 16000, window: int = 480, hop: int = 320,
              n_fft: int = 512, n_mels: int = 40, n_mfcc: int = 10, fmin: float = 20.0, fmax: float = 4000.0,
              mean: list[float] | None = None, std: list[float] | None = None) -> dict:
    """An MFCC pre-processing spec (see the module docstring); mean 0 and std 1 until measured."""
    return {"kind": "mfcc", "sample_rate": sample_rate, "clip_samples": clip_samples, "window": window, "hop": hop,
            "n_fft": n_fft, "n_mels": n_mels, "n_mfcc": n_mfcc, "fmin": float(fmin), "fmax": float(fmax),
            "mean": [float(v) for v in (mean if mean is not None else [0.0] * n_mfcc)],
            "std": [float(v) for v in (std if std is not None else [1.0] * n_mfcc)]}


def frames_of(spec: dict) -> int:
    """MFCC frames per clip: 49 for 1 s at 16 kHz with a 480-sample window every 320 samples."""
    return 1 + (spec["clip_samples"] - spec["window"]) // spec["hop"]


def _hz_to_mel(f):
    return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)  # HTK mel scale, as tf.signal uses


@lru_cache(maxsize=8)  # the streaming demo computes one window at a time: build the matrices once
def mel_matrix(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular HTK-mel weights, unnormalized, DC bin zero (tf.signal's construction)."""
    bins = n_fft // 2 + 1
    freqs = np.linspace(0.0, sample_rate / 2, bins)[1:]  # the DC bin carries no weight
    mel = _hz_to_mel(freqs)[:, None]
    edges = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2)
    lo, mid, hi = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    w = np.maximum(0.0, np.minimum((mel - lo) / (mid - lo), (hi - mel) / (hi - mid)))
    return np.concatenate([np.zeros((1, n_mels)), w]).astype(np.float32)


@lru_cache(maxsize=8)
def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """(n_mels, n_mfcc) DCT-II basis scaled by 1/sqrt(2 * n_mels) (tf.signal.mfccs_from_log_mel_spectrograms)."""
    n = np.arange(n_mels)[:, None]
    k = np.arange(n_mfcc)[None]
    return (2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) / np.sqrt(2.0 * n_mels)).astype(np.float32)


def mfcc(waves: np.ndarray, spec: dict) -> np.ndarray:
    """Raw MFCCs (N, frames, n_mfcc) float32 of float waveforms (N, samples) in [-1, 1], not standardized.

    Raises:
        ValueError: clips shorter than one window.
    """
    x = np.asarray(waves, np.float32)
    if x.ndim == 1:
        x = x[None]
    win, hop, n_fft = spec["window"], spec["hop"], spec["n_fft"]
    if x.shape[1] < win:
        raise ValueError(f"clips of {x.shape[1]} samples are shorter than one window ({win})")
    n_frames = 1 + (x.shape[1] - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)).astype(np.float32)  # periodic Hann
    fb = mel_matrix(spec["sample_rate"], n_fft, spec["n_mels"], spec["fmin"], spec["fmax"])
    dct = dct_matrix(spec["n_mels"], spec["n_mfcc"])
    out = np.empty((len(x), n_frames, spec["n_mfcc"]), np.float32)
    for i in range(0, len(x), CHUNK):
        mag = np.abs(np.fft.rfft(x[i: i + CHUNK, idx] * window, n=n_fft, axis=-1)).astype(np.float32)
        if len(x) <= 4:
            # One streaming window: numpy's own loops. A BLAS matmul this small wakes BLAS's thread pool, which on
            # a busy 2-core machine cost 15 ms a window instead of 3 (the model itself takes 0.05 ms).
            out[i: i + CHUNK] = np.einsum("nfm,mc->nfc", np.log(np.einsum("nfb,bm->nfm", mag, fb)
                                                                 + np.float32(LOG_OFFSET)), dct)
        else:
            out[i: i + CHUNK] = np.log(mag @ fb + np.float32(LOG_OFFSET)) @ dct
    return out


def fit_stats(waves: np.ndarray, spec: dict) -> dict:
    """The spec with ``mean``/``std`` per coefficient measured on ``waves`` (training clips only)."""
    m = mfcc(waves, spec).reshape(-1, spec["n_mfcc"]).astype(np.float64)
    return {**spec, "mean": m.mean(0).round(6).tolist(), "std": np.maximum(m.std(0), 1e-3).round(6).tolist()}


def apply(spec: dict, waves: np.ndarray) -> np.ndarray:
    """Model inputs of 1 s clips: standardized MFCCs, float32 (N, 1, frames, n_mfcc).

    Args:
        spec: an MFCC spec from :func:`mfcc_spec` (or a manifest).
        waves: float waveforms (N, clip_samples) in [-1, 1] at ``spec["sample_rate"]``.

    Returns:
        float32 (N, 1, 49, 10) for the default spec.

    Raises:
        ValueError: when the clips do not have ``clip_samples`` samples.

    Example:
        >>> apply(mfcc_spec(), np.zeros((2, 16000), np.float32)).shape
        (2, 1, 49, 10)
    """
    x = np.asarray(waves, np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != spec["clip_samples"]:
        raise ValueError(f"expected waveforms (N, {spec['clip_samples']}), got {tuple(np.shape(waves))}")
    m = mfcc(x, spec)
    m = (m - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    return np.ascontiguousarray(m[:, None].astype(np.float32))
