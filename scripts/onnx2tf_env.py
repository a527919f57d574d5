"""Create (once) the isolated virtual environment in which edgekit runs onnx2tf, the ONNX → TFLite converter.

onnx2tf pins tensorflow 2.19 and numpy 1.26, which cannot share edgekit's environment (numpy 2, torch), so it
lives in its own venv, by default ``~/.cache/edgekit/onnx2tf-venv`` (``EDGEKIT_ONNX2TF_VENV`` moves it).
edgekit only runs its Python as a subprocess (edgekit.export.onnx_tflite). This script is a set-up step: it
needs the package index; conversions afterwards run offline.

Idempotent: a finished environment holds a stamp file with the pins it was built from; when the stamp
matches, nothing is done. A half-built one (interrupted install) has no stamp and is rebuilt from scratch.

Usage:
    .venv/bin/python scripts/onnx2tf_env.py            # create if missing or stale, print where and how big
    .venv/bin/python scripts/onnx2tf_env.py --check    # exit 1 when it is missing or stale, build nothing
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekit.export.route_onnx2tf import ONNX2TF_REQUIREMENTS, onnx2tf_env_ready, onnx2tf_venv  # noqa: E402


def disk_usage(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def build(venv: Path) -> None:
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    # The base interpreter, not this venv's: a venv made from a venv's python still works, but this is clearer.
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *ONNX2TF_REQUIREMENTS], check=True)
    # Import once: compiles the bytecode and fails here, at set-up time, rather than in the first conversion.
    subprocess.run([str(py), "-c", "import onnx2tf, tensorflow, onnxsim"], check=True)
    (venv / "edgekit-stamp.txt").write_text("\n".join(ONNX2TF_REQUIREMENTS) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only say whether the environment is ready")
    args = ap.parse_args()
    venv = onnx2tf_venv()
    if onnx2tf_env_ready(venv):
        print(f"onnx2tf environment: {venv} (ready)")
        return 0
    if args.check:
        print(f"onnx2tf environment: {venv} is missing or stale; run scripts/onnx2tf_env.py", file=sys.stderr)
        return 1
    start = time.perf_counter()
    build(venv)
    took = time.perf_counter() - start
    print(f"onnx2tf environment: {venv} built in {took:.0f} s, {disk_usage(venv) / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
