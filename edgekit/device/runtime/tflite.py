"""TFLite files on LiteRT (ai-edge-litert) or the legacy tflite-runtime, and the TFLite metadata reader.

Quantized inputs and outputs (int8/uint8 tensors, as in the MLPerf Tiny reference models and
edgekit's own full-int8 files) are handled here: ``run`` takes float32, quantizes it with the
input tensor's scale and zero point, and dequantizes the output back to float32.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from edgekit.device.artifact import METADATA_KEY
from edgekit.device.runtime import Runtime, Session, parse_metadata
from edgekit.errors import DataError, first_line

LITERT = Runtime(
    "litert",
    "tflite",
    module="ai_edge_litert.interpreter",
    extra="tflite",
    opener="edgekit.device.runtime.tflite:open_litert",
    preference=20,
)
# tflite-runtime 2.14 (2023, the last release) needs numpy<2 and is ~4x slower than LiteRT on int8.
# TRAP (measured on this project's machine, see DESIGN.md): on a dynamic-range model (int8 weights, float
# activations) tflite-runtime returns the SAME output for every input and raises nothing. edgekit exports
# no dynamic-range TFLite, but a foreign file may be one: verify on it (edgekit verify) before trusting it.
TFLITE_RUNTIME = Runtime(
    "tflite-runtime",
    "tflite",
    module="tflite_runtime.interpreter",
    extra="tflite-legacy",
    opener="edgekit.device.runtime.tflite:open_tflite_runtime",
    preference=30,
)


class TfliteSession(Session):
    def __init__(self, path: Path, runtime: str, interpreter, metadata: dict):
        self._it = interpreter
        inp = interpreter.get_input_details()[0]
        self._in, self._out = inp["index"], interpreter.get_output_details()[0]["index"]
        signature = inp.get("shape_signature")
        shape = tuple(int(d) for d in (signature if signature is not None and len(signature) else inp["shape"]))
        self._batch = int(inp["shape"][0])  # the batch the tensors are allocated for now
        super().__init__(path, runtime, shape, inp["dtype"], metadata)
        self._in_q = _qparams(inp)
        self._out_q = _qparams(interpreter.get_output_details()[0])

    def _run(self, x: np.ndarray) -> np.ndarray:
        # Only a model with a dynamic batch (shape_signature -1, as Keras-converted files have) gets here
        # with another batch size: resize once per new size, or fall back to one row at a time when the
        # graph cannot be resized (a reshape with a constant batch, say).
        if len(x) != self._batch and not self._resize(len(x)):
            return np.concatenate([self._invoke(x[i : i + 1]) for i in range(len(x))])
        return self._invoke(x)

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        self._it.set_tensor(self._in, _quantize(x, self.input_dtype, self._in_q))
        self._it.invoke()
        return _dequantize(self._it.get_tensor(self._out), self._out_q)

    def _resize(self, n: int) -> bool:
        rest = list(self.input_shape[1:])
        try:
            self._it.resize_tensor_input(self._in, [n, *rest], strict=True)
            self._it.allocate_tensors()
        except (RuntimeError, ValueError):
            self._it.resize_tensor_input(self._in, [1, *rest], strict=True)
            self._it.allocate_tensors()
            self._batch = 1
            self.input_shape = (1, *rest)  # fixed from now on: Session.run loops over rows
            return False
        self._batch = n
        return True

    @property
    def inputs(self) -> list[tuple[str, tuple, np.dtype]]:
        details = self._it.get_input_details()
        names = (self.metadata.get("input") or {}).get("names") or []
        out = []
        for i, d in enumerate(details):
            sig = d.get("shape_signature")
            shape = tuple(int(v) for v in (sig if sig is not None and len(sig) else d["shape"]))
            out.append((names[i] if i < len(names) else d["name"], shape, np.dtype(d["dtype"])))
        return out

    def run_feeds(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Inputs are matched by the names the edgekit metadata records (the ONNX names, in order) or the file's
        own; outputs come back in the order of the file's output tensors, dequantized when integer."""
        details = self._it.get_input_details()
        names = [n for n, _, _ in self.inputs]
        missing = [n for n in names if n not in feeds]
        if missing:
            raise DataError(f"{self.path}: no data for input(s) {', '.join(missing)} (the model takes "
                            f"{', '.join(names)})")
        for d, name in zip(details, names, strict=True):
            x = np.asarray(feeds[name])
            if tuple(x.shape) != tuple(int(v) for v in d["shape"]):
                self._it.resize_tensor_input(d["index"], list(x.shape), strict=False)
                self._it.allocate_tensors()
            self._it.set_tensor(d["index"], _quantize(x.astype(np.float32) if np.issubdtype(d["dtype"], np.integer)
                                                      and _qparams(d) else x, d["dtype"], _qparams(d)))
        self._it.invoke()
        return [_dequantize(self._it.get_tensor(o["index"]), _qparams(o)) if _qparams(o) or
                np.issubdtype(o["dtype"], np.floating) else np.asarray(self._it.get_tensor(o["index"]))
                for o in self._it.get_output_details()]

    def close(self) -> None:
        self._it = None


