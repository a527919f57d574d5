"""Run an exported model on the device: numpy in, numpy out, one small interface over every runtime.

This package never imports torch. A runtime is imported only when a session is opened on it, so
``pip install edgekit[onnx]`` or ``edgekit[tflite]`` alone is enough to run and time an artifact.

Example:
    >>> from edgekit.device.runtime import open_session
    >>> with open_session("model_int8.tflite", threads=2) as s:
    ...     logits = s.run(x)  # x: float32 (N, ...), batch N
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.device.artifact import METADATA_KEY
from edgekit.errors import DataError, MissingDependency
from edgekit.registry import Registry

SUFFIXES = {".onnx": "onnx", ".tflite": "tflite"}
_TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8 of every .tflite file
# Each module reads its format's embedded metadata with the standard library alone (no runtime needed).
_FORMAT_MODULES = {"onnx": "edgekit.device.runtime.onnxrt", "tflite": "edgekit.device.runtime.tflite"}


@dataclass(frozen=True)
class Runtime:
    """What edgekit knows about one runtime before importing it.

    Attributes:
        name: the name users write (``--runtime litert``).
        format: the file format it runs, "onnx" or "tflite".
        module: the module the runtime is imported from; its package is looked up with ``find_spec``,
            never imported, to tell whether the runtime is installed.
        extra: the pip extra that installs it.
        opener: ``"module:function"`` that opens a session: ``(path, threads) -> Session``.
        preference: lower is tried first when no runtime is named.
    """

    name: str
    format: str
    module: str
    extra: str
    opener: str
    preference: int = 100

    def installed(self) -> bool:
        # The top-level package only: find_spec of "a.b" would import "a" to look inside it.
        try:
            return importlib.util.find_spec(self.module.partition(".")[0]) is not None
        except ValueError:  # a module in sys.modules without a spec (set to None to hide it, say)
            return False


RUNTIMES = Registry("runtime")
RUNTIMES.register("onnxruntime", "edgekit.device.runtime.onnxrt:ONNXRUNTIME")
RUNTIMES.register("litert", "edgekit.device.runtime.tflite:LITERT")
RUNTIMES.register("tflite-runtime", "edgekit.device.runtime.tflite:TFLITE_RUNTIME")
RUNTIMES.register("tensorrt", "edgekit.device.runtime.tensorrt:TENSORRT")  # NVIDIA GPUs; never the default


class Session:
    """An open model. ``run`` takes float32 (N, ...) and returns the first output as float32 (N, ...).

    Attributes:
        path: the model file.
        runtime: the runtime's name.
        input_shape: the model's input shape as stored in the file (NCHW for edgekit's own artifacts,
            NHWC for most foreign .tflite files); a batch of -1 means any batch.
        input_dtype: the input tensor's dtype in the model; ``run`` always takes float32 and
            quantizes when this is an integer type.
        metadata: the "edgekit" metadata in the file, {} when there is none.
    """

    def __init__(self, path: Path, runtime: str, input_shape: tuple[int, ...], input_dtype: np.dtype, metadata: dict):
        self.path = path
        self.runtime = runtime
        self.input_shape = input_shape
        self.input_dtype = np.dtype(input_dtype)
        self.metadata = metadata

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run a batch; a model with a fixed batch of 1 runs it one row at a time.

        Args:
            x: float32 array (N, *input_shape[1:]).

        Returns:
            The first output, float32, with N rows.

        Raises:
            DataError: when ``x`` does not have the model's input shape (after the batch axis).
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        want = tuple(self.input_shape[1:])
        if x.ndim != len(self.input_shape) or not _fits(x.shape[1:], want):
            raise DataError(
                f"{self.path}: input of shape {list(x.shape)} does not fit the model's input "
                f"{list(self.input_shape)} (batch first)"
            )
        if not len(x):
            raise DataError(f"{self.path}: empty input batch")
        batch = self.input_shape[0]
        if batch == len(x) or batch in (-1, None):
            return self._run(x)
        if batch == 1:
            return np.concatenate([self._run(x[i : i + 1]) for i in range(len(x))])
        raise DataError(f"{self.path}: the model takes a fixed batch of {batch}, got {len(x)} rows")

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def inputs(self) -> list[tuple[str, tuple, np.dtype]]:
        """Every input as (name, shape, dtype), in the model's order (dynamic dimensions are -1)."""
        return [("input", tuple(self.input_shape), self.input_dtype)]

    def run_feeds(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one call with every input given by name, each exactly as stored (its own batch axis, if any);
        return every output, in the model's order. For models with several inputs or outputs (a stateful RNN
        takes its state in and gives the new state out).

        Raises:
            DataError: an input is missing or does not fit.
        """
        if len(feeds) != 1:
            raise DataError(f"{self.path}: this runtime session takes one input")
        return [self._run(next(iter(feeds.values())))]

    def close(self) -> None:
        """Release the runtime's session; the object cannot run afterwards."""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Session({str(self.path)!r}, runtime={self.runtime!r}, input_shape={list(self.input_shape)}, "
            f"input_dtype={self.input_dtype.name})"
        )


