"""Route onnx2tf: onnx2tf in its own virtual environment (TensorFlow never enters edgekit's), then
ai-edge-quantizer for fp16 and int8."""


from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgekit.device.artifact import METADATA_KEY, metadata_json
from edgekit.errors import (
    EdgekitError,
    describe,
    require,
)
from edgekit.export.onnx_source import (
    FP32_TOLERANCE,
    _check_tflite,
    _RouteFailed,
    _Source,
)
from edgekit.rundir import atomic_path

ONNX2TF_REQUIREMENTS = ("onnx2tf==1.29.24",)  # pins tensorflow 2.19.0, numpy 1.26.4, onnx 1.19.1, onnxsim 0.4.36
ONNX2TF_TIMEOUT = 900  # seconds for one onnx2tf run; a ResNet-8 takes ~10 s, TensorFlow's import ~5 s of it
_ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"  # onnx2tf downloads it when absent

# --- route onnx2tf: onnx2tf in its own venv, then ai-edge-quantizer ------------------------------------------


def onnx2tf_venv() -> Path:
    """Where the onnx2tf environment lives: ``$EDGEKIT_ONNX2TF_VENV`` or ``~/.cache/edgekit/onnx2tf-venv``."""
    env = os.environ.get("EDGEKIT_ONNX2TF_VENV")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "edgekit" / "onnx2tf-venv"


def onnx2tf_env_ready(venv: Path | None = None) -> bool:
    """Whether ``scripts/onnx2tf_env.py`` finished building the environment with the current pins."""
    venv = venv or onnx2tf_venv()
    stamp = venv / "edgekit-stamp.txt"
    return (venv / "bin" / "python").exists() and stamp.is_file() and stamp.read_text().split() == list(
        ONNX2TF_REQUIREMENTS)


def _onnx2tf_missing(precision: str) -> str | None:
    if not onnx2tf_env_ready():
        return f"the onnx2tf environment {onnx2tf_venv()} is not built (python scripts/onnx2tf_env.py)"
    for module in ("ai_edge_quantizer", "ai_edge_litert", "onnxruntime"):
        if importlib.util.find_spec(module) is None:
            return f'{module} is not installed (pip install "edgekit[convert]")'
    return None


# Runs inside the onnx2tf venv. Refuses every host-name lookup and internet socket connection (onnx2tf fetches
# sample images and schema files from GitHub in some code paths) and records the attempts, then converts
# without quantizing.
_DRIVER = r"""
import json, socket, sys
args = json.loads(sys.argv[1])
attempts = []
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
def _refuse(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        attempts.append(repr(address))
        raise ConnectionRefusedError("edgekit: onnx2tf may not use the network")
socket.socket.connect = lambda s, a: (_refuse(s, a), _connect(s, a))[1]
socket.socket.connect_ex = lambda s, a: (_refuse(s, a), _connect_ex(s, a))[1]
_getaddrinfo = socket.getaddrinfo
def _lookup(host, *rest, **kw):
    if host not in (None, "localhost", "127.0.0.1", "::1", b"localhost"):
        attempts.append(repr(host))
        raise socket.gaierror(f"edgekit: onnx2tf may not use the network (looked up {host})")
    return _getaddrinfo(host, *rest, **kw)
socket.getaddrinfo = _lookup
try:
    import onnx2tf
    onnx2tf.convert(**args["convert"])
finally:
    with open(args["report"], "w") as f:
        json.dump({"network_attempts": attempts}, f)
"""


