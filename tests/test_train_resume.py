"""A training run killed with SIGKILL resumes from its last complete epoch and ends exactly where an uninterrupted
run ends: same metrics.csv (except wall time), same best accuracy, same weights."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgekit.models import read_checkpoint
from edgekit.rundir import stage_summary
from edgekit.train.metrics import read_csv

from .conftest import RECIPES, ROOT, edgekit

pytestmark = pytest.mark.slow

# Enough epochs that the kill lands mid-run; one torch thread: as fast as two on this shared 2-core machine,
# and the same thread count in every run keeps the CPU kernels' summation order, so results match bit for bit.
SETTINGS = ["--set", "train.epochs=12", "--set", "train.threads=1"]


def train_args(out: Path) -> list[str]:
    return ["train", str(RECIPES / "digits_resnet8.yaml"), "--out", str(out), *SETTINGS]


def the_run(out: Path) -> Path:
    (run,) = list((out / "digits_resnet8").iterdir())
    return run


def without_wall_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_kill_9_then_resume_ends_exactly_like_an_uninterrupted_run(tmp_path):
    straight = edgekit(*train_args(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-2000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", *train_args(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # An epoch writes its resume state, then its CSV row: wait for both before the kill.
    while not (list(out.glob("digits_resnet8/*/checkpoints/train.state")) and list(out.glob("digits_resnet8/*/metrics.csv"))):
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before its first checkpoint"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = the_run(out)
    rows_before_kill = len(read_csv(run / "metrics.csv"))
    assert 1 <= rows_before_kill < 12, "the kill must land mid-run"
    assert not (run / "checkpoints" / "teacher.pt").exists()

    resumed = edgekit(*train_args(out), "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    done = re.search(r"resuming after epoch (\d+) of 12", resumed.stderr)
    # The kill may land between an epoch's state and its CSV row; the resumed run rewrites the CSV from the state.
    assert done and int(done[1]) in (rows_before_kill, rows_before_kill + 1), resumed.stderr[-2000:]

    reference = the_run(tmp_path / "straight")
    rows, expected = read_csv(run / "metrics.csv"), read_csv(reference / "metrics.csv")
    assert [r["epoch"] for r in rows] == list(range(1, 13))  # each epoch once, none lost or repeated
    assert without_wall_time(rows) == without_wall_time(expected)
    assert stage_summary(run, "train")["val_accuracy"] == stage_summary(reference, "train")["val_accuracy"]
    a = read_checkpoint(run / "checkpoints" / "teacher.pt")["state_dict"]
    b = read_checkpoint(reference / "checkpoints" / "teacher.pt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
