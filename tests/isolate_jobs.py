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


def measure_then_hang(*, work: str) -> None:
    """An int8 search that measures two candidates, then never finishes (as a slow converter can)."""
    from pathlib import Path

    from edgekit.compress.search import JOURNAL, Candidate, Journal

    tried = Journal(Path(work) / JOURNAL)
    for name, accuracy, passed in (("within_budget", 0.90, True), ("over_budget", 0.70, False)):
        path = Path(work) / f"{name}.onnx"
        path.write_bytes(f"int8 model {name}".encode())
        tried.append(Candidate(name=name, remedy="a test remedy", options={}, path=str(path), accuracy=accuracy,
                               top1_agreement=accuracy, passed=passed, reason=f"accuracy {accuracy}"))
    time.sleep(3600)
