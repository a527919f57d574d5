"""Anomaly detection (task: anomaly): the numpy log-mel front end, the synthetic machine sounds, the AUC metric,
the MLPerf Tiny autoencoder, and the recipe from training to verified int8 ONNX."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgekit import data
from edgekit.anomaly import auc, clip_scores
from edgekit.data import logmel
from edgekit.data.machine_sounds import SAMPLE_RATE, generate
from edgekit.recipe import DataSpec

from .conftest import RECIPES, edgekit


def tone(hz: float, seconds: float = 0.5) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE)).astype(np.float32)


# ---- the log-mel front end -----------------------------------------------------------------------------------------

def test_log_mel_puts_a_tone_in_the_band_that_holds_its_frequency():
    spec = logmel.spec()
    mel = logmel.log_mel(tone(1000.0)[None], spec)
    assert mel.shape == (1, 1 + 8000 // 512, 128) and mel.dtype == np.float32  # centred frames, as librosa's
    peak = int(mel[0].mean(0).argmax())
    edges = logmel._mel_to_hz(np.linspace(0, logmel._hz_to_mel(8000), 130))
    assert edges[peak] <= 1000 <= edges[peak + 2]  # the triangle of band `peak` spans edges[peak]..edges[peak+2]
    assert mel[0].mean(0)[peak] - np.median(mel[0]) > 30  # dB above the rest of the spectrum


def test_windows_stack_consecutive_frames_into_the_model_input():
    mel = np.arange(2 * 7 * 3, dtype=np.float32).reshape(2, 7, 3)
    w = logmel.windows(mel, 5)
    assert w.shape == (2, 3, 15)
    assert np.array_equal(w[1, 2], mel[1, 2:7].ravel())
    x = logmel.apply(logmel.spec(), np.zeros((2, SAMPLE_RATE), np.float32))
    assert x.shape == (2, 28, 640)


def test_log_mel_matches_librosa_as_the_dcase_baseline_computes_it():
    """Golden features librosa 0.11 computed (scripts/logmel_golden.py: melspectrogram n_fft 1024, hop 512,
    128 bands, power 2, reflection-padded centred frames; 10 log10(mel + machine epsilon)) on normal and
    anomalous synthetic machine sounds and silence: measured within 1.8e-5 dB."""
    from tests.conftest import ROOT

    golden = np.load(ROOT / "tests" / "golden" / "logmel_librosa.npz")
    ours = logmel.log_mel(golden["pcm"].astype(np.float32) / 32768.0, logmel.spec())
    assert ours.shape == golden["log_mel"].shape == (len(golden["pcm"]), 32, 128)
    assert np.abs(ours - golden["log_mel"]).max() < 1e-3  # dB


def test_an_artifact_made_before_the_reference_front_end_keeps_its_features():
    """A spec without center/mel_scale/eps (edgekit before 2026-12) still gets the uncentred HTK features."""
    old = {k: v for k, v in logmel.spec().items() if k not in ("center", "mel_scale", "eps")}
    mel = logmel.log_mel(tone(1000.0, 1.0)[None], old)
    assert mel.shape == (1, 1 + (16000 - 1024) // 512, 128)
    fb = logmel.mel_filterbank(16000, 1024, 128, scale="htk")
    window = np.hanning(1025)[:-1]
    first = np.abs(np.fft.rfft(tone(1000.0, 1.0)[:1024] * window)) ** 2
    assert np.allclose(mel[0, 0], 10 * np.log10(fb @ first + 1e-10), atol=1e-3)


def test_clips_shorter_than_a_window_are_a_clear_error():
    with pytest.raises(ValueError, match="shorter than one FFT window"):
        logmel.log_mel(np.zeros((1, 100), np.float32), logmel.spec())


def test_front_end_and_scoring_need_no_torch():
    code = ("import sys, numpy as np, edgekit.data.logmel as m, edgekit.anomaly as a; "
            "x = m.apply(m.spec(), np.zeros((1, 16000), np.float32)); a.clip_scores(x, x); "
            "assert 'torch' not in sys.modules; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr


# ---- the synthetic machine sounds ----------------------------------------------------------------------------------

def test_synthetic_clips_are_deterministic_per_seed():
    a, ya = generate(6, anomalous_fraction=0.5, seed=3)
    b, yb = generate(6, anomalous_fraction=0.5, seed=3)
    c, _ = generate(6, anomalous_fraction=0.5, seed=4)
    assert np.array_equal(a, b) and np.array_equal(ya, yb) and not np.array_equal(a, c)
    assert a.shape == (6, SAMPLE_RATE) and a.dtype == np.float32 and np.abs(a).max() <= 0.5 + 1e-6


def test_synthetic_set_trains_on_normal_clips_only_and_tests_on_half_anomalous_ones():
    s = data.load(DataSpec(name="machine_sounds_synthetic", seed=0))
    assert (s.train_y == 0).all() and s.val_y.mean() == 0.5 and s.test_y.mean() == 0.5
    assert s.labels == ("normal", "anomaly") and s.preprocess["kind"] == "log_mel"
    x, _ = s.tensors("train")
    assert x.shape == (240, 28, 640) and abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01
    assert s.input_shape == [1, 640]


def test_anomalies_are_not_found_by_a_trivial_detector():
    """The distance of a clip's average log-mel spectrum to the normal average is near chance: the faults hide
    under the per-clip variation of the hum, and a model has to learn what normal frames look like."""
    spec = logmel.spec()
    normal, _ = generate(40, anomalous_fraction=0.0, seed=11)
    mixed, y = generate(40, anomalous_fraction=0.5, seed=12)
    centre = logmel.log_mel(normal, spec).mean(axis=(0, 1))
    scores = ((logmel.log_mel(mixed, spec).mean(1) - centre) ** 2).mean(1)
    assert auc(scores, y) < 0.8


# ---- the metric ----------------------------------------------------------------------------------------------------

def test_auc_is_the_chance_an_anomaly_outscores_a_normal_clip():
    assert auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5  # a tie counts half
    assert np.isnan(auc(np.array([0.1, 0.2]), np.array([0, 0])))


def test_auc_agrees_with_scikit_learn_on_tied_random_scores():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 6, 300).astype(float), rng.integers(0, 2, 300)
    assert auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)


def test_clip_score_is_the_mean_squared_reconstruction_error():
    x = np.zeros((2, 3, 4))
    out = np.zeros((6, 4))
    out[3:] = 2.0  # the second clip reconstructed 2 off everywhere
    assert clip_scores(x, out).tolist() == [0.0, 4.0]


# ---- the model and the recipe ---------------------------------------------------------------------------------------

def test_fc_autoencoder_is_the_mlperf_tiny_shape():
    torch = pytest.importorskip("torch")
    from edgekit.models import build

    model = build("fc_autoencoder", {}).eval()
    assert sum(p.numel() for p in model.parameters()) == 267_928
    assert model(torch.zeros(3, 640)).shape == (3, 640)


@pytest.mark.slow
def test_anomaly_recipe_trains_exports_int8_and_verifies_by_auc(tmp_path):
    proc = edgekit("run", str(RECIPES / "anomaly_autoencoder.yaml"), "--out", str(tmp_path),
                   "--set", "train.epochs=6", "--set", "train.threads=1", "--set", "bench.iterations=20",
                   "--set", "export.targets=[onnx:fp32,onnx:int8]", timeout=300)  # TFLite: same code path, slower
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((tmp_path / "anomaly_autoencoder").iterdir())
    res = json.loads((run / "results.json").read_text())
    assert res["task"] == "anomaly" and res["passed"]
    by = {e["name"]: e for e in res["artifacts"]}
    assert set(by) == {"onnx_fp32", "onnx_int8"}
    assert res["models"]["dense"]["auc"] >= 0.85  # the MLPerf Tiny target
    assert by["onnx_int8"]["auc"] >= res["models"]["dense"]["auc"] - 0.02
    assert by["onnx_fp32"]["max_abs_diff"] < 1e-3
    assert by["onnx_int8"]["size_bytes"] < 0.3 * by["onnx_fp32"]["size_bytes"]
    assert all(e["latency"]["onnxruntime"]["1"]["p50_ms"] > 0 for e in by.values())
    assert (run / "metrics.csv").read_text().startswith("epoch,step,loss,lr,val_auc,seconds")
    assert "| onnx_int8 |" in proc.stdout and "AUC" in (run / "report.md").read_text()
    shown = edgekit("report", str(run))
    assert shown.returncode == 0 and "onnx_int8" in shown.stdout
