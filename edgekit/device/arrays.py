""".npy and .npz files from users, read safely: one reader for every command that takes them.

``np.load(allow_pickle=False)`` alone is not enough for a file from elsewhere: a damaged .npz raises
whatever ``zipfile``/``zlib`` raise (RuntimeError "encrypted", BadZipFile, zlib.error, OSError), and an
.npy header can claim terabytes, which numpy then tries to allocate. Here the header of every array is
read first and checked against the bytes that are really there; Python objects are refused, never
unpickled; every failure is one DataError line naming the file.

Device side: numpy and the standard library.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgekit.errors import DataError, first_line

NPY_FORMAT = np.lib.format
OBJECTS = "holds Python objects, which edgekit does not unpickle; save plain numeric arrays (np.save / np.savez)"


def _header(f, where: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data bytes) from an .npy stream positioned at its start."""
    try:
        version = NPY_FORMAT.read_magic(f)
        reader = {(1, 0): NPY_FORMAT.read_array_header_1_0, (2, 0): NPY_FORMAT.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f"npy format version {version} is not supported")
        shape, _, dtype = reader(f, max_header_size=10_000)
    except Exception as exc:  # noqa: BLE001 - numpy parses the header with ast: SyntaxError, TokenError, ...
        raise DataError(f"{where}: not a valid .npy array ({first_line(exc)[:160]})") from None
    if dtype.hasobject:
        raise DataError(f"{where}: {OBJECTS}")
    count = 1
    for d in shape:
        count *= int(d)
    return tuple(int(d) for d in shape), dtype, count * dtype.itemsize


def read_npy(path: str | Path) -> np.ndarray:
    """The array in an .npy file; DataError (one line, naming the file) for anything else."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        shape, dtype, nbytes = _header(f, str(path))
        if nbytes > size - f.tell():
            raise DataError(f"{path}: truncated: its header says {list(shape)} {dtype} ({nbytes} bytes), the file "
                            f"holds {size - f.tell()}")
    return _load(path)


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array in an .npz file by name, read now; DataError (one line, naming the file) for anything else."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                where = f"{path}[{info.filename}]"
                if not info.filename.endswith(".npy"):
                    continue
                with z.open(info) as f:
                    shape, dtype, nbytes = _header(f, where)
                    if nbytes > info.file_size:
                        raise DataError(f"{where}: its header says {list(shape)} {dtype} ({nbytes} bytes), the "
                                        f"archive holds {info.file_size}")
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile/zlib raise many types on damaged archives
        raise DataError(f"{path}: not a readable .npz archive ({type(exc).__name__}: {first_line(exc)[:160]})") from None
    loaded = _load(path)
    try:
        with loaded as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001 - a member that passed its header check but not its CRC, say
        raise DataError(f"{path}: not a readable .npz archive ({type(exc).__name__}: {first_line(exc)[:160]})") from None


def _load(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy and zipfile report damage with many exception types
        if "allow_pickle" in str(exc):
            raise DataError(f"{path}: {OBJECTS}") from None
        raise DataError(f"{path}: not a numpy .npy/.npz file ({type(exc).__name__}: {first_line(exc)[:160]})") from None


def read_arrays(path: str | Path) -> np.ndarray | dict[str, np.ndarray]:
    """An .npy file's array, or an .npz file's arrays by name (by the file's first bytes, whatever its suffix)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"PK"):
        return read_npz(path)
    if magic == b"\x93NUMPY":
        return read_npy(path)
    raise DataError(f"{path}: not a numpy .npy/.npz file (it starts with {magic!r})")


__all__ = ["read_arrays", "read_npy", "read_npz"]
