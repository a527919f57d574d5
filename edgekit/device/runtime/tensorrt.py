"""TensorRT behind the same session interface: an engine built from the ONNX file on this GPU, cached, run.

Engines bind to the GPU and to the TensorRT version that built them, so they are never shipped: the first
session on a device builds one (fp32 for an fp32 ONNX file, int8 with fp16 fallback for edgekit's
``int8_tensorrt`` file, whose symmetric Q/DQ TensorRT takes as explicit quantization) and stores it under
``$EDGEKIT_HOME/engines/`` keyed by the ONNX file's sha256, the TensorRT version, the GPU's name and the
build mode (:func:`engine_key`); later sessions load it. Inputs and outputs go through CUDA with NVIDIA's
``cuda-python`` bindings (no torch, no pycuda), and each run is timed with CUDA events (``last_gpu_ms``).

On a Jetson the ``tensorrt`` Python package comes with JetPack; on x86 it is the ``tensorrt`` wheel.
Without the package, without ``cuda-python`` or without a CUDA GPU, opening a session says so in one line.
Measured on a GPU only: the machines edgekit is developed on have none (see docs/devices.md).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from edgekit.device.runtime import Runtime, Session, parse_metadata
from edgekit.errors import DataError, MissingDependency

TENSORRT = Runtime(name="tensorrt", format="onnx", module="tensorrt", extra="tensorrt",
                   opener="edgekit.device.runtime.tensorrt:open_tensorrt", preference=200)
MODES = ("fp32", "fp16", "int8")


def engine_key(onnx_sha256: str, trt_version: str, gpu_name: str, mode: str) -> str:
    """The cache key of an engine: everything an engine depends on, and nothing else.

    Example:
        >>> engine_key("ab" * 32, "10.3.0", "Orin (nvgpu)", "int8")[:8]
        'fb829fee'
    """
    if mode not in MODES:
        raise ValueError(f"engine mode {mode!r}: one of {', '.join(MODES)}")
    blob = "\n".join(("edgekit-tensorrt-engine-v1", onnx_sha256, trt_version, gpu_name.strip(), mode))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def engine_path(onnx: Path, key: str, home: str | None = None) -> Path:
    root = Path(home or os.environ.get("EDGEKIT_HOME") or Path.home() / ".config" / "edgekit")
    return root / "engines" / f"{onnx.stem}-{key}.engine"


def mode_of(metadata: dict) -> str:
    """int8 for edgekit's TensorRT-ready int8 file (explicit Q/DQ), fp32 otherwise; EDGEKIT_TENSORRT_MODE overrides."""
    forced = os.environ.get("EDGEKIT_TENSORRT_MODE")
    if forced:
        if forced not in MODES:
            raise DataError(f"EDGEKIT_TENSORRT_MODE={forced}: one of {', '.join(MODES)}")
        return forced
    return "int8" if metadata.get("precision") == "int8_tensorrt" else "fp32"


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.8
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise MissingDependency("runtime 'tensorrt' needs NVIDIA's CUDA bindings: pip install cuda-python "
                                    "(on a Jetson: the version matching JetPack's CUDA)") from None
    return cudart


def _check(result, what: str):
    """cuda-python returns (error, *values); raise on an error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise DataError(f"CUDA {what} failed: {getattr(err, 'name', err)}")
    return values[0] if len(values) == 1 else values


def gpu_name(cudart) -> str:
    """The first CUDA GPU's name; one line when there is none."""
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        raise MissingDependency("runtime 'tensorrt': no CUDA GPU here (TensorRT builds and runs engines on an "
                                "NVIDIA GPU: a Jetson or a CUDA machine); use onnxruntime or litert on this CPU")
    props = _check(cudart.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
    name = props.name
    return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).split("\x00")[0]


