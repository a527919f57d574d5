"""Fill .cache/wheelhouse with the device side's wheels (for this host) and the arm64 emulation cache.

Run by `make test` as a set-up step (it needs the package index); the tests then run offline from these
caches: the loopback deploy installs from the wheelhouse with --no-index, and the emulated arm64 check
builds its sysroot from the cached Debian packages and aarch64 wheels.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / ".cache" / "wheelhouse"


def main() -> int:
    pins = [f"{p}=={metadata.version(p)}" for p in ("numpy", "pyyaml", "tqdm", "cryptography", "onnxruntime",
                                                     "ai-edge-litert")]
    stamp = WHEELHOUSE / ".pins"
    if not (stamp.is_file() and stamp.read_text() == "\n".join(pins)):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                        "--only-binary=:all:", "-d", str(WHEELHOUSE), *pins], check=True)
        stamp.write_text("\n".join(pins))
    print(f"wheelhouse: {WHEELHOUSE} ({len(list(WHEELHOUSE.glob('*.whl')))} wheels)")
    if "--arm64" in sys.argv:
        from edgekit import devices, emulate

        for name in ("rpi4", "rpi5"):
            emulate.prepare(devices.load(name), quiet=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
