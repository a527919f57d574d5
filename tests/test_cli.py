"""The command line: bad input exits 2 with one clear line and no traceback, and leaves nothing half-written."""

from __future__ import annotations

import pytest

from .conftest import RECIPES, edgekit


def one_clean_line(proc) -> str:
    """The error is the last line of stderr, after any progress lines; never a traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edgekit: error: ")]
    assert len(errors) == 1 and proc.stderr.strip().endswith(errors[0]), proc.stderr
    return errors[0]


def test_help_explains_every_command():
    proc = edgekit("--help")
    assert proc.returncode == 0
    for cmd in ("run", "train", "bench", "verify", "report", "info"):
        assert cmd in proc.stdout
    assert "Exit codes" in proc.stdout


def test_info_lists_versions():
    proc = edgekit("info")
    assert proc.returncode == 0 and "onnxruntime" in proc.stdout and "torch" in proc.stdout


def test_recipe_typo_exits_2_and_creates_no_run(tmp_path, digits_recipe):
    digits_recipe.write_text(digits_recipe.read_text().replace("epochs: 6", "epoch: 6"))
    proc = edgekit("run", str(digits_recipe), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2
    err = one_clean_line(proc)
    assert "digits.yaml" in err and "unknown key 'train.epoch'" in err and "Did you mean 'epochs'" in err
    assert not (tmp_path / "runs").exists()


def test_bad_set_value_exits_2(tmp_path):
    proc = edgekit("run", str(RECIPES / "digits_resnet8.yaml"), "--set", "train.epochs=-3", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "train.epochs = -3: must be between" in one_clean_line(proc)


def test_missing_data_folder_exits_2_and_creates_no_run(tmp_path):
    proc = edgekit("run", str(RECIPES / "fashion_mnist_resnet8.yaml"), "--set", f"data.root={tmp_path / 'nowhere'}",
                   "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2
    assert "nowhere: Fashion-MNIST folder not found" in one_clean_line(proc)
    assert not (tmp_path / "runs").exists()


def test_unreadable_checkpoint_exits_2(tmp_path, digits_recipe):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / ".stages").mkdir()
    (run / ".stages" / "train.json").write_text("{}")
    (run / "checkpoints" / "teacher.pt").write_bytes(b"\x80\x04 truncated")
    proc = edgekit("run", str(digits_recipe), "--resume", str(run))
    assert proc.returncode == 2
    err = one_clean_line(proc)
    assert "teacher.pt: unreadable checkpoint" in err and "weights_only" not in err
    assert not (run / "artifacts").exists()


@pytest.mark.parametrize("args, message", [
    (["bench", "missing.onnx"], "missing.onnx"),
    (["report", "/nonexistent/run"], "no results.json"),
    (["verify", "x.onnx"], "exactly one of --data"),
])
def test_other_bad_inputs_exit_2(args, message):
    proc = edgekit(*args)
    assert proc.returncode == 2
    assert message in one_clean_line(proc)
