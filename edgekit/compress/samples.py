"""Calibration and evaluation data for ``edgekit compress``: images, WAVs, tensors or a recipe's data set.

``DATA`` is one of:

- a folder of images (``*.png|jpg|...``), flat or with one sub-folder per class (then the folder names,
  sorted, are the labels);
- a folder of WAVs, flat or per class, turned into the model input by the model's own pre-processing when
  it carries edgekit metadata, else into raw 1 s waveforms or edgekit's 49x10 MFCC, whichever fits the input;
- an ``.npy`` of model inputs (N, ...), or an ``.npz`` with ``x`` (inputs) and optionally ``y`` (labels);
- a recipe (``recipes/x.yaml``) or a data set name (``dataset:digits``): calibration from its training split,
  evaluation from its test split.

Images are resized to the model's input (area averaging, as the camera demo does), put in its layout
(NCHW or NHWC, read off the input shape) and scaled by the pre-processing: the model's own when it
carries edgekit metadata, otherwise ``scale``/``mean``/``std`` given by the user (default: pixels / 255).
Without labels, agreement with the original model is the metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import ConfigError, DataError, first_line


@dataclass
class Samples:
    """Model inputs (float32, N x input shape) and, when the data has them, integer labels."""

    x: np.ndarray
    y: np.ndarray | None
    source: str
    labels: list[str] | None = None
    note: str = ""
    mirror_axis: int | None = None  # images: the width axis, along which a mirrored sample is still a sample

    def take(self, idx) -> Samples:
        return Samples(self.x[idx], None if self.y is None else self.y[idx], self.source, self.labels, self.note,
                       self.mirror_axis)


@dataclass
class Feeds:
    """Samples for a model with several inputs: for each input name, N samples stacked on a new leading axis.

    Each sample is fed exactly as stored: ``arrays[name][i]`` has the model's input shape with its dynamic
    dimensions filled (its own batch axis included, when the model has one), so state tensors whose batch is
    not the first axis go in untouched.
    """

    arrays: dict[str, np.ndarray]
    y: np.ndarray | None
    source: str
    note: str = ""

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def sample(self, i: int) -> dict[str, np.ndarray]:
        return {k: np.asarray(v[i]) for k, v in self.arrays.items()}

    def take(self, idx) -> Feeds:
        return Feeds({k: v[idx] for k, v in self.arrays.items()}, None if self.y is None else self.y[idx],
                     self.source, self.note)

    def samples(self) -> list[dict[str, np.ndarray]]:
        return [self.sample(i) for i in range(len(self))]


def load_feeds(spec: str, inputs: list[tuple[str, list, str]], *, limit: int | None = None, seed: int = 0) -> Feeds:
    """An .npz whose keys are the model's input names (and optionally ``y``, labels) as :class:`Feeds`.

    Args:
        inputs: the model's inputs as (name, dims with None for dynamic ones, numpy dtype name).

    Raises:
        DataError: not an .npz, a missing input, sample counts that differ, or a sample shape that does not fit.
    """
    path = Path(spec)
    names = [n for n, _, _ in inputs]
    if path.suffix != ".npz" or not path.is_file():
        raise DataError(f"{path}: a model with {len(inputs)} inputs ({', '.join(names)}) needs an .npz with one array "
                        f"per input name, each holding N samples stacked on a new first axis")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable .npz ({first_line(exc)[:160]})") from None
    missing = [n for n in names if n not in arrays]
    if missing:
        raise DataError(f"{path}: no array for input(s) {', '.join(missing)}; the model takes {', '.join(names)}, "
                        f"the file holds {', '.join(arrays) or 'nothing'}")
    out = {}
    for name, dims, dtype in inputs:
        a = arrays[name]
        if a.ndim == len(dims):  # one row per sample, without its batch axis: give it back a batch of 1
            if not dims or dims[0] not in (None, 1):
                raise DataError(f"{path}: '{name}' has shape {list(a.shape)}: expected N samples of shape "
                                f"{_dims(dims)} stacked on a new first axis")
            a = a[:, None]
        if a.ndim != len(dims) + 1 or any(d is not None and d != s for d, s in zip(dims, a.shape[1:], strict=True)):
            raise DataError(f"{path}: '{name}' holds samples of shape {list(a.shape[1:])}, the model's input is "
                            f"{_dims(dims)}")
        if not len(a):
            raise DataError(f"{path}: '{name}' holds no samples")
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            raise DataError(f"{path}: '{name}' holds NaN or infinite values")
        out[name] = a.astype(dtype) if np.dtype(dtype) != a.dtype else a
    counts = {len(v) for v in out.values()}
    if len(counts) != 1:
        raise DataError(f"{path}: the inputs hold different numbers of samples: "
                        + ", ".join(f"{k} {len(v)}" for k, v in out.items()))
    n = counts.pop()
    y = arrays.get("y")
    if y is not None:
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{path}: labels 'y' must be integers of shape ({n},), got {y.dtype} {list(y.shape)}")
        y = y.astype(np.int64)
    feeds = Feeds(out, y, str(path), f"{len(out)} inputs fed per sample as stored ({', '.join(out)})")
    return feeds.take(_pick(n, limit, seed))


def _dims(dims) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


@dataclass(frozen=True)
class Pixels:
    """How pixels become model inputs when the model does not say: x = (pixels * scale - mean) / std."""

    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)


def load(spec: str, *, input_shape: list[int] | None, pixels: Pixels = Pixels(), metadata: dict | None = None,
         split: str = "train", limit: int | None = None, seed: int = 0) -> Samples:
    """Read ``spec`` into model inputs for a model whose input shape (batch first) is ``input_shape``.

    ``input_shape`` may be None for tensors (.npy/.npz, recipes): the data then gives the shape.
    ``split`` picks "train" (calibration) or "test" (evaluation) of a recipe's data set.

    Raises:
        DataError: a missing path, an empty folder, unreadable files, tensors of the wrong shape, labels
            that do not match the inputs; each names the file.
        ConfigError: image data for a model whose input size is unknown.
    """
    text = str(spec)
    if text.startswith("dataset:") or text.endswith((".yaml", ".yml")):
        return _recipe_data(text, split=split, limit=limit, seed=seed)
    path = Path(text)
    if not path.exists():
        raise DataError(f"{path}: data not found (expected a folder of images or WAVs, an .npy/.npz file, "
                        f"a recipe .yaml or dataset:NAME)")
    if path.is_file():
        if path.suffix == ".npy":
            return _limit(_npy(path), limit, seed)
        if path.suffix == ".npz":
            return _limit(_npz(path), limit, seed)
        raise DataError(f"{path}: unsupported data file (expected .npy or .npz, or a folder of images or WAVs)")
    files, labels, names = _listing(path)
    picked = _pick(len(files), limit, seed)
    files, labels = [files[i] for i in picked], (None if labels is None else labels[picked])
    if files[0].suffix.lower() == ".wav":
        x, note = _wavs(files, input_shape, metadata or {})
        return Samples(x, labels, str(path), names, note)
    x, note = _images(files, input_shape, pixels, metadata or {})
    return Samples(x, labels, str(path), names, note, mirror_axis=3 if image_layout(input_shape) == "NCHW" else 2)


def _listing(root: Path) -> tuple[list[Path], np.ndarray | None, list[str] | None]:
    """Files directly in ``root`` (unlabelled), or in its class sub-folders (labelled by sorted folder name)."""
    from edgekit.data.image_folder import IMAGE_SUFFIXES

    suffixes = (*IMAGE_SUFFIXES, ".wav")
    flat = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if flat or not classes:
        if not flat:
            raise DataError(f"{root}: no images or WAVs in it ({', '.join(suffixes)}), nor class sub-folders")
        return _one_kind(root, flat), None, None
    files, labels = [], []
    for i, name in enumerate(classes):
        found = sorted(p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        files += found
        labels += [i] * len(found)
    if not files:
        raise DataError(f"{root}: its class sub-folders ({', '.join(classes[:5])}) hold no images or WAVs")
    return _one_kind(root, files), np.asarray(labels, np.int64), classes


def _one_kind(root: Path, files: list[Path]) -> list[Path]:
    wav = [p.suffix.lower() == ".wav" for p in files]
    if any(wav) and not all(wav):
        raise DataError(f"{root}: mixes WAVs and images; give one kind of data")
    return files


def _pick(n: int, limit: int | None, seed: int) -> np.ndarray:
    if not limit or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _limit(s: Samples, limit: int | None, seed: int) -> Samples:
    return s.take(_pick(len(s.x), limit, seed))


def _npy(path: Path) -> Samples:
    from edgekit.device.arrays import read_npy

    return Samples(_inputs(read_npy(path), path), None, str(path))


def _npz(path: Path) -> Samples:
    from edgekit.device.arrays import read_npz

    arrays = read_npz(path)
    key = next((k for k in ("x", "inputs", "input", "data") if k in arrays), None)
    if key is None:
        raise DataError(f"{path}: no input array: expected a key 'x' (inputs) and optionally 'y' (labels); "
                        f"found {', '.join(arrays) or 'none'}")
    x = _inputs(arrays[key], path)
    y = next((arrays[k] for k in ("y", "labels", "targets") if k in arrays), None)
    if y is not None:
        y = np.asarray(y)
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{path}: labels 'y' must be integers of shape ({len(x)},), got {y.dtype} {list(y.shape)}")
        y = y.astype(np.int64)
    return Samples(x, y, str(path))


def _inputs(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim < 2 or not len(x):
        raise DataError(f"{path}: expected a batch of inputs (N, ...), got shape {list(x.shape)}")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: inputs must be numeric, got {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: inputs hold NaN or infinite values")
    return x


def image_layout(input_shape: list[int]) -> str:
    """"NCHW" or "NHWC", read off a 4-D input shape (channels are 1 or 3); NCHW when both could be."""
    if len(input_shape) != 4:
        raise ConfigError(f"image data needs a model with a 4-D input (N, C, H, W) or (N, H, W, C); "
                          f"this one takes {input_shape}")
    _, a, _, c = input_shape
    if a in (1, 3):
        return "NCHW"
    if c in (1, 3):
        return "NHWC"
    raise ConfigError(f"cannot tell the channel axis of input shape {input_shape} (expected 1 or 3 channels)")


MAX_SIDE = 8192  # pixels per image side a model input may have
MAX_BYTES = 4 * 2**30  # float32 bytes of all the images of one data set in memory


def _images(files: list[Path], input_shape: list[int] | None, pixels: Pixels, metadata: dict) -> tuple[np.ndarray, str]:
    from edgekit.data.image_folder import read_images
    from edgekit.device import preprocess

    if not input_shape or any(d is None for d in input_shape[1:]):
        raise ConfigError(f"{files[0].parent}: images need the model's input size; give --input-shape, "
                          f"e.g. --input-shape 3,32,32")
    layout = image_layout(input_shape)
    c, h, w = input_shape[1:] if layout == "NCHW" else (input_shape[3], *input_shape[1:3])
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise ConfigError(f"{files[0].parent}: an image input of {h}x{w} pixels: each side must be 1 to {MAX_SIDE}")
    need = len(files) * c * h * w * 4
    if need > MAX_BYTES:
        raise ConfigError(f"{files[0].parent}: {len(files)} images at {c}x{h}x{w} take {need / 2**30:.1f} GiB as "
                          f"float32; more than {MAX_BYTES / 2**30:.0f} GiB: use fewer (--calib-samples) or smaller ones")
    raw = read_images(files, size=(h, w), channels=c)
    spec = metadata.get("preprocess") if metadata.get("preprocess", {}).get("kind") == "image" else None
    if spec is None:
        mean = np.resize(np.asarray(pixels.mean, np.float32), c).tolist()
        std = np.resize(np.asarray(pixels.std, np.float32), c).tolist()
        spec = preprocess.image_spec(size=(h, w), channels=c, mean=mean, std=std, scale=pixels.scale)
        note = f"images: pixels x {pixels.scale:.6g}, mean {mean}, std {std}, {layout}"
    else:
        note = "images: the model's own pre-processing (edgekit metadata)"
    x = preprocess.apply(spec, raw)  # NCHW
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return x, note


def _wavs(files: list[Path], input_shape: list[int] | None, metadata: dict) -> tuple[np.ndarray, str]:
    from edgekit.device import audio, features
    spec = metadata.get("preprocess") if metadata.get("preprocess", {}).get("kind") == "mfcc" else None
    clip = spec["clip_samples"] if spec else 16000
    waves = np.zeros((len(files), clip), np.float32)
    for i, f in enumerate(files):
        w = audio.read_wav(f, sample_rate=spec["sample_rate"] if spec else 16000)
        w = w[:clip]
        start = (clip - len(w)) // 2
        waves[i, start: start + len(w)] = w
    if spec:
        x, note = features.apply(spec, waves), "WAVs: the model's own MFCC front end (edgekit metadata)"
    else:
        need = int(np.prod(input_shape[1:])) if input_shape and None not in input_shape[1:] else None
        if need == clip:
            x, note = waves, "WAVs: raw 1 s waveforms at 16 kHz"
        else:
            mf = features.mfcc_spec()
            x = features.apply(mf, waves)
            note = "WAVs: edgekit's 49x10 MFCC front end (unnormalized)"
            if need is not None and need != x[0].size:
                raise DataError(f"{files[0].parent}: WAVs give 1 s clips ({clip} samples, or {x[0].size} MFCC values) "
                                f"but the model takes {input_shape}")
    if input_shape and None not in input_shape[1:]:
        x = x.reshape(len(x), *input_shape[1:])
    return x.astype(np.float32), note


def _recipe_data(text: str, *, split: str, limit: int | None, seed: int) -> Samples:
    from edgekit import data, recipe

    if text.startswith("dataset:"):
        spec = recipe.DataSpec(name=text.split(":", 1)[1])
        where = text
    else:
        spec = recipe.load(text).data
        where = text
    splits = data.load(spec)
    if split == "train":
        x = splits.calibration(limit or 512, seed)
        y = None
    else:
        x, y = splits.tensors("test")
        if limit:
            x, y = x[:limit], y[:limit]
    return Samples(x.astype(np.float32), y, where, list(splits.labels), f"{where}: {split} split")