def _run_onnx2tf(source: _Source, work: Path, calib: np.ndarray | None, *, sample_file: bool = True) -> Path:
    """Run onnx2tf on a private copy of the model in ``work``; returns its float32 .tflite.

    Raises:
        _RouteFailed: onnx2tf failed (the message holds its last error line and any refused connection).
    """
    work = work.resolve()  # onnx2tf runs with work as its folder: relative paths would point elsewhere
    private = work / "model.onnx"
    shutil.copyfile(source.path, private)  # onnx2tf runs onnxsim on its input and writes the result over it
    if sample_file:
        np.save(work / _ONNX2TF_SAMPLE, _onnx2tf_samples(source, calib))
    report = work / "onnx2tf-report.json"
    args = {"report": str(report), "convert": {
        "input_onnx_file_path": str(private),
        "output_folder_path": str(work / "out"),
        "overwrite_input_shape": [f"{source.input_name}:{','.join(map(str, source.input_shape))}"],
        "keep_shape_absolutely_input_names": [source.input_name],  # keep NCHW (or whatever the ONNX input is)
        "enable_rnn_unroll": True,  # GRU/LSTM as builtin ops; otherwise Select TF ops that LiteRT cannot run
        "verbosity": "error",
    }}
    python = onnx2tf_venv() / "bin" / "python"
    # onnx2tf runs onnxsim as a command: the venv's bin/ goes first on PATH (without it onnxsim is skipped with
    # a warning only, and conversions fail that it would have made static).
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PYTHONNOUSERSITE": "1",
           "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(key, None)
    try:
        proc = subprocess.run([str(python), "-c", _DRIVER, json.dumps(args)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=ONNX2TF_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise _RouteFailed(f"onnx2tf ran past {ONNX2TF_TIMEOUT} s") from None
    attempts = json.loads(report.read_text())["network_attempts"] if report.is_file() else []
    tflite = work / "out" / "model_float32.tflite"
    if proc.returncode != 0 or not tflite.is_file():
        lines = [s.strip() for s in (proc.stderr + proc.stdout).splitlines() if s.strip()]
        errors = [s for s in lines if "Error" in s or "error" in s.split(":")[0]]
        last = (errors or lines or [f"exit code {proc.returncode}"])[-1]
        refused = f" (refused network connections: {', '.join(attempts)})" if attempts else ""
        raise _RouteFailed(f"onnx2tf: {_strip_ansi(last)[:200]}{refused}")
    if attempts:  # converted, but tried to reach the network: say so rather than hide it
        raise _RouteFailed(f"onnx2tf tried to connect to {', '.join(attempts)}")
    return tflite


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _onnx2tf_samples(source: _Source, calib: np.ndarray | None) -> np.ndarray:
    """What onnx2tf would download: NHWC images it resizes and feeds through the model to check its layouts."""
    if calib is not None and calib.ndim == 4:
        x = calib[:20]
        return np.ascontiguousarray(x if x.shape[-1] == 3 else np.moveaxis(x, 1, -1), dtype=np.float32)
    return np.random.default_rng(0).uniform(0, 1, size=(20, 128, 128, 3)).astype(np.float32)


def _onnx2tf_convert(source: _Source, precision: str, calib, meta: dict, out: Path, check_x, work: Path) -> None:
    from edgekit.export.tflite import embed_metadata

    fp32 = _run_onnx2tf(source, work, calib)
    if check_x is not None:
        _check_tflite(source, fp32, check_x, FP32_TOLERANCE)
    flatbuffer = fp32.read_bytes()
    try:
        flatbuffer = _QUANTIZE[precision](flatbuffer, calib)
    except EdgekitError:
        raise
    except Exception as exc:
        raise _RouteFailed(f"ai-edge-quantizer ({precision}): {describe(exc)}") from None
    text = metadata_json(meta)
    with atomic_path(out) as tmp:
        tmp.write_bytes(embed_metadata(flatbuffer, METADATA_KEY, text.encode("utf-8"), compact=True))


def _keep(flatbuffer: bytes, calib) -> bytes:
    return flatbuffer


def _fp16_weights(flatbuffer: bytes, calib) -> bytes:
    """Conv and fully-connected weights cast to float16, as :mod:`edgekit.export.tflite` does for fp16."""
    quantizer = require("ai_edge_quantizer.quantizer", extra="convert", why="TFLite fp16 conversion")
    from ai_edge_quantizer import qtyping

    q = quantizer.Quantizer(bytearray(flatbuffer))
    q.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                             algorithm_key="float_casting")
    return bytes(q.quantize(enable_progress_report=False).quantized_model)


def _static_int8(flatbuffer: bytes, calib: np.ndarray) -> bytes:
    """Static int8 (int8 weights per channel, int8 activations) calibrated on ``calib``, one sample a call."""
    quantizer = require("ai_edge_quantizer.quantizer", extra="convert", why="TFLite int8 conversion")
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import recipe

    signatures = Interpreter(model_content=flatbuffer).get_signature_list()
    if len(signatures) != 1:
        raise _RouteFailed(f"the onnx2tf model has {len(signatures)} signatures, int8 calibration needs one")
    (key, sig), = signatures.items()
    (name,) = sig["inputs"]
    q = quantizer.Quantizer(bytearray(flatbuffer))
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    samples = [{name: calib[i : i + 1]} for i in range(len(calib))]
    with contextlib.redirect_stderr(io.StringIO()):  # its calibration progress bar
        result = q.calibrate({key: samples}, num_threads=min(2, os.cpu_count() or 1))
    return bytes(q.quantize(result, enable_progress_report=False).quantized_model)


_QUANTIZE: dict[str, Callable[[bytes, np.ndarray | None], bytes]] = {
    "fp32": _keep, "fp16": _fp16_weights, "int8": _static_int8}