def _fits(shape: tuple[int, ...], want: tuple[Any, ...]) -> bool:
    return all(not isinstance(w, int) or w < 0 or w == s for s, w in zip(shape, want, strict=True))


def file_format(path: str | Path) -> str:
    """The format of a model file, from its suffix or, failing that, its first bytes.

    Raises:
        DataError: the file is missing, empty or neither ONNX nor TFLite.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such model file")
    if path.stat().st_size < 8:
        raise DataError(f"{path}: truncated ({path.stat().st_size} bytes), not a model file")
    if path.suffix.lower() in SUFFIXES:
        return SUFFIXES[path.suffix.lower()]
    with open(path, "rb") as f:
        if f.read(8)[4:8] == _TFLITE_IDENTIFIER:
            return "tflite"
    raise DataError(f"{path}: unknown model format; expected a .onnx or .tflite file")


def runtimes_for(path: str | Path) -> list[str]:
    """The installed runtimes that can run ``path``, the default one first.

    Args:
        path: an .onnx or .tflite file.

    Returns:
        Runtime names, e.g. ``["litert", "tflite-runtime"]``; empty when none is installed.

    Raises:
        DataError: the file is missing or of an unknown format.
    """
    fmt = file_format(path)
    specs = [RUNTIMES.get(n) for n in RUNTIMES.names()]
    return [s.name for s in sorted(specs, key=lambda s: (s.preference, s.name)) if s.format == fmt and s.installed()]


def open_session(path: str | Path, *, runtime: str | None = None, threads: int = 1) -> Session:
    """Open a model file on a runtime.

    Args:
        path: an .onnx or .tflite file.
        runtime: a name from ``RUNTIMES``; None picks the first installed one for the file's format
            (onnx: onnxruntime; tflite: litert, then tflite-runtime).
        threads: CPU threads the runtime may use for one inference.

    Returns:
        An open Session.

    Raises:
        DataError: the file is missing, truncated or corrupt, or the runtime does not run its format.
        MissingDependency: the runtime (or, with none named, any runtime for the format) is not installed.
        ConfigError: ``runtime`` is not a known name (the message suggests a close match).

    Example:
        >>> s = open_session("runs/mnist/model_int8.tflite", runtime="litert", threads=1)
        >>> s.run(np.zeros((4, *s.input_shape[1:]), np.float32)).shape
        (4, 10)
    """
    path = Path(path)
    fmt = file_format(path)
    if runtime is None:
        names = runtimes_for(path)
        if not names:
            extras = sorted({s.extra for s in map(RUNTIMES.get, RUNTIMES.names()) if s.format == fmt})
            raise MissingDependency(
                f"{path}: running {fmt} files needs a runtime: "
                + " or ".join(f'pip install "edgekit[{e}]"' for e in extras)
            )
        runtime = names[0]
    spec: Runtime = RUNTIMES.get(runtime, where="runtime")
    if spec.format != fmt:
        raise DataError(f"{path}: runtime '{spec.name}' runs {spec.format} files, this is a {fmt} file")
    if not spec.installed():
        raise MissingDependency(
            f"runtime '{spec.name}' needs {spec.module.split('.')[0]}: pip install \"edgekit[{spec.extra}]\""
        )
    module, _, attr = spec.opener.partition(":")
    opener = getattr(importlib.import_module(module), attr)
    return opener(path, threads=int(threads))


def read_metadata(path: str | Path) -> dict:
    """The "edgekit" metadata embedded in an ONNX or TFLite file, without loading a runtime.

    Args:
        path: an .onnx or .tflite file.

    Returns:
        The metadata dict; {} when the file carries none.

    Raises:
        DataError: the file is missing, corrupt, or its metadata is not JSON. Only the structure on the way
            to the metadata (and, for TFLite, every weight buffer's extent) is checked: a file cut short by a
            few bytes can still read here; ``open_session`` runs the runtime's full verifier.
    """
    path = Path(path)
    reader = importlib.import_module(_FORMAT_MODULES[file_format(path)])
    return parse_metadata(reader.embedded_metadata(path.read_bytes(), METADATA_KEY, where=path), where=path)


def parse_metadata(raw: str | bytes | None, *, where: Path) -> dict:
    """Decode the metadata JSON; None gives {}."""
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: the '{METADATA_KEY}' metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{where}: the '{METADATA_KEY}' metadata is a {type(meta).__name__}, expected an object")
    return meta


__all__ = ["RUNTIMES", "Runtime", "Session", "file_format", "open_session", "read_metadata", "runtimes_for"]
