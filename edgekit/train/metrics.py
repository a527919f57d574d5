"""Per-epoch scalars in the run folder: ``metrics.csv`` always, TensorBoard event files when asked for.

The CSV is rewritten whole, atomically, after every epoch from the history that the resume state also
carries, so after a kill and ``--resume`` it holds each epoch exactly once. Floats are written with
``repr`` (the shortest text that reads back to the same float), so two runs compare exactly.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from edgekit.errors import MissingDependency
from edgekit.rundir import write_text

COLUMNS = ("epoch", "step", "loss", "lr", "val_accuracy", "seconds")


def columns(metric: str = "accuracy") -> tuple[str, ...]:
    """The CSV header: epoch, step (optimizer steps so far), loss, lr, val_<metric>, seconds (of the epoch)."""
    return tuple(f"val_{metric}" if c == "val_accuracy" else c for c in COLUMNS)


def write_csv(path: Path, history: list[dict], metric: str = "accuracy") -> Path:
    """Write ``history`` (one dict per epoch) as CSV, atomically."""
    head = columns(metric)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for row in history:
        w.writerow([repr(row[c]) if isinstance(row.get(c), float) else row.get(c, "") for c in head])
    return write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[dict]:
    """The rows of a metrics.csv, numbers parsed (int where whole, float otherwise)."""
    def num(text: str):
        try:
            return int(text)
        except ValueError:
            return float(text)

    with open(path, newline="") as f:
        return [{k: num(v) for k, v in row.items()} for row in csv.DictReader(f)]


class TensorBoard:
    """Scalars under ``folder`` for TensorBoard; needs the ``tensorboard`` package (not a dependency of edgekit)."""

    def __init__(self, folder: Path):
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise MissingDependency("train.tensorboard needs the tensorboard package: pip install tensorboard "
                                    "(or set train.tensorboard: false; metrics.csv is written either way)")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder))

    def add(self, row: dict, metric: str = "accuracy") -> None:
        step = row["step"]
        self.writer.add_scalar("train/loss", row["loss"], step)
        self.writer.add_scalar("train/lr", row["lr"], step)
        self.writer.add_scalar(f"val/{metric}", row[f"val_{metric}"], step)
        self.writer.add_scalar("time/epoch_seconds", row["seconds"], step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
