"""Fashion-MNIST from its IDX files (Zalando's published layout; Debian package dataset-fashion-mnist)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.data.idx import find, read_idx
from edgekit.device import preprocess
from edgekit.errors import DataError

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
LABELS = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
# Mean and std of the training pixels after scaling to [0, 1].
MEAN, STD = 0.2860, 0.3530


def load(root: str | None, spec=None):
    """Return train/test pixels and labels, the class names and the pre-processing spec."""
    folder = Path(root) if root else DEFAULT_ROOT
    if not folder.is_dir():
        hint = " (install the Debian package dataset-fashion-mnist: make setup)" if not root else ""
        raise DataError(f"{folder}: Fashion-MNIST folder not found{hint}")
    arrays = [read_idx(find(folder, stem)) for stem in
              ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    train_x, train_y, test_x, test_y = arrays
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if x.ndim != 3 or x.shape[1:] != (28, 28) or len(x) != len(y):
            raise DataError(f"{folder}: {split} images {x.shape} and labels {y.shape} do not match 28x28 Fashion-MNIST")
        if y.size and (y.min() < 0 or y.max() >= len(LABELS)):
            raise DataError(f"{folder}: {split} labels outside 0..9")
    spec = preprocess.image_spec(size=(28, 28), channels=1, mean=[MEAN], std=[STD])
    return train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64), LABELS, spec
