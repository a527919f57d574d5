from __future__ import annotations

import os
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
