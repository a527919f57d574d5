from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


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