def _qparams(detail: dict) -> tuple[float, int] | None:
    """(scale, zero point) of an integer tensor, None for a float one (or an unquantized integer one)."""
    scale, zero = detail.get("quantization", (0.0, 0))
    if not np.issubdtype(detail["dtype"], np.integer) or not scale:
        return None
    return float(scale), int(zero)


def _quantize(x: np.ndarray, dtype: np.dtype, q: tuple[float, int] | None) -> np.ndarray:
    if q is None:
        return x.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / q[0]) + q[1], info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, q: tuple[float, int] | None) -> np.ndarray:
    if q is None:
        return np.asarray(y, dtype=np.float32)
    return ((y.astype(np.float32) - q[1]) * q[0]).astype(np.float32)


def _open(path: Path, runtime: str, interpreter_cls, threads: int) -> TfliteSession:
    data = path.read_bytes()
    meta = parse_metadata(embedded_metadata(data, METADATA_KEY, where=path), where=path)
    try:
        it = interpreter_cls(model_path=str(path), num_threads=threads)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise DataError(f"{path}: {runtime} cannot load it: {first_line(exc)}") from None
    return TfliteSession(path, runtime, it, meta)


def open_litert(path: Path, *, threads: int = 1) -> TfliteSession:
    """Open ``path`` on ai-edge-litert's interpreter (XNNPACK on CPU) with ``threads`` threads."""
    from ai_edge_litert.interpreter import Interpreter

    return _open(path, LITERT.name, Interpreter, threads)


def open_tflite_runtime(path: Path, *, threads: int = 1) -> TfliteSession:
    """Open ``path`` on the legacy tflite-runtime interpreter (see the trap noted at TFLITE_RUNTIME)."""
    from tflite_runtime.interpreter import Interpreter

    return _open(path, TFLITE_RUNTIME.name, Interpreter, threads)


# TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs) field indices used below.
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


def embedded_metadata(data: bytes, key: str, *, where: Path) -> bytes | None:
    """The bytes of the ``Model.metadata`` entry named ``key`` in a .tflite flatbuffer, or None.

    A few dozen lines of flatbuffer reading, so the device side needs no schema package.
    Buffers stored outside the flatbuffer (``offset``/``size``, used by ai-edge-quantizer for
    models over 256 KB) are read from the file.

    Raises:
        DataError: the bytes are not a TFLite flatbuffer or are truncated.
    """
    fb = _Flatbuffer(data)
    try:
        if data[4:8] != b"TFL3":
            raise ValueError("no TFL3 file identifier")
        model = fb.root()
        buffers = fb.vector(model, _MODEL_BUFFERS)
        # Bounds-check every buffer: weights fill most of the file, so this is what notices a truncated one.
        blobs = [_buffer(fb, fb.table_at(buffers, i), len(data)) for i in range(buffers[1])]
        for entry in fb.tables(model, _MODEL_METADATA):
            if fb.string(entry, _METADATA_NAME) == key:
                start, end = blobs[fb.scalar(entry, _METADATA_BUFFER, "<I")]
                return bytes(data[start:end])
        return None
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: not a valid TFLite file (truncated or corrupt: {exc})") from None


_MODEL_SUBGRAPHS = 2
_SUBGRAPH_TENSORS, _SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS = 0, 1, 2
_TENSOR_SHAPE, _TENSOR_TYPE, _TENSOR_NAME, _TENSOR_QUANTIZATION = 0, 1, 3, 4
_QUANT_SCALE, _QUANT_ZERO_POINT = 2, 3
TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8"}


