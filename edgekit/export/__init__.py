"""Exporters, keyed by ``format:precision`` as recipes write them (``onnx:int8``, ``tflite:fp16`` ...).

Each entry takes the same arguments: the PyTorch model, one example input, the output path, the
metadata dict to embed, and calibration samples (used by int8 only).
"""

from __future__ import annotations

from edgekit.registry import Registry

EXPORTERS = Registry("export target")
EXPORTERS.register("onnx:fp32", "edgekit.export.onnx:export_onnx_fp32")
EXPORTERS.register("onnx:int8", "edgekit.export.onnx:export_onnx_int8")
EXPORTERS.register("onnx:int8_tensorrt", "edgekit.export.onnx_tensorrt:export_onnx_int8_tensorrt")
EXPORTERS.register("tflite:fp32", "edgekit.export.tflite:export_tflite_fp32")
EXPORTERS.register("tflite:fp16", "edgekit.export.tflite:export_tflite_fp16")
EXPORTERS.register("tflite:int8", "edgekit.export.tflite:export_tflite_int8")

SUFFIX = {"onnx": ".onnx", "tflite": ".tflite"}
