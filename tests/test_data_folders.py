"""Real data sets from local folders in their published layouts: CIFAR-10 python batches, an image folder, the
visual wake words folder. Each test writes a small folder of random pixels in the real layout itself."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from edgekit import data
from edgekit.data import cifar10
from edgekit.errors import DataError
from edgekit.recipe import DataSpec

from .conftest import RECIPES, edgekit

cv2 = pytest.importorskip("cv2")

CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def write_cifar(folder, per_batch: int = 12, seed: int = 0):
    """The python version of CIFAR-10: dicts with bytes keys, pickled with protocol 2 as the published files are."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [*cifar10.TRAIN_FILES, cifar10.TEST_FILE]:
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, per_batch).tolist(),
                 b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"num_cases_per_batch": per_batch, b"label_names": CIFAR_NAMES, b"num_vis": 3072}
    (folder / cifar10.META_FILE).write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_images(folder, count: int, size=(20, 24), seed: int = 0, suffix: str = ".png"):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:04d}{suffix}"), rng.integers(0, 256, (*size, 3), dtype=np.uint8))


# ---- CIFAR-10 ------------------------------------------------------------------------------------------------------

def test_cifar10_reads_the_python_batches_as_published(tmp_path):
    root = write_cifar(tmp_path / "cifar-10-batches-py")
    s = data.load(DataSpec(name="cifar10", root=str(tmp_path), val_fraction=0.1))  # the parent folder works too
    assert len(s.train_x) + len(s.val_x) == 60 and s.test_x.shape == (12, 32, 32, 3)
    assert s.labels[0] == "airplane" and s.labels[9] == "truck"
    x, y = s.tensors("train")
    assert x.shape[1:] == (3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    # the rows hold three 32x32 planes: red first
    first = pickle.loads((root / "test_batch").read_bytes())[b"data"][0]
    assert np.array_equal(s.test_x[0][..., 0].ravel(), first[:1024])
    assert np.array_equal(s.test_x[0][..., 2].ravel(), first[2048:])


def test_cifar10_names_every_missing_file_and_the_layout(tmp_path):
    root = write_cifar(tmp_path / "c")
    (root / "data_batch_3").unlink()
    (root / "batches.meta").unlink()
    with pytest.raises(DataError, match="missing data_batch_3, batches.meta .expected data_batch_1, .* test_batch"):
        data.load(DataSpec(name="cifar10", root=str(root)))
    with pytest.raises(DataError, match="CIFAR-10 needs data.root.*never downloads"):
        data.load(DataSpec(name="cifar10"))
    with pytest.raises(DataError, match="CIFAR-10 folder not found"):
        data.load(DataSpec(name="cifar10", root=str(tmp_path / "absent")))


def test_cifar10_batch_with_wrong_content_is_named(tmp_path):
    root = write_cifar(tmp_path / "c")
    (root / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, 2))
    with pytest.raises(DataError, match=r"data_batch_2: expected 'data' as a uint8 array \(N, 3072\)"):
        data.load(DataSpec(name="cifar10", root=str(root)))
    (root / "data_batch_2").write_bytes(b"\x80\x02 truncated")
    with pytest.raises(DataError, match="data_batch_2"):
        data.load(DataSpec(name="cifar10", root=str(root)))


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_pickles_that_would_run_code_are_refused(tmp_path):
    root = write_cifar(tmp_path / "c")
    (root / "test_batch").write_bytes(pickle.dumps({b"data": RunsCode()}, protocol=2))
    with pytest.raises(DataError, match="test_batch: not a CIFAR-10 python batch .refusing to load global posix"):
        data.load(DataSpec(name="cifar10", root=str(root)))


# ---- image folder --------------------------------------------------------------------------------------------------

def test_image_folder_with_train_and_test_trees(tmp_path):
    for split, n in (("train", 6), ("test", 2)):
        write_images(tmp_path / split / "cat", n, seed=1)
        write_images(tmp_path / split / "dog", n, seed=2, suffix=".jpg")
    s = data.load(DataSpec(name="image_folder", root=str(tmp_path), size=[16, 16], val_fraction=0.0))
    assert s.labels == ("cat", "dog") and s.train_x.shape == (12, 16, 16, 3) and s.test_x.shape == (4, 16, 16, 3)
    assert sorted(s.train_y.tolist()) == [0] * 6 + [1] * 6
    x, _ = s.tensors("test")
    assert x.shape == (4, 3, 16, 16)
    assert len(s.preprocess["mean"]) == 3 and all(v > 0 for v in s.preprocess["std"])


def test_image_folder_decodes_rgb_and_resizes_like_the_camera_demo(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 2] = 255  # pure red in OpenCV's BGR order
    (tmp_path / "red").mkdir()
    cv2.imwrite(str(tmp_path / "red" / "a.png"), img)
    (tmp_path / "other").mkdir()
    cv2.imwrite(str(tmp_path / "other" / "b.png"), img)
    s = data.load(DataSpec(name="image_folder", root=str(tmp_path), size=[4, 4], test_fraction=0.0,
                           val_fraction=0.0))
    assert s.train_x.shape == (2, 4, 4, 3) and (s.train_x[..., 0] == 255).all() and (s.train_x[..., 2] == 0).all()
    gray = data.load(DataSpec(name="image_folder", root=str(tmp_path), size=[4, 4], channels=1, test_fraction=0.0,
                              val_fraction=0.0))
    assert gray.train_x.shape == (2, 4, 4) and gray.tensors("train")[0].shape == (2, 1, 4, 4)


