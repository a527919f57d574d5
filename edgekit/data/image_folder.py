"""An image folder: one sub-folder per class, with ``train/`` and ``test/`` trees or a single tree split by seed.

::

    root/train/<class>/*.png|jpg|...      root/<class>/*.png|jpg|...
    root/test/<class>/*.png|jpg|...       (test_fraction of each class held out, by data.seed)

Classes are the sub-folder names in sorted order (label i = i-th name). Images are decoded with OpenCV
by ``data.workers`` threads (``cv2.imdecode`` releases the GIL), converted to RGB or grayscale
(``data.channels``) and resized to ``data.size`` with area averaging, as the camera demo does on the
device, so a model sees the same pixels in training and in deployment.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgekit.device import preprocess
from edgekit.errors import DataError, require

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
STATS_SAMPLES = 2000  # training images the normalization mean and std are measured on


def list_images(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name (the order is part of the split's seed)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def class_folders(tree: Path) -> list[str]:
    """The class sub-folders of ``tree`` (hidden ones skipped), sorted."""
    return sorted(p.name for p in tree.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_image(path: Path, *, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as uint8 (H, W) for 1 channel or (H, W, 3) RGB, resized to ``size`` = (H, W)."""
    cv2 = require("cv2", extra="camera", why="reading image folders")
    try:
        blob = np.fromfile(path, dtype=np.uint8)  # imdecode takes any path; imread fails on some names
    except OSError as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from None
    img = cv2.imdecode(blob, cv2.IMREAD_COLOR) if blob.size else None  # BGR, as a camera frame arrives
    if img is None:
        raise DataError(f"{path}: not an image OpenCV can decode")
    from edgekit.device.preprocess import to_pixels

    return to_pixels(img, size=size, channels=channels)


def read_images(paths: Sequence[Path], *, size: tuple[int, int], channels: int, workers: int = 4) -> np.ndarray:
    """Decode ``paths`` in parallel into one uint8 array (N, H, W) or (N, H, W, 3)."""
    h, w = size
    shape = (len(paths), h, w) if channels == 1 else (len(paths), h, w, 3)
    out = np.empty(shape, np.uint8)

    def one(i: int) -> None:
        out[i] = read_image(paths[i], size=size, channels=channels)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, range(len(paths))))  # list() re-raises the first DataError
    return out


def _files(tree: Path, classes: Sequence[str]) -> tuple[list[Path], np.ndarray]:
    paths, labels = [], []
    for i, name in enumerate(classes):
        folder = tree / name
        if not folder.is_dir():
            raise DataError(f"{tree}: missing class folder {name}/ (expected one sub-folder per class: "
                            f"{', '.join(classes)})")
        found = list_images(folder)
        if not found:
            raise DataError(f"{folder}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        paths += found
        labels += [i] * len(found)
    return paths, np.asarray(labels, np.int64)


def _split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of train and test: ``fraction`` of every class held out, chosen with ``seed``."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def size_of(spec, default: tuple[int, int] | None, what: str) -> tuple[int, int]:
    size = getattr(spec, "size", None) or default
    if size is None:
        raise DataError(f"{what} needs data.size, the [height, width] images are resized to, e.g. --set "
                        f"data.size=[64,64]")
    if (not isinstance(size, list | tuple) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise DataError(f"data.size = {size!r}: expected [height, width] in pixels, e.g. [96, 96]")
    return int(size[0]), int(size[1])


def load_tree(root: str | Path, *, classes: Sequence[str] | None = None, size: tuple[int, int], channels: int,
              test_fraction: float = 0.1, seed: int = 0, workers: int = 4, what: str = "image folder"):
    """Read a class-per-folder tree (with train/ and test/, or one tree split by ``seed``).

    Args:
        root: the folder.
        classes: the class folders that must exist, in label order; None = every sub-folder, sorted.
        size: (H, W) every image is resized to.
        channels: 1 (grayscale) or 3 (RGB).
        test_fraction: of each class held out as test when there is no test/ tree.
        seed: of that split.
        workers: decoding threads.
        what: the data set's name in error messages.

    Returns:
        ``(train_x, train_y, test_x, test_y, labels, preprocess)``; pixels uint8 (N, H, W[, 3]).

    Raises:
        DataError: a missing folder, a missing or empty class folder, train/ and test/ with different
            classes, an unreadable image; each names the path and the layout expected.
    """
    root = Path(root)
    if channels not in (1, 3):
        raise DataError(f"data.channels = {channels}: {what} images are read as 1 (grayscale) or 3 (RGB) channels")
    if not root.is_dir():
        raise DataError(f"{root}: {what} folder not found (expected {_layout(classes)})")
    train_tree, test_tree = root / "train", root / "test"
    if train_tree.is_dir() != test_tree.is_dir():
        have, lack = ("train", "test") if train_tree.is_dir() else ("test", "train")
        raise DataError(f"{root}: has {have}/ but no {lack}/ (expected both, each with one sub-folder per class, "
                        f"or a single tree of class folders)")
    if train_tree.is_dir():
        names = list(classes) if classes else class_folders(train_tree)
        if not names:
            raise DataError(f"{train_tree}: no class sub-folders (expected {_layout(classes)})")
        test_names = class_folders(test_tree)
        if not classes and test_names != names:
            raise DataError(f"{root}: train/ and test/ have different classes: train {names}, test {test_names}")
        train_paths, train_y = _files(train_tree, names)
        test_paths, test_y = _files(test_tree, names)
    else:
        names = list(classes) if classes else class_folders(root)
        if not names:
            raise DataError(f"{root}: no class sub-folders (expected {_layout(classes)})")
        paths, y = _files(root, names)
        tr, te = _split(y, test_fraction, seed)
        train_paths, train_y = [paths[i] for i in tr], y[tr]
        test_paths, test_y = [paths[i] for i in te], y[te]
    train_x = read_images(train_paths, size=size, channels=channels, workers=workers)
    test_x = read_images(test_paths, size=size, channels=channels, workers=workers)
    mean, std = _stats(train_x, channels)
    pre = preprocess.image_spec(size=size, channels=channels, mean=mean, std=std)
    return train_x, train_y, test_x, test_y, tuple(names), pre


def _stats(x: np.ndarray, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (a sample of) the training pixels scaled to [0, 1], rounded for the manifest."""
    sample = x[:STATS_SAMPLES].reshape(-1, channels).astype(np.float64) / 255
    if not len(sample):
        return [0.5] * channels, [0.25] * channels
    std = np.maximum(sample.std(0), 1e-3)  # a constant channel must not divide by zero
    return [round(float(v), 4) for v in sample.mean(0)], [round(float(v), 4) for v in std]


def _layout(classes: Sequence[str] | None) -> str:
    sub = "/, ".join(classes) + "/" if classes else "<class>/"
    return f"sub-folders {sub} of images, directly or under train/ and test/"


def load(root: str | None, spec=None):
    """The ``image_folder`` data set: ``data.root`` (required), ``data.size`` (required), ``data.channels``
    (default 3), ``data.test_fraction``, ``data.seed``, ``data.workers``. See :func:`load_tree`."""
    if not root:
        raise DataError("image_folder needs data.root: a folder with one sub-folder of images per class "
                        "(directly, or under train/ and test/)")
    return load_tree(root, size=size_of(spec, None, "image_folder"), channels=getattr(spec, "channels", None) or 3,
                     test_fraction=getattr(spec, "test_fraction", 0.1), seed=getattr(spec, "seed", 0),
                     workers=getattr(spec, "workers", 4))
