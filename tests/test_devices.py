"""Device profiles are validated data: every shipped one loads, bad ones fail naming file, key and fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from edgekit import devices
from edgekit.errors import ConfigError

from .conftest import edgekit

PROFILES = sorted(Path(devices.shipped_dir()).glob("*.yaml"))
REQUIRED = {"rpi4", "rpi5", "jetson_orin_nano", "android_arm64", "x86_64_linux", "aarch64_linux"}


def test_the_required_targets_are_shipped_and_registered():
    assert REQUIRED <= set(devices.DEVICES.names())
    assert {p.stem for p in PROFILES} == set(devices.DEVICES.names())


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_shipped_profile_validates(path):
    d = devices.load(path.stem)
    assert d.schema == devices.SCHEMA_VERSION and d.name == path.stem
    assert d.formats and d.precisions and d.runtimes
    for name, rt in d.runtimes.items():
        assert rt.formats, name
        if rt.install:
            assert rt.package and devices.version_satisfies("999.0", rt.version.split(",")[0].replace("==", ">=")), name
        else:
            assert rt.binary, f"{name}: a runtime edgekit does not pip-install needs its tool's path"
    assert devices.load(path) == d  # by name or by file


def test_profiles_record_the_measured_install_facts():
    for name in ("rpi4", "rpi5", "jetson_orin_nano", "aarch64_linux"):
        rt = devices.load(name).runtimes["tflite-runtime"]
        assert rt.min_glibc == "2.34" and "numpy<2" in rt.requires and rt.wheel == "manylinux_2_34_aarch64"
    assert devices.load("rpi5").runtimes["onnxruntime"].wheel == "manylinux_2_28_aarch64"
    assert devices.load("rpi5").runtimes["litert"].min_glibc == "2.27"
    # JetPack 6 ships Python 3.10, and onnxruntime 1.24+ has no cp310 wheels.
    assert not devices.version_satisfies("1.24.0", devices.load("jetson_orin_nano").runtimes["onnxruntime"].version)
    assert {n: devices.load(n).qemu_cpu for n in ("rpi4", "rpi5")} == {"rpi4": "cortex-a72", "rpi5": "cortex-a76"}
    jetson = devices.load("jetson_orin_nano")
    assert jetson.cpu.model == "Cortex-A78AE" and jetson.runtimes["tensorrt"].binary.endswith("trtexec")
    android = devices.load("android_arm64")
    assert android.transport.kind == "adb" and android.transport.python is None and android.formats == ["tflite"]


def test_runtimes_for_filters_by_format_precision_and_profile_order():
    rpi = devices.load("rpi4")
    assert rpi.runtimes_for("tflite", "int8") == ["litert", "tflite-runtime"]
    assert rpi.runtimes_for("onnx", "fp32") == ["onnxruntime"]
    assert devices.load("android_arm64").runtimes_for("onnx", "int8") == []
    assert devices.load("jetson_orin_nano").runtimes_for("onnx", "fp32")[0] == "tensorrt"
    assert "tensorrt" not in devices.load("jetson_orin_nano").runtimes_for("onnx", "int8")


def _bad(tmp_path, edit) -> str:
    raw = yaml.safe_load((devices.shipped_dir() / "rpi4.yaml").read_text())
    edit(raw)
    path = tmp_path / "rpi4.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        devices.load(path)
    assert str(path) in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(memroy_mb=1), "unknown key 'memroy_mb'. Did you mean 'memory_mb'?"),
    (lambda r: r["cpu"].update(coers=4), "unknown key 'cpu.coers'. Did you mean 'cores'?"),
    (lambda r: r.update(arch="aarch46"), "arch = 'aarch46': must be one of aarch64, x86_64, armv7l. Did you mean"),
    (lambda r: r["cpu"].update(cores="four"), "cpu.cores = 'four': expected an integer"),
    (lambda r: r.update(precisions=["fp32", "int4"]), "precisions = 'int4': must be one of fp32, fp16, int8"),
    (lambda r: r["runtimes"].update(onnxruntim={"formats": ["onnx"]}), "unknown runtime 'onnxruntim'"),
    (lambda r: r["runtimes"]["litert"].update(formats=["tflit"]), "runtimes.litert.formats = 'tflit'"),
    (lambda r: r["runtimes"]["litert"].update(pakage="x"), "unknown key 'runtimes.litert.pakage'. Did you mean"),
    (lambda r: r["runtimes"]["litert"].update(formats=[]), "runtimes.litert.formats is empty"),
    (lambda r: r["transport"].update(kind="telnet"), "transport.kind = 'telnet': must be one of ssh, adb, local"),
    (lambda r: r["transport"].update(port=70000), "transport.port = 70000: must be between"),
    (lambda r: r["camera"].update(kind="webcam"), "camera.kind = 'webcam': must be one of"),
    (lambda r: r["os"].update(glibc="2.3x"), "glibc version '2.3x' is not MAJOR.MINOR"),
    (lambda r: r.update(runtimes={}), "runtimes is empty"),
    (lambda r: r.update(name="rpi_four"), "name 'rpi_four' differs from the file name"),
    (lambda r: r.pop("schema"), "missing 'schema'"),
    (lambda r: r.update(schema=2), "schema 2 is not supported"),
    (lambda r: r.pop("cpu"), "missing required key 'cpu'"),
])
def test_bad_profiles_fail_naming_file_key_and_fix(tmp_path, edit, message):
    assert message in _bad(tmp_path, edit)


def test_unknown_device_name_suggests_a_close_one():
    with pytest.raises(ConfigError, match=r"unknown device 'rpi6'. Did you mean 'rpi5'\?"):
        devices.load("rpi6")


def test_profiles_are_read_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("schema: 1\nname: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        devices.load(path)


@pytest.mark.parametrize("version, spec, ok", [
    ("1.32.0", ">=1.18", True), ("1.23.2", ">=1.18,<1.24", True), ("1.24.0", ">=1.18,<1.24", False),
    ("2.14.0", "==2.14.0", True), ("2.14.1", "==2.14.0", False), ("1.26.4", "<2", True), ("2.0.0", "", True),
    ("1.20.1", "~=1.18", True), ("2.0", "~=1.18", False), ("1.24.3", "==1.24.*", True), ("1.25.0", "==1.24.*", False),
])
def test_version_specifiers_are_judged_as_pip_judges_them(version, spec, ok):
    assert devices.version_satisfies(version, spec) is ok


def test_a_malformed_version_specifier_is_a_profile_error_naming_the_key(tmp_path):
    text = (devices.shipped_dir() / "rpi5.yaml").read_text()
    bad = tmp_path / "rpi5.yaml"
    import yaml

    raw = yaml.safe_load(text)
    name = next(iter(raw["runtimes"]))
    raw["runtimes"][name]["version"] = ">=>1.18"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=rf"runtimes\.{name}\.version = '>=>1.18' is not a pip version specifier"):
        devices.load(bad)


def _probe(**over):
    base = {"python": "3.11.2", "executable": "/usr/bin/python3", "machine": "aarch64", "glibc": "2.36", "cpus": 4,
            "memory_mb": 3900, "packages": {}}
    return {**base, **over}


def test_compare_passes_a_matching_device_and_only_warns_about_missing_runtimes():
    rows = devices.compare(devices.load("rpi4"), {"system python": _probe()})
    assert all(r.verdict != "FAIL" for r in rows)
    assert any(r.item == "litert [system python]" and r.verdict == "warn" for r in rows)


@pytest.mark.parametrize("probe, item", [
    (_probe(machine="armv7l"), "architecture"),
    (_probe(python="3.9.2"), "python"),
    (_probe(glibc="2.31"), "tflite-runtime needs glibc"),
])
def test_compare_fails_what_cannot_work(probe, item):
    rows = devices.compare(devices.load("rpi4"), {"system python": probe})
    assert [r.item for r in rows if r.verdict == "FAIL"] == [item]


def test_compare_checks_installed_versions_in_the_edgekit_environment():
    env = _probe(packages={"onnxruntime": "1.17.0", "ai-edge-litert": "2.3.0", "edgekit": "0.1.0"})
    rows = {r.item: r for r in devices.compare(devices.load("rpi4"), {"system python": _probe(), "edgekit environment": env})}
    assert rows["onnxruntime [edgekit environment]"].verdict == "FAIL"
    assert rows["litert [edgekit environment]"].verdict == "ok"


def test_cli_lists_shows_and_checks_this_machine():
    proc = edgekit("devices", "list")
    assert proc.returncode == 0 and all(name in proc.stdout for name in REQUIRED)
    proc = edgekit("devices", "show", "jetson_orin_nano")
    assert proc.returncode == 0 and "trtexec" in proc.stdout and "cortex-a76" in proc.stdout
    proc = edgekit("devices", "check", "x86_64_linux", "--python", sys.executable)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "architecture" in proc.stdout and "x86_64" in proc.stdout and "matches the profile" in proc.stdout


def test_cli_bad_device_and_unreachable_host_exit_2_with_one_line():
    proc = edgekit("devices", "show", "rpi")
    assert proc.returncode == 2 and proc.stderr.startswith("edgekit: error: ") and "Did you mean" in proc.stderr
    proc = edgekit("devices", "check", "rpi4", "--host=-oProxyCommand=x")  # an option in disguise
    assert proc.returncode == 2 and "expected user@host[:port]" in proc.stderr
    # Port 1 on loopback: nothing listens, ssh fails at once.
    proc = edgekit("devices", "check", "rpi4", "--host", "nobody@127.0.0.1:1", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "probing python3 failed" in proc.stderr
