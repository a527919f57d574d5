"""Versions of edgekit's dependencies and runtimes, read from package metadata (nothing is imported)."""

from __future__ import annotations

import os
import platform
from importlib import metadata

PACKAGES = ("numpy", "pyyaml", "torch", "torch-pruning", "onnx", "onnxscript", "onnxruntime", "ai-edge-litert",
            "tflite-runtime", "litert-torch", "ai-edge-quantizer", "neural-compressor", "opencv-python-headless",
            "scikit-learn", "matplotlib")


def versions() -> dict[str, str | None]:
    """Installed version of each package edgekit may use; None where it is not installed."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict:
    return {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
            "cpus": os.cpu_count()}
