"""scikit-learn's bundled 8x8 handwritten digits (1,797 images): always present, for fast tests."""

from __future__ import annotations

import numpy as np

from edgekit.device import preprocess
from edgekit.errors import require


def load(root: str | None, spec=None):
    """A fixed 80/20 split of the bundled digits, pixels rescaled from 0..16 to 0..255 uint8."""
    datasets = require("sklearn.datasets", extra="train", why="the digits data set")
    bunch = datasets.load_digits()
    x = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(1234).permutation(len(x))
    n_test = len(x) // 5
    test, train = order[:n_test], order[n_test:]
    spec = preprocess.image_spec(size=(8, 8), channels=1, mean=[0.3], std=[0.38])
    labels = tuple(str(i) for i in range(10))
    return x[train], y[train], x[test], y[test], labels, spec
