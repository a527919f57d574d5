"""The whole pipeline on the bundled digits: every stage runs for real and every number lands in results.json."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from .conftest import ROOT, edgekit

pytestmark = pytest.mark.slow

RESULT_KEYS = {"path", "format", "precision", "size_bytes", "sha256", "accuracy", "top1_agreement", "max_abs_diff",
               "latency"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = edgekit("run", str(ROOT / "recipes" / "digits_resnet8.yaml"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = out / "digits_resnet8"
    (run,) = list(run_dir.iterdir())
    return run, proc


def test_run_prints_the_table_and_the_run_folder(finished_run):
    run, proc = finished_run
    assert f"run folder: {run}" in proc.stdout
    assert "| onnx_int8 |" in proc.stdout and "| tflite_int8 |" in proc.stdout


def test_every_artifact_is_written_verified_and_benchmarked(finished_run):
    run, _ = finished_run
    res = json.loads((run / "results.json").read_text())
    names = {e["name"] for e in res["artifacts"]}
    assert {"onnx_fp32", "onnx_int8", "tflite_fp32", "tflite_fp16", "tflite_int8", "baseline_onnx_fp32"} <= names
    for e in res["artifacts"]:
        assert RESULT_KEYS <= set(e)
        assert os.path.getsize(e["path"]) == e["size_bytes"]
        for runtime, by_threads in e["latency"].items():
            assert set(by_threads) == {"1", "2"}, runtime
            assert all(0 < v["p50_ms"] <= v["p90_ms"] for v in by_threads.values())
        assert e["latency"], f"{e['name']} was not benchmarked"
    assert res["passed"] is True
    assert res["models"]["compressed"]["macs_ratio"] <= 0.5


def test_int8_is_offered_only_where_measured_no_slower(finished_run):
    run, _ = finished_run
    res = json.loads((run / "results.json").read_text())
    for e in res["artifacts"]:
        if e["precision"] != "int8":
            continue
        assert set(e["offered"]) == set(e["latency"])
        for rt, ok in e["offered"].items():
            assert ok == all(r <= 1.05 for r in e["speed_vs_fp32"][rt].values())
    assert "## int8 speed on this host" in (run / "report.md").read_text()


# int8 weights are a quarter of fp32 ones; what is left is per-channel quantization parameters. TFLite stores a
# zero point per channel as int64 (8 bytes) for every weight and bias tensor: 6.8 KB of a 51k-parameter model.
MAX_INT8_SIZE_RATIO = {"onnx": 0.30, "tflite": 0.32}


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_int8_artifacts_are_small(finished_run, fmt):
    run, _ = finished_run
    res = json.loads((run / "results.json").read_text())
    by = {e["name"]: e for e in res["artifacts"]}
    assert by[f"{fmt}_int8"]["size_bytes"] <= MAX_INT8_SIZE_RATIO[fmt] * by[f"{fmt}_fp32"]["size_bytes"]


def test_report_and_plot_are_written(finished_run):
    run, _ = finished_run
    text = (run / "report.md").read_text()
    assert "## Artifacts" in text and "pareto.png" in text
    assert (run / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run.rglob("*.partial")) and not list(run.rglob(".scratch-*"))
    proc = edgekit("report", str(run))
    assert proc.returncode == 0 and "| tflite_fp16 |" in proc.stdout


def test_resume_of_a_finished_run_recomputes_nothing_but_checks(finished_run):
    run, _ = finished_run
    before = {p: p.stat().st_mtime_ns for p in (run / "artifacts").iterdir()}
    proc = edgekit("run", str(ROOT / "recipes" / "digits_resnet8.yaml"), "--resume", str(run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[train] epoch" not in proc.stderr and "exported" not in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in (run / "artifacts").iterdir()} == before


def test_an_artifact_over_budget_fails_the_run_with_exit_1(finished_run, tmp_path):
    run, _ = finished_run
    # Zero tolerance: fp32 artifacts differ from PyTorch by ~1e-6, so they must be reported as failing.
    proc = edgekit("run", str(ROOT / "recipes" / "digits_resnet8.yaml"), "--resume", str(run),
                   "--set", "verify.fp32_tolerance=0.0")
    assert proc.returncode == 1
    assert "over the accuracy budget" in proc.stderr and "onnx_fp32" in proc.stderr
    assert "FAIL" in proc.stdout
    res = json.loads((run / "results.json").read_text())
    assert res["passed"] is False


def test_device_side_cli_benchmarks_an_artifact(finished_run):
    run, _ = finished_run
    proc = edgekit("bench", str(run / "artifacts" / "model_int8.tflite"), str(run / "artifacts" / "model_int8.onnx"),
                   "--threads", "1", "--iterations", "20", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {r["runtime"] for r in rows} >= {"onnxruntime", "litert"}


def test_verify_command_compares_artifacts_on_npz_data(finished_run, tmp_path):
    import numpy as np

    from edgekit import data
    from edgekit.recipe import DataSpec

    run, _ = finished_run
    x, y = data.load(DataSpec(name="digits")).tensors("test")
    np.savez(tmp_path / "held_out.npz", x=x, y=y)
    proc = edgekit("verify", str(run / "artifacts" / "model_int8.onnx"), str(run / "artifacts" / "model_int8.tflite"),
                   "--reference", str(run / "artifacts" / "model_fp32.onnx"), "--data", str(tmp_path / "held_out.npz"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("-> ok") == 2


DEVICE_PY = ROOT / ".venv-device" / "bin" / "python"


@pytest.mark.device_env
def test_device_environment_without_torch_loads_and_benchmarks(finished_run):
    """In a virtual environment installed with edgekit[onnx,tflite] only (make device-venv)."""
    if not DEVICE_PY.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must build .venv-device (make test does)")
        pytest.skip("no .venv-device: run `make device-venv`")
    run, _ = finished_run
    no_torch = subprocess.run([str(DEVICE_PY), "-c", "import torch"], capture_output=True)
    assert no_torch.returncode != 0, "the device environment must not have torch"
    for art in ("model_int8.onnx", "model_int8.tflite", "model_fp16.tflite"):
        proc = edgekit("bench", str(run / "artifacts" / art), "--iterations", "10", python=str(DEVICE_PY))
        assert proc.returncode == 0, proc.stderr
        assert art in proc.stdout
    check = ("import sys, edgekit.device.runtime as r; s = r.open_session(sys.argv[1]); "
             "print(s.metadata['labels'][0]); assert 'torch' not in sys.modules")
    proc = subprocess.run([str(DEVICE_PY), "-c", check, str(run / "artifacts" / "model_int8.tflite")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"


def test_distillation_from_several_teachers_trains_each_and_learns_their_mean(tmp_path):
    """distill.teachers: 2 trains a second full model from seed train.seed + 1 (its own checkpoint, resume
    state, metrics and stage), and the student is distilled from the mean of the two."""
    import torch

    out = tmp_path / "runs"
    proc = edgekit("run", str(ROOT / "recipes" / "digits_resnet8.yaml"), "--out", str(out),
                   "--set", "distill.teachers=2", "--set", "train.epochs=2", "--set", "distill.epochs=1",
                   "--set", "export.targets=[onnx:fp32]", "--set", "bench.threads=[1]",
                   "--set", "bench.iterations=5", "--set", "prune.enabled=false",
                   "--set", "verify.budget=1.0")  # the plumbing is under test here, not 2-epoch accuracy
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((out / "digits_resnet8").iterdir())
    ckpt = run / "checkpoints"
    assert (run / ".stages" / "train_1.json").is_file() and (run / "metrics_1.csv").is_file()
    a = torch.load(ckpt / "teacher.pt", weights_only=True)["state_dict"]
    b = torch.load(ckpt / "teacher_1.pt", weights_only=True)["state_dict"]
    key = next(k for k in a if k.endswith("weight") and a[k].dim() == 4)
    assert not torch.equal(a[key], b[key])  # another seed, another model
    assert "teacher: the mean of 2 models" in proc.stderr
    assert "train_1" in json.loads((run / "results.json").read_text())["stages"]