def build_engine(trt, onnx: Path, mode: str) -> bytes:
    """Parse the ONNX file and build a serialized engine at ``mode``; the parser's errors in one line."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DataError(f"{onnx}: TensorRT cannot parse it: {errors[:300]}")
    config = builder.create_builder_config()
    if mode in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if mode == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # the Q/DQ nodes carry the scales: no calibrator
    inp = network.get_input(0)
    if any(d < 0 for d in inp.shape):
        profile = builder.create_optimization_profile()
        fixed = tuple(d if d > 0 else 1 for d in inp.shape)
        profile.set_shape(inp.name, fixed, fixed, fixed)
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise DataError(f"{onnx}: TensorRT could not build a {mode} engine (see its log above)")
    return bytes(plan)


class TensorRTSession(Session):
    """One engine, one CUDA stream, device buffers for the input and the first output (batch 1 at a time)."""

    def __init__(self, path: Path, trt, cudart, engine_bytes: bytes, metadata: dict, mode: str, cache: Path):
        self._trt, self._cudart = trt, cudart
        self.mode, self.engine_file = mode, cache
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise DataError(f"{cache}: not an engine this TensorRT can load (delete it to rebuild)")
        self._ctx = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        mode_in = trt.TensorIOMode.INPUT
        self._in = next(n for n in names if self._engine.get_tensor_mode(n) == mode_in)
        self._out = next(n for n in names if self._engine.get_tensor_mode(n) != mode_in)
        shape = tuple(int(d) for d in self._engine.get_tensor_shape(self._in))
        fixed = tuple(d if d > 0 else 1 for d in shape)
        self._ctx.set_input_shape(self._in, fixed)
        self._out_shape = tuple(int(d) for d in self._ctx.get_tensor_shape(self._out))
        self._stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._bufs = {}
        for name, shp in ((self._in, fixed), (self._out, self._out_shape)):
            nbytes = int(np.prod(shp)) * 4
            self._bufs[name] = (_check(cudart.cudaMalloc(nbytes), "cudaMalloc"), nbytes)
            self._ctx.set_tensor_address(name, int(self._bufs[name][0]))
        self._events = (_check(cudart.cudaEventCreate(), "cudaEventCreate"),
                        _check(cudart.cudaEventCreate(), "cudaEventCreate"))
        self.last_gpu_ms: float | None = None
        super().__init__(path, TENSORRT.name, (1, *fixed[1:]), np.float32, metadata)

    def _run(self, x: np.ndarray) -> np.ndarray:
        c = self._cudart
        kind = c.cudaMemcpyKind
        host_in = np.ascontiguousarray(x, np.float32)
        ptr_in, n_in = self._bufs[self._in]
        ptr_out, n_out = self._bufs[self._out]
        out = np.empty(self._out_shape, np.float32)
        _check(c.cudaMemcpyAsync(ptr_in, host_in.ctypes.data, n_in, kind.cudaMemcpyHostToDevice, self._stream),
               "cudaMemcpyAsync")
        _check(c.cudaEventRecord(self._events[0], self._stream), "cudaEventRecord")
        if not self._ctx.execute_async_v3(int(self._stream)):
            raise DataError(f"{self.path}: TensorRT failed to run the engine")
        _check(c.cudaEventRecord(self._events[1], self._stream), "cudaEventRecord")
        _check(c.cudaMemcpyAsync(out.ctypes.data, ptr_out, n_out, kind.cudaMemcpyDeviceToHost, self._stream),
               "cudaMemcpyAsync")
        _check(c.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        self.last_gpu_ms = float(_check(c.cudaEventElapsedTime(*self._events), "cudaEventElapsedTime"))
        return out.reshape(len(x), -1) if out.ndim == 2 else out

    def close(self) -> None:
        c = self._cudart
        for ptr, _ in getattr(self, "_bufs", {}).values():
            c.cudaFree(ptr)
        for ev in getattr(self, "_events", ()):
            c.cudaEventDestroy(ev)
        if getattr(self, "_stream", None) is not None:
            c.cudaStreamDestroy(self._stream)
        self._bufs, self._events, self._stream = {}, (), None


def open_tensorrt(path: Path, *, threads: int = 1) -> TensorRTSession:
    """Open ``path`` on TensorRT: load its cached engine for this GPU, or build and cache one. ``threads`` is
    accepted for the common interface; the GPU does the work."""
    from edgekit import rundir
    from edgekit.device.runtime.onnxrt import embedded_metadata

    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependency("runtime 'tensorrt' needs NVIDIA's TensorRT Python package (JetPack's "
                                "python3-libnvinfer on a Jetson, pip install tensorrt on x86)") from None
    cudart = _cudart()
    gpu = gpu_name(cudart)
    metadata = parse_metadata(embedded_metadata(path.read_bytes(), "edgekit", where=path), where=path)
    mode = mode_of(metadata)
    cache = engine_path(path, engine_key(rundir.sha256(path), trt.__version__, gpu, mode))
    if cache.is_file():
        plan = cache.read_bytes()
    else:
        plan = build_engine(trt, path, mode)
        cache.parent.mkdir(parents=True, exist_ok=True)
        rundir.write_bytes(cache, plan)
    return TensorRTSession(path, trt, cudart, plan, metadata, mode, cache)
