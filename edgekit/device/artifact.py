"""The Artifact value that export produces and verify, bench, report and bundle consume."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "fp16", "int8", "int8_tensorrt")  # int8_tensorrt: symmetric int8 Q/DQ for TensorRT
METADATA_KEY = "edgekit"  # key of the JSON metadata inside every artifact (ONNX metadata_props, TFLite metadata)


@dataclass(frozen=True)
class Artifact:
    """One exported model file.

    Attributes:
        path: the file on disk.
        format: "onnx" or "tflite".
        precision: "fp32", "fp16", "int8" or "int8_tensorrt" (ONNX with TensorRT's symmetric int8 Q/DQ).
        role: "compressed" for what the run ships, "baseline" for the dense model kept for comparison.
    """

    path: Path
    format: str
    precision: str
    role: str = "compressed"
    notes: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        prefix = "" if self.role == "compressed" else f"{self.role}_"
        return f"{prefix}{self.format}_{self.precision}"


def model_metadata(*, labels: list[str], input_shape: list[int], preprocess: dict, precision: str,
                   source: str, task: str = "classification", input_name: str = "input") -> dict:
    """The metadata every artifact carries, so a device needs nothing else to use it."""
    from edgekit import __version__

    return {
        "schema": 1,
        "edgekit_version": __version__,
        "task": task,
        "labels": list(labels),
        "input": {"name": input_name, "shape": list(input_shape), "dtype": "float32", "layout": "NCHW"},
        "preprocess": preprocess,
        "precision": precision,
        "source": source,
    }


def metadata_json(meta: dict) -> str:
    return json.dumps(meta, sort_keys=True)
