from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"

# Keys and trusted keys of the whole test session (and its subprocesses) live in a throwaway home, never in
# ~/.config/edgekit: bundles made here are signed with that home's default key, made on first use.
os.environ["EDGEKIT_HOME"] = tempfile.mkdtemp(prefix="edgekit-test-home-")
os.environ.pop("EDGEKIT_TRUSTED_KEYS", None)


def edgekit(*args: str, cwd: Path | None = None, env: dict | None = None, python: str | None = None,
            timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the edgekit CLI in a subprocess, as a user would."""
    return subprocess.run([python or sys.executable, "-m", "edgekit", *args], cwd=cwd or ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def digits_recipe(tmp_path: Path) -> Path:
    """A copy of the digits recipe with short training, in a temporary folder."""
    text = (RECIPES / "digits_resnet8.yaml").read_text()
    path = tmp_path / "digits.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """One finished digits run per test session (ONNX fp32 + int8, TFLite int8), shared read-only by the tests
    of bundles, deploy and the camera demo. Tests that write into it (deploy reports) use their own subfolder."""
    out = tmp_path_factory.mktemp("digits_runs")
    proc = edgekit("run", str(RECIPES / "digits_resnet8.yaml"), "--out", str(out),
                   "--set", "export.targets=[onnx:fp32,onnx:int8,tflite:int8]", "--set", "bench.threads=[1]",
                   "--set", "bench.iterations=30")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out / "stderr.log").write_text(proc.stderr)  # for the test that edgekit prints only its own lines
    (run,) = list((out / "digits_resnet8").iterdir())
    return run


def free_port() -> int:
    """A TCP port nothing listens on right now (for servers the tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str:
    """Debian's chromium (scripts/setup-system.sh installs it): required in CI, a skip elsewhere."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("CI must install Debian's chromium (scripts/setup-system.sh does)")
    pytest.skip("no chromium: run `make system`")


@pytest.fixture(scope="session")
def kws_bundle(tmp_path_factory):
    """A DS-CNN keyword bundle trained briefly on the synthesized corpus (cached in .cache/keywords): ONNX fp32,
    TFLite fp32, TFLite int8, for the x86_64_linux profile. Shared read-only by the mic demo's and the web page's tests."""
    from edgekit.data import keywords

    missing = keywords.missing_requirements()
    if missing:
        pytest.skip(f"the keywords corpus needs {', '.join(missing)} (scripts/setup-system.sh)")

    out = tmp_path_factory.mktemp("kws_runs")
    proc = edgekit("run", str(RECIPES / "kws_dscnn.yaml"), "--out", str(out),
                   "--set", f"data.root={ROOT / '.cache' / 'keywords'}", "--set", "data.limit_train=4000",
                   "--set", "train.epochs=20", "--set", "prune.enabled=false", "--set", "distill.enabled=false",
                   "--set", "export.targets=[onnx:fp32,tflite:fp32,tflite:int8]", "--set", "export.baseline=false",
                   "--set", "bench.threads=[1]", "--set", "bench.iterations=20", "--set", "verify.budget=0.05")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((out / "kws_dscnn").iterdir())
    bundle = out / "bundle"
    proc = edgekit("bundle", str(run), "--device", "x86_64_linux", "--out", str(bundle))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return bundle
