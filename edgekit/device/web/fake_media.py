"""Files that a browser's fake capture devices play: the camera and microphone of a page under test.

Chromium takes ``--use-fake-device-for-media-stream --use-file-for-fake-video-capture=FILE.y4m`` and
``--use-file-for-fake-audio-capture=FILE.wav`` and plays them (in a loop) as the camera and the microphone.
The tests and the README screenshot feed ``edgekit demo web`` held-out images this way: the bundle's golden
inputs turned back into pixels (:func:`golden_pixels`), enlarged to camera frames (:func:`write_y4m`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def golden_pixels(b) -> np.ndarray:
    """The golden inputs of an image bundle as the uint8 pixels (N, H, W, C) they were made from."""
    spec = b.preprocess
    x = np.asarray(b.golden()["x"], np.float64).transpose(0, 2, 3, 1)
    mean = np.asarray(spec["mean"], np.float64).reshape(1, 1, 1, -1)
    std = np.asarray(spec["std"], np.float64).reshape(1, 1, 1, -1)
    return np.clip(np.rint((x * std + mean) / spec["scale"]), 0, 255).astype(np.uint8)


def write_y4m(path: str | Path, frames: np.ndarray, *, fps: int = 10) -> Path:
    """Write uint8 frames (N, H, W) or (N, H, W, 1) gray or (N, H, W, 3) RGB as a YUV4MPEG2 4:2:0 file (full-range BT.601).

    H and W must be even (4:2:0 halves the chroma planes).
    """
    f = np.asarray(frames)
    if f.ndim == 4 and f.shape[3] == 1:
        f = f[..., 0]
    if f.ndim == 3:
        f = np.repeat(f[..., None], 3, axis=3)
    n, h, w, _ = f.shape
    if h % 2 or w % 2:
        raise ValueError(f"y4m 4:2:0 frames need even sizes, got {w}x{h}")
    rgb = f.astype(np.float64)
    r, g, bl = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * bl
    u = 128 - 0.168736 * r - 0.331264 * g + 0.5 * bl
    v = 128 + 0.5 * r - 0.418688 * g - 0.081312 * bl

    def plane(a, sub):
        if sub:
            a = a.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)

    y, u, v = plane(y, False), plane(u, True), plane(v, True)
    path = Path(path)
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(n):
            out.write(b"FRAME\n")
            out.write(y[i].tobytes())
            out.write(u[i].tobytes())
            out.write(v[i].tobytes())
    return path


def enlarge(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel repeated ``factor`` times along height and width (a small image as a camera frame)."""
    p = np.asarray(pixels)
    return p.repeat(factor, axis=1).repeat(factor, axis=2)
