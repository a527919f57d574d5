"""A bundle proven on its device's instruction set: arm64 Python under qemu-user, the profile's CPU model.

The arm64 Debian packages and aarch64 wheels are downloaded by `make test` (scripts/wheelhouse.py --arm64);
the tests run offline from that cache, in one pytest session (each emulated process costs seconds to start).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from edgekit import devices, emulate, rundir
from edgekit.device import signing
from edgekit.device.bundle import manifest_digest
from edgekit.errors import DataError
from edgekit.pack import bundle

from .conftest import edgekit


def cache_ready() -> bool:
    try:
        emulate.sysroot(devices.load("rpi4"))
        return True
    except emulate.EmulationUnavailable:
        return False


needs_cache = pytest.mark.skipif(not os.environ.get("CI") and not cache_ready(),
                                 reason="no arm64 cache: run `.venv/bin/python scripts/wheelhouse.py --arm64`")


def test_missing_qemu_says_what_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(emulate.EmulationUnavailable, match="apt-get install qemu-user-static"):
        emulate.sysroot(devices.load("rpi4"))


def test_missing_cache_says_how_to_prepare(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path))
    with pytest.raises(emulate.EmulationUnavailable, match="edgekit devices prepare-emulation rpi5"):
        emulate.sysroot(devices.load("rpi5"))


def test_wheel_tags_follow_the_profiles_glibc():
    tags = emulate.platform_tags("2.31")
    assert "manylinux_2_31_aarch64" in tags and "manylinux_2_17_aarch64" in tags
    assert "manylinux_2_34_aarch64" not in tags  # tflite-runtime's wheels need glibc 2.34: not for this device


@pytest.fixture(scope="module")
def bundles(digits_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("emulated")
    return {name: bundle(digits_run, name, out / name).path for name in ("rpi4", "rpi5")}


@pytest.mark.slow
@needs_cache
@pytest.mark.parametrize("device", ["rpi4", "rpi5"])
def test_bundle_computes_the_same_numbers_on_arm64(bundles, device):
    rep = emulate.emulated_check(bundles[device], device)
    assert rep["passed"], emulate.format_emulated(rep)
    assert rep["qemu_cpu"] == devices.load(device).qemu_cpu
    by = {(r["artifact"], r["runtime"]): r for r in rep["results"]}
    assert by[("tflite_int8", "litert")]["max_abs_diff"] == 0.0  # LiteRT int8: bit for bit
    onnx_int8 = by[("onnx_int8", "onnxruntime")]  # onnxruntime int8: the same top-1, at most a step apart
    assert onnx_int8["top1_agreement"] == 1.0 and onnx_int8["passed"]
    assert by[("onnx_fp32", "onnxruntime")]["max_abs_diff"] <= emulate.EMULATED_FLOAT_TOLERANCE
    assert "not a measurement of the device" in rep["latency_note"]
    saved = json.loads((bundles[device].parent / f"emulated-report-{device}.json").read_text())
    assert saved["passed"] is True


def _resign(bundle_dir, mutate) -> None:
    """Rewrite a bundle as a buggy exporter would: wrong content, consistent checksums."""
    path = bundle_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    mutate(manifest)
    for rel, f in manifest["files"].items():
        f["sha256"] = rundir.sha256(bundle_dir / rel)
        f["size_bytes"] = (bundle_dir / rel).stat().st_size
    manifest["digest"] = manifest_digest(manifest)
    path.write_text(json.dumps(manifest))
    signing.sign(bundle_dir, manifest["digest"], signing.default_key())  # and signed, as its maker would


@pytest.mark.slow
@needs_cache
def test_wrong_preprocessing_fails_with_a_clear_message(bundles, tmp_path):
    broken = tmp_path / "bundle"
    shutil.copytree(bundles["rpi4"], broken)
    _resign(broken, lambda m: m["preprocess"].update(mean=[0.5]))
    rep = emulate.emulated_check(broken, "rpi4")
    assert not rep["passed"]
    assert any("pre-processing does not reproduce the host's model inputs" in p for p in rep["problems"])


@pytest.mark.slow
@needs_cache
def test_artifact_the_runtime_cannot_load_fails_with_its_name(bundles, tmp_path):
    broken = tmp_path / "bundle"
    shutil.copytree(bundles["rpi4"], broken)
    (broken / "artifacts" / "model_int8.tflite").write_bytes(b"TFL3" + bytes(200))
    _resign(broken, lambda m: None)
    proc = edgekit("deploy", str(broken), "--device", "rpi4", "--emulate")
    assert proc.returncode == 1
    assert "tflite_int8" in proc.stdout and "FAIL" in proc.stdout


def test_tampered_bundle_is_refused_before_anything_runs(bundles, tmp_path, monkeypatch):
    broken = tmp_path / "bundle"
    shutil.copytree(bundles["rpi4"], broken)
    data = bytearray((broken / "artifacts" / "model_int8.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (broken / "artifacts" / "model_int8.onnx").write_bytes(bytes(data))
    monkeypatch.setattr(emulate, "sysroot", lambda *a, **k: pytest.fail("the emulator must not start"))
    with pytest.raises(DataError, match="model_int8.onnx"):
        emulate.emulated_check(broken, "rpi4")


def test_only_arm64_profiles_are_emulated(bundles):
    from edgekit.errors import ConfigError

    with pytest.raises(ConfigError, match="emulation runs aarch64 profiles only"):
        emulate.emulated_check(bundles["rpi4"], "x86_64_linux")


def test_golden_inputs_survive_the_bundle(bundles):
    from edgekit.device.bundle import load_bundle

    g = load_bundle(bundles["rpi4"]).golden()
    assert g["x"].dtype == np.float32 and len(g["x"]) == len(g["y"])


@pytest.mark.slow
@needs_cache
def test_a_run_ends_with_the_proof_for_its_target_devices(digits_run, tmp_path):
    from edgekit import report
    from edgekit.pipeline import prove_targets

    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    targets = prove_targets(["rpi5"], run)
    assert targets == [dict(targets[0], device="rpi5", how="arm64 (emulated, cortex-a76)", verified=True)]
    res = {**report.load(run), "targets": targets}
    assert "verified on arm64 (emulated) for rpi5" in report.summary(res)
    assert "## Target devices" in report.markdown(res)


def test_an_unknown_target_is_refused_before_training(tmp_path):
    proc = edgekit("run", "recipes/digits_resnet8.yaml", "--set", "targets=[rpi9]", "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2
    assert "rpi9" in proc.stderr and "Did you mean" in proc.stderr
    assert not (tmp_path / "runs").exists()