def test_single_tree_is_split_per_class_by_seed(tmp_path):
    write_images(tmp_path / "a", 10, seed=1)
    write_images(tmp_path / "b", 20, seed=2)
    spec = DataSpec(name="image_folder", root=str(tmp_path), size=[8, 8], test_fraction=0.2, val_fraction=0.0)
    s = data.load(spec)
    assert np.bincount(s.test_y).tolist() == [2, 4] and np.bincount(s.train_y).tolist() == [8, 16]
    again = data.load(spec)
    assert np.array_equal(s.test_x, again.test_x)  # the same seed holds out the same images
    other = data.load(DataSpec(name="image_folder", root=str(tmp_path), size=[8, 8], test_fraction=0.2, seed=5))
    assert not np.array_equal(s.test_x, other.test_x)


@pytest.mark.parametrize("layout, message", [
    ("no_test", "has train/ but no test/"),
    ("empty_class", "dog: class folder holds no images"),
    ("different_classes", "train/ and test/ have different classes"),
    ("not_an_image", "broken.png: not an image OpenCV can decode"),
    ("no_classes", "no class sub-folders"),
])
def test_image_folder_errors_name_the_path_and_the_expected_layout(tmp_path, layout, message):
    if layout == "no_test":
        write_images(tmp_path / "train" / "cat", 2)
    elif layout == "empty_class":
        write_images(tmp_path / "cat", 2)
        (tmp_path / "dog").mkdir()
    elif layout == "different_classes":
        write_images(tmp_path / "train" / "cat", 2)
        write_images(tmp_path / "test" / "dog", 2)
    elif layout == "not_an_image":
        write_images(tmp_path / "cat", 2)
        (tmp_path / "cat" / "broken.png").write_bytes(b"not a png")
    elif layout == "no_classes":
        write_images(tmp_path, 2)  # images, but no class folders
    with pytest.raises(DataError, match=message):
        data.load(DataSpec(name="image_folder", root=str(tmp_path), size=[8, 8]))


def test_image_folder_needs_a_root_and_a_size(tmp_path):
    with pytest.raises(DataError, match="image_folder needs data.root"):
        data.load(DataSpec(name="image_folder"))
    write_images(tmp_path / "cat", 2)
    with pytest.raises(DataError, match=r"needs data.size, the \[height, width\]"):
        data.load(DataSpec(name="image_folder", root=str(tmp_path)))
    with pytest.raises(DataError, match=r"data.size = \[8\]: expected \[height, width\]"):
        data.load(DataSpec(name="image_folder", root=str(tmp_path), size=[8]))


# ---- visual wake words ---------------------------------------------------------------------------------------------

def write_vww(root, per_class: int = 6):
    write_images(root / "person", per_class, size=(96, 96), seed=1, suffix=".jpg")
    write_images(root / "non_person", per_class, size=(96, 96), seed=2, suffix=".jpg")
    return root


def test_vww_reads_person_and_non_person_at_96x96(tmp_path):
    root = write_vww(tmp_path / "vw_coco2014_96", per_class=10)
    s = data.load(DataSpec(name="vww", root=str(root), test_fraction=0.2, val_fraction=0.0))
    assert s.labels == ("non_person", "person")  # the benchmark's alphabetical label order
    assert s.train_x.shape == (16, 96, 96, 3) and np.bincount(s.test_y).tolist() == [2, 2]
    assert s.input_shape == [1, 3, 96, 96]


def test_vww_missing_folder_is_named_with_a_hint_for_the_parent_folder(tmp_path):
    write_vww(tmp_path / "vw_coco2014_96")
    with pytest.raises(DataError, match="missing non_person/, person/ .*vw_coco2014_96 has them: set data.root"):
        data.load(DataSpec(name="vww", root=str(tmp_path)))
    (tmp_path / "vw_coco2014_96" / "person").rename(tmp_path / "vw_coco2014_96" / "people")
    with pytest.raises(DataError, match=r"missing person/ \(expected person/ and non_person/ .*found non_person/, "
                                        r"people/"):
        data.load(DataSpec(name="vww", root=str(tmp_path / "vw_coco2014_96")))


# ---- the MLPerf Tiny recipes train on these layouts ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("recipe, writer", [("cifar10_resnet8", write_cifar), ("vww_mobilenet025", write_vww)])
def test_mlperf_recipe_trains_from_a_folder_in_the_published_layout(tmp_path, recipe, writer):
    root = writer(tmp_path / "data")
    proc = edgekit("train", str(RECIPES / f"{recipe}.yaml"), "--out", str(tmp_path / "runs"),
                   "--set", f"data.root={root}", "--set", "train.epochs=1", "--set", "train.batch_size=4",
                   "--set", "train.warmup_epochs=0", "--set", "train.threads=1", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((tmp_path / "runs" / recipe).iterdir())
    assert (run / "checkpoints" / "teacher.pt").is_file() and (run / "metrics.csv").is_file()


def test_loaders_import_without_torch():
    """The device side imports edgekit.data without torch (its pre-processing is numpy)."""
    import subprocess
    import sys

    code = ("import sys, edgekit.data.cifar10, edgekit.data.image_folder, edgekit.data.vww, "
            "edgekit.data.machine_sounds, edgekit.data.logmel; assert 'torch' not in sys.modules; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr
