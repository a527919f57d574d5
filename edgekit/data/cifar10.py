"""CIFAR-10 from its "python version" folder (``cifar-10-python.tar.gz`` extracted: ``cifar-10-batches-py/``).

The batches are pickles of plain dicts: ``b"data"`` a uint8 array (10000, 3072) of R, G and B planes,
``b"labels"`` a list of ints, ``b"batch_label"`` and ``b"filenames"`` bytes; ``batches.meta`` holds
``b"label_names"``. Unpickling can run code, so they are read with an Unpickler that resolves
only the few globals that rebuild a numpy array (and ``_codecs.encode``, for bytes) and refuses
everything else: a tampered file fails with a DataError instead of executing anything.
edgekit never downloads the data set.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from edgekit.device import preprocess
from edgekit.errors import DataError

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
LAYOUT = (f"{', '.join(TRAIN_FILES)}, {TEST_FILE} and {META_FILE} (the python version of CIFAR-10, "
          "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extracted)")
# Per-channel mean and std of the training pixels scaled to [0, 1] (the values the CIFAR-10 literature uses).
MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


def _array_globals() -> dict[tuple[str, str], object]:
    import codecs

    # numpy 2 renamed numpy.core to numpy._core; the published files (pickled in 2009) name numpy.core.
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 pickles of arrays
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    allowed[("_codecs", "encode")] = codecs.encode  # how Python 3 writes bytes into a protocol-2 pickle
    return allowed


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, numbers and numpy arrays; any other global raises UnpicklingError."""

    _allowed = _array_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def read_batch(path: Path) -> dict:
    """One CIFAR batch file as a dict with str keys; DataError naming the file when it is not one."""
    try:
        with open(path, "rb") as f:
            # The files were written by Python 2: its str objects become bytes here.
            raw = ArrayUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{path}: cannot read CIFAR-10 batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(raw).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def find_folder(root: Path) -> Path:
    """``root`` itself or its ``cifar-10-batches-py`` sub-folder, whichever holds the batches."""
    nested = root / "cifar-10-batches-py"
    return nested if not (root / TRAIN_FILES[0]).exists() and nested.is_dir() else root


def _images(batch: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: expected 'data' as a uint8 array (N, 3072), found {type(data).__name__} {shape}")
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels outside 0..9")
    # Stored as three 32x32 planes (R, G, B) per row; Splits keep pixels as (N, H, W, C).
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def load(root: str | None, spec=None):
    """Train (data_batch_1..5) and test (test_batch) pixels, labels, class names and the pre-processing spec.

    Args:
        root: the extracted folder (holding the batch files, or ``cifar-10-batches-py/``).
        spec: the recipe's data section (unused: CIFAR-10 is 32x32 RGB).

    Returns:
        ``(train_x, train_y, test_x, test_y, labels, preprocess)`` with pixels uint8 (N, 32, 32, 3).

    Raises:
        DataError: no root given, a missing folder or file (named, with the expected layout), a malformed batch.
    """
    if not root:
        raise DataError(f"CIFAR-10 needs data.root: the folder holding {LAYOUT}; edgekit never downloads it")
    folder = find_folder(Path(root))
    if not folder.is_dir():
        raise DataError(f"{folder}: CIFAR-10 folder not found (expected {LAYOUT})")
    missing = [n for n in (*TRAIN_FILES, TEST_FILE, META_FILE) if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)} (expected {LAYOUT})")
    parts = [_images(read_batch(folder / n), folder / n) for n in TRAIN_FILES]
    train_x, train_y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    test_x, test_y = _images(read_batch(folder / TEST_FILE), folder / TEST_FILE)
    meta = read_batch(folder / META_FILE)
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DataError(f"{folder / META_FILE}: expected 'label_names', a list of 10 class names")
    labels = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    pre = preprocess.image_spec(size=(32, 32), channels=3, mean=MEAN, std=STD)
    return train_x, train_y, test_x, test_y, labels, pre
