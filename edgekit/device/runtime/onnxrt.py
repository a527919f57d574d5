"""ONNX files on onnxruntime, and the ONNX metadata reader (standard library only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.device.artifact import METADATA_KEY
from edgekit.device.runtime import Runtime, Session, parse_metadata
from edgekit.errors import DataError

ONNXRUNTIME = Runtime(
    "onnxruntime",
    "onnx",
    module="onnxruntime",
    extra="onnx",
    opener="edgekit.device.runtime.onnxrt:open_onnxruntime",
    preference=10,
)

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


class OnnxSession(Session):
    def __init__(self, path: Path, sess):
        inp = sess.get_inputs()[0]
        # Symbolic or unknown dimensions (a dynamic batch) come back as strings or None: report them as -1.
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in inp.shape)
        meta = parse_metadata(sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY), where=path)
        super().__init__(path, ONNXRUNTIME.name, shape, _ORT_DTYPES.get(inp.type, np.float32), meta)
        self._sess, self._input = sess, inp.name
        self._output = sess.get_outputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        out = self._sess.run([self._output], {self._input: x.astype(self.input_dtype, copy=False)})[0]
        return np.asarray(out, dtype=np.float32)

    @property
    def inputs(self) -> list[tuple[str, tuple, np.dtype]]:
        return [(i.name, tuple(d if isinstance(d, int) and d >= 0 else -1 for d in i.shape),
                 np.dtype(_ORT_DTYPES.get(i.type, np.float32))) for i in self._sess.get_inputs()]

    def run_feeds(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        want = self.inputs
        missing = [n for n, _, _ in want if n not in feeds]
        if missing:
            raise DataError(f"{self.path}: no data for input(s) {', '.join(missing)} (the model takes "
                            f"{', '.join(n for n, _, _ in want)})")
        try:
            outs = self._sess.run(None, {n: np.asarray(feeds[n]).astype(dt, copy=False) for n, _, dt in want})
        except Exception as exc:  # a shape or type onnxruntime refuses
            raise DataError(f"{self.path}: onnxruntime refused the inputs: {_first_line(exc)}") from None
        return [np.asarray(o) for o in outs]

    def close(self) -> None:
        self._sess = None


def open_onnxruntime(path: Path, *, threads: int = 1) -> OnnxSession:
    """Open ``path`` on onnxruntime's CPU provider with ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    # One graph node at a time: with parallel execution, threads= no longer bounds the cores used.
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # errors only; ORT warns about unused initializers in quantized graphs
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own pybind exception types (InvalidProtobuf, Fail, ...)
        raise DataError(f"{path}: onnxruntime cannot load it: {_first_line(exc)}") from None
    return OnnxSession(path, sess)


def _first_line(exc: BaseException) -> str:
    from edgekit.errors import first_line

    return first_line(exc)


# ModelProto field numbers (onnx/onnx.proto); the graph is required in every model.
_MODEL_GRAPH, _MODEL_METADATA_PROPS = 7, 14


def embedded_metadata(data: bytes, key: str, *, where: Path) -> str | None:
    """The value of ``key`` in an ONNX file's ``metadata_props``, or None.

    Walks the protobuf wire format of the top-level ModelProto only, so it needs neither ``onnx`` nor
    onnxruntime and skips over the graph without decoding it.

    Raises:
        DataError: the bytes are not an ONNX model or are truncated.
    """
    found, has_graph = None, False
    try:
        for field, value in _fields(data):
            if field == _MODEL_GRAPH:
                has_graph = True
            elif field == _MODEL_METADATA_PROPS and isinstance(value, memoryview):
                entry = {f: bytes(v) for f, v in _fields(value) if isinstance(v, memoryview)}
                if entry.get(1, b"").decode() == key:  # StringStringEntryProto: key = 1, value = 2
                    found = entry.get(2, b"").decode()
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: not a valid ONNX file (truncated or corrupt: {exc})") from None
    if not has_graph:
        raise DataError(f"{where}: not a valid ONNX file (no graph)")
    return found


def _fields(buf: bytes | memoryview):
    """Yield (field number, value) of one protobuf message; length-delimited values as memoryviews."""
    buf = memoryview(buf)
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise IndexError(f"a field of {size} bytes runs past the end of the file")
            value, pos = buf[pos : pos + size], pos + size
        elif wire in (1, 5):
            value, pos = None, pos + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"unexpected wire type {wire}")
        if field == 0 or pos > end:
            raise ValueError("malformed field")
        yield field, value


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