def io_tensors(data: bytes, *, where: Path) -> dict[str, list[dict]]:
    """The first subgraph's input and output tensors: name, type, shape and (per-tensor) scale and zero point.

    What a runtime without quantization details needs to feed a full-int8 file float data as ``run`` does here:
    LiteRT.js in the browser reports a tensor's type and shape but not its scale (``edgekit demo web`` sends
    these to the page). ``scale`` is None for a float tensor.

    Raises:
        DataError: the bytes are not a TFLite flatbuffer or are truncated.
    """
    fb = _Flatbuffer(data)
    try:
        if data[4:8] != b"TFL3":
            raise ValueError("no TFL3 file identifier")
        graph = fb.tables(fb.root(), _MODEL_SUBGRAPHS)[0]
        tensors = fb.vector(graph, _SUBGRAPH_TENSORS)

        def describe(i: int) -> dict:
            t = fb.table_at(tensors, i)
            q = fb._field(t, _TENSOR_QUANTIZATION)
            scale = zero = None
            if q:
                q = q + fb._u32(q)
                scales, zeros = fb.numbers(q, _QUANT_SCALE, "<f"), fb.numbers(q, _QUANT_ZERO_POINT, "<q")
                if scales:
                    scale, zero = float(scales[0]), int(zeros[0]) if zeros else 0
            kind = fb.scalar(t, _TENSOR_TYPE, "<b")
            return {"name": fb.string(t, _TENSOR_NAME), "type": TENSOR_TYPES.get(kind, f"type {kind}"),
                    "shape": fb.numbers(t, _TENSOR_SHAPE, "<i"), "scale": scale, "zero_point": zero}

        return {"inputs": [describe(i) for i in fb.numbers(graph, _SUBGRAPH_INPUTS, "<i")],
                "outputs": [describe(i) for i in fb.numbers(graph, _SUBGRAPH_OUTPUTS, "<i")]}
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: not a valid TFLite file (truncated or corrupt: {exc})") from None


def _buffer(fb: _Flatbuffer, buffer: int, file_size: int) -> tuple[int, int]:
    """(start, end) of a Buffer's bytes in the file, inline or at its ``offset``."""
    offset, size = fb.scalar(buffer, _BUFFER_OFFSET, "<Q"), fb.scalar(buffer, _BUFFER_SIZE, "<Q")
    start, size = (offset, size) if offset > 1 else fb.vector(buffer, _BUFFER_DATA)
    if start + size > file_size:
        raise ValueError("a buffer runs past the end of the file")
    return start, start + size


class _Flatbuffer:
    """Bounds-checked reads of flatbuffer tables, vectors and strings."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)

    def _read(self, fmt: str, pos: int) -> int:
        # struct counts a negative offset from the end: refuse it rather than read the wrong bytes.
        if pos < 0 or pos + struct.calcsize(fmt) > len(self.data):
            raise IndexError(f"offset {pos} outside the file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def _u32(self, pos: int) -> int:
        return self._read("<I", pos)

    def root(self) -> int:
        return self._u32(0)

    def _field(self, table: int, index: int) -> int:
        """Absolute position of a table field, 0 when the field is absent."""
        vtable = table - self._read("<i", table)
        vsize = self._read("<H", vtable)
        slot = 4 + 2 * index
        if slot + 2 > vsize:
            return 0
        rel = self._read("<H", vtable + slot)
        return table + rel if rel else 0

    def scalar(self, table: int, index: int, fmt: str) -> int:
        pos = self._field(table, index)
        return self._read(fmt, pos) if pos else 0

    def vector(self, table: int, index: int) -> tuple[int, int]:
        """(position of the first element, length), (0, 0) when absent."""
        pos = self._field(table, index)
        if not pos:
            return 0, 0
        start = pos + self._u32(pos)
        n = self._u32(start)
        return start + 4, n

    def table_at(self, vec: tuple[int, int], i: int) -> int:
        start, n = vec
        if not 0 <= i < n:
            raise IndexError(f"index {i} outside a vector of {n}")
        pos = start + 4 * i
        return pos + self._u32(pos)

    def tables(self, table: int, index: int) -> list[int]:
        vec = self.vector(table, index)
        return [self.table_at(vec, i) for i in range(vec[1])]

    def blob(self, table: int, index: int) -> bytes:
        start, n = self.vector(table, index)
        if start + n > len(self.data):
            raise IndexError("a vector runs past the end of the file")
        return bytes(self.data[start : start + n])

    def numbers(self, table: int, index: int, fmt: str) -> list:
        """A vector of scalars (``fmt`` one struct code, e.g. "<i"), [] when absent."""
        start, n = self.vector(table, index)
        size = struct.calcsize(fmt)
        return [self._read(fmt, start + size * i) for i in range(n)]

    def string(self, table: int, index: int) -> str:
        return self.blob(table, index).decode("utf-8")
