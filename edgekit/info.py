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
            "cpus": os.cpu_count(), "cpu": cpu_name()}


def cpu_name() -> str:
    """The CPU's model name and its int8 dot-product instructions, from /proc/cpuinfo ("" where there is none).

    Every figure edgekit prints depends on it: int8 is fast where the CPU has VNNI (x86) or dotprod (Arm).
    """
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return platform.processor()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.split(":")[0].strip() in ("model name", "Hardware", "Model")), platform.processor())
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines()
                      if line.split(":")[0].strip() in ("flags", "Features")), []))
    has = [label for f, label in (("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"), ("avx2", "AVX2"),
                                  ("asimddp", "dotprod")) if f in flags]
    return name + (f" ({', '.join(has)})" if has else "")
