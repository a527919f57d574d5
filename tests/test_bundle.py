"""Bundles hold what one device runs and nothing else, and refuse to load when any byte changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from edgekit import devices, rundir
from edgekit.device import signing
from edgekit.device.bundle import MANIFEST, load_bundle, manifest_digest
from edgekit.device.runtime import open_session, read_metadata
from edgekit.device.signing import SIGNATURE
from edgekit.errors import ConfigError, DataError
from edgekit.pack import bundle

from .conftest import ROOT, edgekit


@pytest.fixture(scope="module")
def made(digits_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "x86"
    return bundle(digits_run, "x86_64_linux", out)


@pytest.fixture
def copy(made, tmp_path):
    """A private copy of the bundle to tamper with."""
    dst = tmp_path / "b"
    shutil.copytree(made.path, dst)
    return dst


def test_contains_the_devices_artifacts_manifest_and_golden_data_only(made, digits_run):
    files = sorted(p.relative_to(made.path).as_posix() for p in made.path.rglob("*") if p.is_file())
    assert files == ["artifacts/model_fp32.onnx", "artifacts/model_int8.onnx", "artifacts/model_int8.tflite",
                     "golden.npz", MANIFEST, SIGNATURE]
    assert [a.name for a in made.artifacts] == ["onnx_fp32", "onnx_int8", "tflite_int8"]  # not the dense baseline
    assert not list(made.path.parent.glob(".*partial*"))


def test_manifest_records_what_the_device_needs(made, digits_run):
    m = made.manifest
    res = json.loads((digits_run / "results.json").read_text())
    assert m["schema"] == 1 and m["kind"] == "edgekit-bundle" and m["edgekit_version"]
    assert m["recipe"] == {"name": "digits_resnet8", "digest": res["recipe_digest"], "source": res["recipe_source"]}
    assert m["device"]["name"] == "x86_64_linux" and m["digest"] == manifest_digest(m)
    meta = read_metadata(made.artifact("onnx_int8").path)
    assert m["labels"] == meta["labels"] and m["preprocess"] == meta["preprocess"] and m["input"] == meta["input"]
    by_name = {e["name"]: e for e in res["artifacts"]}
    for a in made.artifacts:
        assert a.expected["accuracy"] == by_name[a.name]["accuracy"]
        assert a.expected["latency"] == by_name[a.name]["latency"]
        f = m["files"][a.path.relative_to(made.path).as_posix()]
        assert f == {"sha256": by_name[a.name]["sha256"], "size_bytes": by_name[a.name]["size_bytes"]}
    assert m["files"]["golden.npz"]["sha256"] == rundir.sha256(made.path / "golden.npz")


def test_golden_pairs_are_the_host_runtimes_outputs(made, digits_run):
    g = made.golden()
    with np.load(digits_run / "golden.npz") as run:
        np.testing.assert_array_equal(g["x"], run["x"])
        np.testing.assert_array_equal(g["y"], run["y"])
        np.testing.assert_array_equal(g["raw"], run["raw"])
    assert g["x"].shape[0] == made.manifest["golden"]["samples"] == 64
    for a in made.artifacts:
        with open_session(a.path, runtime=a.host_runtime) as s:
            np.testing.assert_allclose(s.run(g["x"]), g[a.golden_key], atol=1e-6)
        assert (g[a.golden_key].argmax(1) == g["y"]).mean() >= 0.9


def test_only_what_the_device_runs(digits_run, tmp_path):
    android = bundle(digits_run, "android_arm64", tmp_path / "android")
    assert [a.name for a in android.artifacts] == ["tflite_int8"]
    assert {s["name"] for s in android.manifest["skipped"]} == {"onnx_fp32", "onnx_int8"}
    assert not (android.path / "artifacts" / "model_fp32.onnx").exists()
    jetson = bundle(digits_run, "jetson_orin_nano", tmp_path / "jetson")
    assert jetson.artifact("onnx_fp32").runtimes == ("tensorrt", "onnxruntime")
    assert jetson.artifact("onnx_int8").runtimes == ("onnxruntime",)
    only = bundle(digits_run, "rpi5", tmp_path / "rpi5", artifacts=["tflite_int8"])
    assert [a.name for a in only.artifacts] == ["tflite_int8"]


def test_a_device_that_runs_nothing_is_refused(digits_run, tmp_path):
    text = (devices.shipped_dir() / "android_arm64.yaml").read_text().replace("precisions: [fp32, fp16, int8]",
                                                                          "precisions: [fp16]")
    (tmp_path / "android_arm64.yaml").write_text(text)
    with pytest.raises(ConfigError, match="runs none of the artifacts"):
        bundle(digits_run, str(tmp_path / "android_arm64.yaml"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_artifact_name_suggests_one(digits_run, tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'tflite_int8'"):
        bundle(digits_run, "rpi5", tmp_path / "b", artifacts=["tflite_int9"])


def test_rebundling_replaces_a_bundle_but_never_another_folder(made, digits_run, tmp_path):
    again = bundle(digits_run, "x86_64_linux", made.path)
    assert again.path == made.path
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not a bundle"):
        bundle(digits_run, "x86_64_linux", other)
    assert (other / "keep.txt").read_text() == "mine"


def test_a_failed_build_leaves_the_old_bundle_and_no_partial_folder(copy, digits_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(digits_run, run, ignore=shutil.ignore_patterns("checkpoints", "deploy"))
    (run / "artifacts" / "model_int8.tflite").write_bytes(b"changed")
    before = sorted(p.name for p in copy.rglob("*"))
    with pytest.raises(DataError, match="changed since the run measured it"):
        bundle(run, "x86_64_linux", copy)
    assert sorted(p.name for p in copy.rglob("*")) == before
    assert not [p for p in copy.parent.iterdir() if "partial" in p.name or ".old-" in p.name]
    load_bundle(copy)


def flip(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("rel", ["artifacts/model_int8.onnx", "artifacts/model_int8.tflite", "golden.npz"])
def test_one_flipped_byte_is_refused_naming_the_file(copy, rel):
    flip(copy / rel)
    with pytest.raises(DataError) as err:
        load_bundle(copy)
    assert f"{rel}: sha256 differs from the manifest" in str(err.value) and "refused" in str(err.value)


def test_truncated_missing_and_manifest_edits_are_refused(copy):
    tfl = copy / "artifacts" / "model_int8.tflite"
    tfl.write_bytes(tfl.read_bytes()[:-10])
    (copy / "artifacts" / "model_fp32.onnx").unlink()
    with pytest.raises(DataError) as err:
        load_bundle(copy)
    msg = str(err.value)
    assert "2 file(s)" in msg and "model_int8.tflite" in msg and "(truncated or extended)" in msg
    assert "artifacts/model_fp32.onnx: missing" in msg

    m = json.loads((copy / MANIFEST).read_text())
    m["artifacts"][0]["expected"]["accuracy"] = 1.0  # valid JSON, different content
    (copy / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(DataError, match="manifest was modified after bundling"):
        load_bundle(copy)
    flip(copy / MANIFEST, offset=5)
    with pytest.raises(DataError, match="manifest"):
        load_bundle(copy)


def test_a_manifest_cannot_point_outside_the_bundle(copy):
    m = json.loads((copy / MANIFEST).read_text())
    m["files"]["../../etc/passwd"] = {"sha256": "0" * 64, "size_bytes": 1}
    m["digest"] = manifest_digest(m)
    (copy / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(DataError, match=r"\.\./\.\./etc/passwd: path leaves the bundle folder"):
        load_bundle(copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(DataError, match="not a bundle"):
        load_bundle(tmp_path)


def test_cli_bundle_and_smoke(digits_run, tmp_path):
    out = tmp_path / "rpi5"
    proc = edgekit("bundle", str(digits_run), "--device", "rpi5", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "tflite_int8" in proc.stdout and "onnx_int8" in proc.stdout
    proc = edgekit("smoke", str(out), "--json", "--iterations", "10")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["passed"] and rep["checksums"].startswith("ok")
    assert {(r["artifact"], r["runtime"]) for r in rep["results"]} >= {("tflite_int8", "litert"),
                                                                      ("onnx_int8", "onnxruntime")}
    for r in rep["results"]:
        assert r["top1_agreement"] == 1.0 and r["max_abs_diff"] <= 1e-5 and r["p50_ms"] > 0  # same host, same runtime


def test_cli_smoke_refuses_a_tampered_bundle_before_running_anything(copy):
    flip(copy / "artifacts" / "model_int8.onnx")
    proc = edgekit("smoke", str(copy), "--json")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "artifacts/model_int8.onnx: sha256 differs" in proc.stderr


def test_smoke_fails_when_the_device_disagrees_with_the_host(copy):
    from edgekit.device.smoke import smoke

    g = dict(np.load(copy / "golden.npz"))
    g["host_onnx_int8"] = np.roll(g["host_onnx_int8"], 1, axis=1)  # a "device" that predicts the wrong classes
    np.savez(copy / "golden.npz", **g)
    m = json.loads((copy / MANIFEST).read_text())
    m["files"]["golden.npz"] = {"sha256": rundir.sha256(copy / "golden.npz"),
                                "size_bytes": (copy / "golden.npz").stat().st_size}
    m["digest"] = manifest_digest(m)
    (copy / MANIFEST).write_text(json.dumps(m))
    signing.sign(copy, m["digest"], signing.default_key())  # as its maker would: this test is about the numbers
    rep = smoke(copy, iterations=5)
    assert not rep["passed"]
    assert [p.split(":")[0] for p in rep["problems"]] == ["onnx_int8 on onnxruntime"]
    proc = edgekit("smoke", str(copy), "--iterations", "5")
    assert proc.returncode == 1 and "FAILED" in proc.stdout and "onnx_int8" in proc.stdout


DEVICE_PY = ROOT / ".venv-device" / "bin" / "python"


@pytest.mark.device_env
def test_device_environment_without_torch_loads_smokes_and_demos(made, tmp_path):
    """In the environment `make device-venv` builds (edgekit[onnx,tflite,camera], no torch)."""
    if not DEVICE_PY.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must build .venv-device (make test does)")
        pytest.skip("no .venv-device: run `make device-venv`")
    assert subprocess.run([str(DEVICE_PY), "-c", "import torch"], capture_output=True).returncode != 0
    proc = edgekit("smoke", str(made.path), "--json", "--iterations", "5", python=str(DEVICE_PY))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passed"]
    import cv2

    video = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (112, 112))
    for im in made.golden()["raw"][:10]:
        w.write(cv2.cvtColor(cv2.resize(im, (112, 112), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR))
    w.release()
    proc = edgekit("demo", "camera", str(made.path), "--source", str(video), "--headless", "--json",
                   python=str(DEVICE_PY))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 10


@pytest.mark.device_env
def test_every_module_of_the_device_folder_imports_without_torch():
    """The folder boundary, proven where it matters: each edgekit.device module imported in the device venv."""
    if not DEVICE_PY.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must build .venv-device (make test does)")
        pytest.skip("no .venv-device: run `make device-venv`")
    check = ("import importlib, pkgutil, sys, edgekit.device as d\n"
             "names = [m.name for m in pkgutil.walk_packages(d.__path__, 'edgekit.device.')]\n"
             "for n in names: importlib.import_module(n)\n"
             "import edgekit.deploy, edgekit.devices\n"
             "heavy = sorted(m for m in ('torch', 'tensorflow', 'jax', 'litert_torch', 'onnx') if m in sys.modules)\n"
             "assert not heavy, heavy\n"
             "print(len(names))")
    proc = subprocess.run([str(DEVICE_PY), "-c", check], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout) >= 14  # runtime (3), bundle, signing, smoke, verify, bench, arrays, ... demos (3)
