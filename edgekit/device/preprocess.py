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


def to_pixels(img: np.ndarray, *, size: tuple[int, int], channels: int) -> np.ndarray:
    """A decoded image or camera frame (BGR, BGRA or grayscale uint8, any size) as the model's pixels: uint8
    (H, W) for one channel or (H, W, 3) RGB at ``size`` = (H, W).

    The one path from an image to pixels, used by training data (image folders), ``edgekit compress`` and the
    camera demo alike, so one picture gives one tensor everywhere. Colour to gray is OpenCV's BT.601 weighting;
    INTER_AREA averages the pixels a model pixel covers when shrinking (the downscale that aliases least), and
    INTER_LINEAR interpolates when enlarging (INTER_AREA would repeat pixels in blocks).
    """
    import cv2

    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if channels == 1:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB if img.ndim == 3 else cv2.COLOR_GRAY2RGB)
    h, w = size
    if img.shape[:2] != (h, w):
        down = img.shape[0] >= h and img.shape[1] >= w
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR)
    return img


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
    if spec.get("kind") == "mfcc":  # raw = float waveforms (N, samples): keyword spotting (edgekit.device.features)
        from edgekit.device import features
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
