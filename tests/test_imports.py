"""The device side never imports torch: `import edgekit`, the runtimes, bench and the CLI's parser."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import edgekit, edgekit.cli, edgekit.device.runtime, edgekit.device.bench, edgekit.device.verify, edgekit.recipe, edgekit.report
import edgekit.devices, edgekit.device.bundle, edgekit.device.smoke, edgekit.deploy, edgekit.deploy.transports
import edgekit.deploy.android, edgekit.deploy.jetson, edgekit.deploy.report, edgekit.device.demos.camera
import edgekit.device.features, edgekit.device.audio, edgekit.device.demos.mic, edgekit.device.preprocess, edgekit.device.signing, edgekit.device.arrays
edgekit.cli.build_parser()
heavy = sorted(m for m in ("torch", "tensorflow", "neural_compressor", "litert_torch", "jax") if m in sys.modules)
assert not heavy, heavy
print("ok")
"""


def test_device_side_modules_do_not_import_torch():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
