"""Visual wake words: person / no person, from the COCO-derived folder of the MLPerf Tiny benchmark.

The MLPerf Tiny VWW training set (``vw_coco2014_96``, built from COCO 2014 by the benchmark's
``buildPersonDetectionDatabase`` script) is two folders of 96x96 images::

    root/person/*.jpg
    root/non_person/*.jpg

(``train/`` and ``test/`` trees with the same two folders are read too.) Labels follow the
benchmark's alphabetical order: 0 = non_person, 1 = person. Without a test/ tree,
``data.test_fraction`` of each class is held out by ``data.seed``.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.data.image_folder import class_folders, load_tree, size_of
from edgekit.errors import DataError

CLASSES = ("non_person", "person")
SIZE = (96, 96)


def load(root: str | None, spec=None):
    """The ``vww`` data set; ``data.size`` defaults to 96x96 and ``data.channels`` to 3 (RGB).

    Raises:
        DataError: no root, or a folder without person/ and non_person/ (naming what was found instead).
    """
    layout = "person/ and non_person/ sub-folders of images (the MLPerf Tiny vw_coco2014_96 layout)"
    if not root:
        raise DataError(f"vww needs data.root: the folder with {layout}")
    folder = Path(root)
    if folder.is_dir():
        tree = folder / "train" if (folder / "train").is_dir() else folder
        found = class_folders(tree)
        missing = [c for c in CLASSES if c not in found]
        if missing:
            hint = ""
            nested = [d for d in found if all((tree / d / c).is_dir() for c in CLASSES)]
            if nested:
                hint = f"; {tree / nested[0]} has them: set data.root to it"
            raise DataError(f"{tree}: missing {', '.join(m + '/' for m in missing)} (expected {layout}; found "
                            f"{', '.join(d + '/' for d in found) or 'no sub-folders'}){hint}")
    return load_tree(folder, classes=CLASSES, size=size_of(spec, SIZE, "vww"),
                     channels=getattr(spec, "channels", None) or 3, test_fraction=getattr(spec, "test_fraction", 0.1),
                     seed=getattr(spec, "seed", 0), workers=getattr(spec, "workers", 4), what="visual wake words")
