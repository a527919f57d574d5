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


@pytest.mark.parametrize("make, message", [
    (lambda tmp: (tmp / "some_file.pt").write_bytes(b"x") and tmp / "some_file.pt", "a file, not a run folder"),
    (lambda tmp: tmp / "missing", "no such run folder"),
    (lambda tmp: (tmp / "photos").mkdir() or (tmp / "photos" / "a.jpg").write_bytes(b"x") and tmp / "photos",
     "not a run folder"),
])
@pytest.mark.parametrize("command", ["run", "train"])
def test_resume_refuses_what_is_not_a_run_folder_and_writes_nothing_into_it(tmp_path, digits_recipe, make, message,
                                                                           command):
    target = make(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    proc = edgekit(command, str(digits_recipe), "--resume", str(target), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2
    assert message in one_clean_line(proc)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_verify_reads_inputs_from_an_npy_and_refuses_pickled_objects(digits_run, tmp_path):
    import numpy as np

    from edgekit.device.runtime import open_session

    artifact = next((digits_run / "artifacts").glob("*fp32.onnx"))
    shape = [3, *open_session(artifact).input_shape[1:]]
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random(shape, np.float32))
    proc = edgekit("verify", str(artifact), "--data", str(tmp_path / "x.npy"))
    assert proc.returncode == 0 and "over 3 samples -> ok" in proc.stdout, proc.stderr
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    proc = edgekit("verify", str(artifact), "--data", str(tmp_path / "o.npy"))
    assert proc.returncode == 2 and "does not unpickle" in one_clean_line(proc)


def test_a_run_prints_only_edgekit_lines_on_stderr_unless_verbose(digits_run):
    """TensorFlow Lite's, absl's, oneDNN's and torchao's notices (edgekit.quiet.NOISE) stay off the terminal."""
    import re

    from edgekit.quiet import is_noise

    lines = (digits_run.parents[1] / "stderr.log").read_text().splitlines()
    assert lines and all(re.match(r"\[(edgekit|train|distill)[\w ]*\] ", ln) for ln in lines if ln.strip()), lines
    seen_here = ["WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
                 "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
                 "I0000 00:00:1796305651.672252   25516 port.cc:153] oneDNN custom operations are on.",
                 "W1203 13:47:35.041000 25516 torch/utils/_pytree.py:630] <enum 'KernelPreference'> is an Enum",
                 "Failed to load /x/site-packages/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so: Could not load "
                 "this library: /x/site-packages/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so"]
    assert all(is_noise(ln) for ln in seen_here)
    kept = ["E0000 00:00:1 1 kernel.cc:1] a real error", "Traceback (most recent call last):",
            "UserWarning: something", "edgekit: error: x.onnx: no such file"]
    assert not any(is_noise(ln) for ln in kept)


def test_verbose_lets_the_libraries_speak(digits_run):
    tflite = next((digits_run / "artifacts").glob("*.tflite"))
    args = ("bench", str(tflite), "--iterations", "3", "--warmup", "1", "--runtime", "litert")
    quiet, loud = edgekit(*args), edgekit("--verbose", *args)
    assert quiet.returncode == loud.returncode == 0, quiet.stderr + loud.stderr
    assert "XNNPACK delegate" in loud.stderr and "XNNPACK delegate" not in quiet.stderr
