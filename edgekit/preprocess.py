"""Image pre-processing, written once in numpy and used by training, verification and the device.

The spec is a plain dict stored in every artifact's metadata and in the bundle manifest:
``{"kind": "image", "size": [H, W], "channels": C, "scale": 1/255, "mean": [...], "std": [...]}``.
Raw input is uint8 pixels (N, H, W) or (N, H, W, C); output is float32 NCHW.
"""

from __future__ import annotations

import numpy as np


def image_spec(*, size: tuple[int, int], channels: int, mean: list[float], std: list[float],
               scale: float = 1 / 255) -> dict:
    return {"kind": "image", "size": list(size), "channels": channels, "scale": scale,
            "mean": list(mean), "std": list(std)}


def apply(spec: dict, raw: np.ndarray) -> np.ndarray:
    """Turn uint8 pixels into the float32 NCHW tensor the model takes (waveforms into MFCCs for kind "mfcc").

    Args:
        spec: an image spec from :func:`image_spec` (or a manifest).
        raw: uint8 array (N, H, W) for one channel or (N, H, W, C), already at ``spec["size"]``.

    Returns:
        float32 array (N, C, H, W).

    Raises:
        ValueError: when the pixels do not have the spec's size or channel count.
    """
    if spec.get("kind") == "mfcc":  # raw = float waveforms (N, samples): keyword spotting (edgekit.features)
        from edgekit import features

        return features.apply(spec, raw)
    if spec.get("kind") != "image":
        raise ValueError(f"unsupported pre-processing kind {spec.get('kind')!r}")
    x = np.asarray(raw)
    if x.ndim == 3:
        x = x[..., None]
    h, w = spec["size"]
    if x.ndim != 4 or x.shape[1:3] != (h, w) or x.shape[3] != spec["channels"]:
        raise ValueError(f"expected pixels (N, {h}, {w}, {spec['channels']}), got {tuple(np.shape(raw))}")
    x = x.astype(np.float32) * np.float32(spec["scale"])
    mean = np.asarray(spec["mean"], np.float32).reshape(1, 1, 1, -1)
    std = np.asarray(spec["std"], np.float32).reshape(1, 1, 1, -1)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
