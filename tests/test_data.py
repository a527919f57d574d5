"""Data loaders read the published layouts, fail clearly on broken ones, and keep the test split held out."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from edgekit import data
from edgekit.data.fashion_mnist import load as load_fashion
from edgekit.data.idx import read_idx
from edgekit.errors import DataError
from edgekit.recipe import DataSpec


def write_idx(path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(blob)


@pytest.fixture
def fashion_folder(tmp_path):
    """A miniature Fashion-MNIST in its published IDX layout (mixing .gz and plain files)."""
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (50, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 50))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (20, 28, 28)), compress=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 20), compress=False)
    return tmp_path


def test_fashion_mnist_reads_its_published_layout(fashion_folder):
    splits = data.load(DataSpec(name="fashion_mnist", root=str(fashion_folder), val_fraction=0.2))
    assert splits.train_x.shape == (40, 28, 28) and splits.val_x.shape == (10, 28, 28)
    assert splits.test_x.shape == (20, 28, 28) and len(splits.labels) == 10
    x, y = splits.tensors("test")
    assert x.shape == (20, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64


def test_missing_folder_and_file_are_named(tmp_path, fashion_folder):
    with pytest.raises(DataError, match="Fashion-MNIST folder not found"):
        load_fashion(str(tmp_path / "absent"))
    (fashion_folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        load_fashion(str(fashion_folder))


def test_truncated_and_foreign_idx_files_are_rejected(tmp_path):
    good = tmp_path / "x"
    write_idx(good, np.zeros((3, 4, 4)), compress=False)
    truncated = tmp_path / "t"
    truncated.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(DataError, match="expected 48 bytes"):
        read_idx(truncated)
    foreign = tmp_path / "f"
    foreign.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(foreign)


def test_splits_are_disjoint_and_calibration_comes_from_train():
    splits = data.load(DataSpec(name="digits", val_fraction=0.1))
    rows = lambda a: {r.tobytes() for r in a}  # noqa: E731
    train, val, test = rows(splits.train_x), rows(splits.val_x), rows(splits.test_x)
    # the digits set has a few duplicate images; almost all rows must be unique to one split
    assert len(train & test) <= 3 and len(val & test) <= 3
    calib = splits.calibration(64)
    assert calib.shape == (64, 1, 8, 8)
    all_train = {r.tobytes() for r in splits.tensors("train")[0]}
    assert all(r.tobytes() in all_train for r in calib)


def test_preprocessing_normalizes_like_training():
    splits = data.load(DataSpec(name="digits"))
    x, _ = splits.tensors("train")
    assert abs(float(x.mean())) < 0.1 and 0.8 < float(x.std()) < 1.2
