"""Job functions for tests/test_isolate.py: each misbehaves the way a native library can."""

from __future__ import annotations

import ctypes
import os
import sys
import time


def double(*, n: int) -> dict:
    print("[edgekit test] working", file=sys.stderr, flush=True)
    print("third-party noise", file=sys.stderr, flush=True)
    return {"n": 2 * n}


def segfault() -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def glibc_abort() -> None:
    sys.stderr.write("corrupted double-linked list\n")
    sys.stderr.flush()
    os.abort()


def hang() -> None:
    time.sleep(3600)


def spawn_and_hang(*, marker: str) -> None:
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    with open(marker, "w") as f:
        f.write(str(child.pid))
    time.sleep(3600)


def bad_input() -> None:
    from edgekit.errors import ConfigError

    raise ConfigError("x.yaml: train.lr = 'fast': expected a number\nmore detail nobody needs")
