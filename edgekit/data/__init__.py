"""Data sets, keyed by the names recipes use. Each loader returns :class:`Splits` of raw uint8 pixels.

The test split is held out: nothing trains, selects or calibrates on it. Calibration samples are
drawn from the training split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.registry import Registry

DATASETS = Registry("data set")
DATASETS.register("fashion_mnist", "edgekit.data.fashion_mnist:load")
DATASETS.register("digits", "edgekit.data.digits:load")
DATASETS.register("cifar10", "edgekit.data.cifar10:load")
DATASETS.register("image_folder", "edgekit.data.image_folder:load")
DATASETS.register("vww", "edgekit.data.vww:load")
DATASETS.register("machine_sounds_synthetic", "edgekit.data.machine_sounds:load_synthetic")
DATASETS.register("keywords", "edgekit.data.keywords:load")
DATASETS.register("speech_commands", "edgekit.data.speech_commands:load")

# How raw inputs become model inputs, by the ``kind`` of the pre-processing spec (numpy only: the device uses them).
FEATURES = Registry("pre-processing kind")
FEATURES.register("image", "edgekit.device.preprocess:apply")
FEATURES.register("log_mel", "edgekit.data.logmel:apply")
FEATURES.register("mfcc", "edgekit.device.features:apply")


@dataclass(frozen=True)
class Splits:
    """Raw data for one task: uint8 pixels (N, H, W) or (N, H, W, C), or float32 waveforms (N, samples);
    labels int64 (N,). ``preprocess`` is the spec that turns raw inputs into model inputs (its ``kind``
    names the function in FEATURES)."""

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
        """Model inputs (float32; NCHW for images) and labels of ``split`` ("train", "val" or "test")."""
        x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
        return FEATURES.get(self.preprocess["kind"], where="preprocess.kind")(self.preprocess, x), y

    @property
    def input_shape(self) -> list[int]:
        if self.preprocess["kind"] == "log_mel":  # one window of frames, flattened: (1, frames * mels)
            return [1, self.preprocess["frames"] * self.preprocess["n_mels"]]
        if self.preprocess["kind"] == "mfcc":  # one 1 s clip: (1, 1, frames, coefficients)
            from edgekit.device.features import frames_of

            return [1, 1, frames_of(self.preprocess), self.preprocess["n_mfcc"]]
        c = self.preprocess["channels"]
        h, w = self.preprocess["size"]
        return [1, c, h, w]

    def calibration(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` pre-processed training samples, drawn at random with ``seed`` (never from test)."""
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(self.train_x), size=min(n, len(self.train_x)), replace=False)
        return FEATURES.get(self.preprocess["kind"])(self.preprocess, self.train_x[np.sort(idx)])


def load(spec) -> Splits:
    """Load the data set a recipe's ``data`` section names, split and capped as it says.

    A loader is called as ``loader(root, spec)`` and returns either ``(train_x, train_y, test_x, test_y,
    labels, preprocess)``, split here into train and validation with ``spec.seed``, or finished Splits
    (a data set whose validation split is not a slice of its training split, e.g. normal-only training).

    Raises:
        ConfigError: an unknown data set name.
        DataError: missing or malformed files; the message names the file and the expected layout.
    """
    loader = DATASETS.get(spec.name, where="data.name")
    loaded = loader(spec.root, spec)
    if isinstance(loaded, Splits):
        return _capped(loaded, spec)
    train_x, train_y, test_x, test_y, labels, pre = loaded
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


def _capped(s: Splits, spec) -> Splits:
    import dataclasses

    n_train = spec.limit_train or len(s.train_x)
    n_test = spec.limit_test or len(s.test_x)
    return dataclasses.replace(s, train_x=s.train_x[:n_train], train_y=s.train_y[:n_train],
                               test_x=s.test_x[:n_test], test_y=s.test_y[:n_test])
