"""Data sets, keyed by the names recipes use. Each loader returns :class:`Splits` of raw uint8 pixels.

The test split is held out: nothing trains, selects or calibrates on it. Calibration samples are
drawn from the training split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit import preprocess
from edgekit.registry import Registry

DATASETS = Registry("data set")
DATASETS.register("fashion_mnist", "edgekit.data.fashion_mnist:load")
DATASETS.register("digits", "edgekit.data.digits:load")


@dataclass(frozen=True)
class Splits:
    """Raw data for one task. Pixels are uint8 (N, H, W) or (N, H, W, C); labels int64 (N,)."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    labels: tuple[str, ...]
    preprocess: dict

    def tensors(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Pre-processed float32 NCHW inputs and labels of ``split`` ("train", "val" or "test")."""
        x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
        return preprocess.apply(self.preprocess, x), y

    @property
    def input_shape(self) -> list[int]:
        c = self.preprocess["channels"]
        h, w = self.preprocess["size"]
        return [1, c, h, w]

    def calibration(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` pre-processed training samples, drawn at random with ``seed`` (never from test)."""
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(self.train_x), size=min(n, len(self.train_x)), replace=False)
        return preprocess.apply(self.preprocess, self.train_x[np.sort(idx)])


def load(spec) -> Splits:
    """Load the data set a recipe's ``data`` section names, split and capped as it says."""
    loader = DATASETS.get(spec.name, where="data.name")
    train_x, train_y, test_x, test_y, labels, pre = loader(spec.root)
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(len(train_x))
    n_val = int(round(len(train_x) * spec.val_fraction))
    val_idx, tr_idx = order[:n_val], order[n_val:]
    if spec.limit_train:
        tr_idx = tr_idx[: spec.limit_train]
    if spec.limit_test:
        test_x, test_y = test_x[: spec.limit_test], test_y[: spec.limit_test]
    return Splits(
        name=spec.name,
        train_x=train_x[tr_idx], train_y=train_y[tr_idx],
        val_x=train_x[val_idx], val_y=train_y[val_idx],
        test_x=test_x, test_y=test_y,
        labels=tuple(labels), preprocess=pre,
    )
