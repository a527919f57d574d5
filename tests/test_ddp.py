"""Several processes through torchrun: DistributedDataParallel on the CPU with Gloo, as CI runs it.

Two processes train the digits recipe; rank 0 alone writes one run folder with one checkpoint, and the
model is as accurate as a one-process run's (the ranks' shards of each step are exactly the one-process
batch, so only BatchNorm statistics over half batches and summation order differ).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit import data
from edgekit.models import load_checkpoint
from edgekit.recipe import DataSpec
from edgekit.train.loop import accuracy, predict
from edgekit.train.metrics import read_csv

from .conftest import RECIPES, ROOT, edgekit

EPOCHS = 8
SETTINGS = ["--set", f"train.epochs={EPOCHS}", "--set", "train.threads=1"]


def torchrun(*args: str, nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    # --standalone: a private rendezvous on a free port, so parallel test runs do not collide
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(nproc), "-m", "edgekit", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def held_out_accuracy(run: Path) -> float:
    x, y = data.load(DataSpec(name="digits")).tensors("test")
    return accuracy(predict(load_checkpoint(run / "checkpoints" / "teacher.pt"), x), y)



@pytest.mark.slow
def test_two_gloo_processes_write_one_run_and_match_one_process_accuracy(tmp_path):
    proc = torchrun("train", str(RECIPES / "digits_resnet8.yaml"), "--out", str(tmp_path / "ddp"), *SETTINGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "ddp" / "digits_resnet8").iterdir())
    assert len(runs) == 1, "every rank must use the run folder rank 0 created"
    run = runs[0]
    assert proc.stdout.count("run folder:") == 1 and str(run) in proc.stdout
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["teacher.pt", "train.state"]
    assert [r["epoch"] for r in read_csv(run / "metrics.csv")] == list(range(1, EPOCHS + 1))  # one writer
    assert proc.stderr.count(f"epoch {EPOCHS}/{EPOCHS}") == 1  # rank 0 logs, the others stay quiet

    single = edgekit("train", str(RECIPES / "digits_resnet8.yaml"), "--out", str(tmp_path / "one"), *SETTINGS)
    assert single.returncode == 0, single.stderr[-3000:]
    (one,) = list((tmp_path / "one" / "digits_resnet8").iterdir())
    ddp_acc, one_acc = held_out_accuracy(run), held_out_accuracy(one)
    assert one_acc > 0.95 and abs(ddp_acc - one_acc) <= 0.01, (ddp_acc, one_acc)


def test_run_under_torchrun_is_refused_with_the_two_step_recipe(tmp_path):
    """`edgekit run` is one process; several ranks would each prune, export and bench."""
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    proc = edgekit("run", str(RECIPES / "digits_resnet8.yaml"), "--out", str(tmp_path / "runs"), env=env)
    assert proc.returncode == 2
    assert "edgekit run is one process" in proc.stderr and "-m edgekit train" in proc.stderr
    assert "edgekit run RECIPE --resume RUN" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()
