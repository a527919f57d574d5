"""Speech Commands v2 from a local folder in its published layout: the 12-class task of MLPerf Tiny KWS.

Layout of ``data.root`` (the extracted ``speech_commands_v0.02.tar.gz``)::

    <word>/<speaker>_nohash_<n>.wav     16 kHz mono 16-bit clips of at most 1 s, one folder per word
    _background_noise_/*.wav            long noise recordings
    validation_list.txt  testing_list.txt   relative paths (``right/bb05582b_nohash_3.wav``) of those splits

Every clip not listed in either file is training data. Labels: the 10 keywords, ``_silence_`` and
``_unknown_`` (all other words). Clips shorter than 1 s are zero-padded at the end. As in the
reference task, ``_unknown_`` is cut at random (``data.seed``) to the size of the largest keyword
class in each split, and ``_silence_`` gets as many 1 s segments of the background recordings
(scaled by a random gain) as one keyword class has; without ``_background_noise_`` it is digital
silence. Pre-processing: the same MFCC front end as the ``keywords`` data set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.data.keywords import CLIP, KEYWORDS, LABELS
from edgekit.device.audio import read_wav
from edgekit.errors import DataError

LISTS = ("validation_list.txt", "testing_list.txt")
NOISE = "_background_noise_"


def _read_list(root: Path, name: str) -> set[str]:
    path = root / name
    if not path.is_file():
        raise DataError(f"{path}: missing; expected the Speech Commands v2 layout in {root}: <word>/*.wav, "
                        f"{NOISE}/, validation_list.txt, testing_list.txt")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def _clip(path: Path) -> np.ndarray:
    x = read_wav(path)[:CLIP]
    return np.pad(x, (0, CLIP - len(x))) if len(x) < CLIP else x


def load(root, spec):
    """Load the 12-class task from ``root``; see the module docstring.

    Raises:
        DataError: ``data.root`` missing, the lists missing, no keyword folders, or a bad WAV (named).
    """
    from edgekit.data import Splits
    from edgekit.device.features import fit_stats, mfcc_spec

    if not root:
        raise DataError("speech_commands: set data.root to the extracted Speech Commands v2 folder")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (data.root of speech_commands)")
    val_list, test_list = (_read_list(root, n) for n in LISTS)
    words = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    if not set(KEYWORDS) & set(words):
        raise DataError(f"{root}: none of the keyword folders ({', '.join(KEYWORDS)}) found")
    files: dict[str, list[tuple[Path, int]]] = {"train": [], "val": [], "test": []}
    for word in words:
        label = KEYWORDS.index(word) if word in KEYWORDS else LABELS.index("_unknown_")
        for wav in sorted((root / word).glob("*.wav")):
            rel = f"{word}/{wav.name}"
            split = "test" if rel in test_list else "val" if rel in val_list else "train"
            files[split].append((wav, label))
    noise = [read_wav(p) for p in sorted((root / NOISE).glob("*.wav"))] if (root / NOISE).is_dir() else []
    rng = np.random.default_rng(spec.seed)
    out = {}
    for split, items in files.items():
        y = np.asarray([lab for _, lab in items], np.int64)
        per_kw = np.bincount(y, minlength=len(LABELS))[: len(KEYWORDS)]
        keep_n = int(per_kw.max()) if per_kw.max() else 0
        unknown = np.flatnonzero(y == LABELS.index("_unknown_"))
        drop = set(rng.permutation(unknown)[keep_n:].tolist()) if len(unknown) > keep_n else set()
        chosen = [it for i, it in enumerate(items) if i not in drop]
        x = [_clip(p) for p, _ in chosen]
        labels = [lab for _, lab in chosen]
        for _ in range(keep_n):
            seg = np.zeros(CLIP, np.float32)
            long = [n for n in noise if len(n) >= CLIP]
            if long:
                src = long[int(rng.integers(len(long)))]
                start = int(rng.integers(0, len(src) - CLIP + 1))
                seg = (src[start: start + CLIP] * rng.uniform(0.0, 1.0)).astype(np.float32)
            x.append(seg)
            labels.append(LABELS.index("_silence_"))
        out[split] = (np.stack(x).astype(np.float32) if x else np.zeros((0, CLIP), np.float32),
                      np.asarray(labels, np.int64))
    if not len(out["train"][0]):
        raise DataError(f"{root}: no training clips (every clip is in validation_list.txt or testing_list.txt?)")
    order = rng.permutation(len(out["train"][0]))
    trx, try_ = out["train"][0][order], out["train"][1][order]
    pre = fit_stats(trx[:2000], mfcc_spec())
    return Splits(name="speech_commands", train_x=trx, train_y=try_, val_x=out["val"][0], val_y=out["val"][1],
                  test_x=out["test"][0], test_y=out["test"][1], labels=LABELS, preprocess=pre)
